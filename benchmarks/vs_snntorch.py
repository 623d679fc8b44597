"""STDBP (this project) against snnTorch surrogate-gradient BPTT on the same task: a 784-800-10 network,
the same latency-coded Fashion-MNIST inputs (``model.encode``: one spike per pixel at step 0..31), trained on
the same samples in the same order with Adam, one thread each, same process. Prints training samples/s and
first-spike test accuracy after the same number of samples for both, and the ratios.

snnTorch side: ``nn.Linear`` + ``snn.Leaky`` (beta 0.95, thresholds calibrated from data as ours are,
fast-sigmoid surrogate scaled to the threshold), simulated for ``--steps``
time steps (the input spike at step t is a 1 in frame t), loss ``snntorch.functional.ce_temporal_loss``
(cross-entropy of the negated first output spike times), decision: earliest output spike. snnTorch is an
optional extra, not a test dependency::

    .venv/bin/pip install -e '.[compare]'
    .venv/bin/python benchmarks/vs_snntorch.py [--samples 6400] [--steps 64 128 256] [--test 2000]
"""

from __future__ import annotations

import argparse
import time

import torch

from model.datasets import load_dataset
from training.net import SpikingNet
from training.train import live_penalty, loss_fn, predict


def stdbp_run(x, y, xt, yt, batch, lr):
    net = SpikingNet("784-800-10", input_shape=(784,), seed=0)
    net.calibrate(x[:512])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    start = time.perf_counter()
    for s in range(0, len(x), batch):
        times = net(x[s:s + batch], out_window=1000)
        loss = loss_fn(times[-1], y[s:s + batch], 3.0, net.t_end - 20.0) + live_penalty(net, x[s:s + batch], times)
        opt.zero_grad()
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        acc = float((predict(net(xt)[-1], net.t_end) == yt).float().mean())
    return len(x) / elapsed, acc


def snntorch_run(x, y, xt, yt, batch, lr, steps):
    import snntorch as snn
    import snntorch.functional as SF
    from snntorch import surrogate
    from torch import nn

    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(784, 800), nn.Linear(800, 10)
    beta = 0.95

    def frames_of(xb):
        return (xb[None, :, :] == torch.arange(steps, dtype=xb.dtype)[:, None, None]).float()  # (T, B, 784)

    @torch.no_grad()
    def peak_potential(fc, spikes):  # membrane without firing, its maximum over time: (B, neurons)
        m, peak = torch.zeros(spikes.shape[1], fc.out_features), None
        for t in range(steps):
            m = beta * m + fc(spikes[t])
            peak = m if peak is None else torch.maximum(peak, m)
        return peak

    # With PyTorch's default initialisation almost nothing fires on latency-coded inputs (0 output spikes),
    # so each layer's threshold is calibrated like SpikingNet.calibrate (about half the neurons reach it)
    # and the surrogate slope is scaled by 1 / threshold.
    frames = frames_of(x[:512])
    th1 = float(peak_potential(fc1, frames).quantile(0.5))
    lif1 = snn.Leaky(beta=beta, threshold=th1, spike_grad=surrogate.fast_sigmoid(slope=25 / th1))
    with torch.no_grad():
        m1, hidden = lif1.init_leaky(), []
        for t in range(steps):
            s1, m1 = lif1(fc1(frames[t]), m1)
            hidden.append(s1)
    th2 = float(peak_potential(fc2, torch.stack(hidden)).quantile(0.5))
    lif2 = snn.Leaky(beta=beta, threshold=th2, spike_grad=surrogate.fast_sigmoid(slope=25 / th2))
    params = [*fc1.parameters(), *fc2.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    loss_f = SF.ce_temporal_loss()

    def forward(xb):
        frames = frames_of(xb)
        m1, m2 = lif1.init_leaky(), lif2.init_leaky()
        out = []
        for t in range(steps):
            s1, m1 = lif1(fc1(frames[t]), m1)
            s2, m2 = lif2(fc2(s1), m2)
            out.append(s2)
        return torch.stack(out)  # (T, B, 10)

    start = time.perf_counter()
    for s in range(0, len(x), batch):
        spk = forward(x[s:s + batch])
        loss = loss_f(spk, y[s:s + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        spk = forward(xt)
        fired = spk.any(dim=0)
        first = torch.where(fired, spk.argmax(dim=0).float(), torch.full(fired.shape, float(steps)))
        pred = torch.where(fired.any(dim=1), first.argmin(dim=1), torch.full_like(yt, -1))
    return len(x) / elapsed, float((pred == yt).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=6400)
    ap.add_argument("--steps", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tr, te = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    enc = SpikingNet("784-800-10", input_shape=(784,))
    x, y = enc.encode(tr.images[:args.samples]).reshape(args.samples, -1), torch.from_numpy(tr.labels[:args.samples])
    xt, yt = enc.encode(te.images[:args.test]).reshape(args.test, -1), torch.from_numpy(te.labels[:args.test])
    print(f"784-800-10, {args.samples} training samples (batch {args.batch}, Adam lr {args.lr}), "
          f"accuracy on the first {args.test} test images, 1 thread")
    sps, acc = stdbp_run(x, y, xt, yt, args.batch, args.lr)
    print(f"STDBP (exact spike times)          {sps:8.1f} samples/s   accuracy {acc:.4f}")
    for steps in args.steps:
        s_sps, s_acc = snntorch_run(x, y, xt, yt, args.batch, args.lr, steps)
        print(f"snnTorch BPTT, {steps:3d} steps           {s_sps:8.1f} samples/s   accuracy {s_acc:.4f}   "
              f"STDBP speed ratio {sps / s_sps:5.1f}x")


if __name__ == "__main__":
    main()
