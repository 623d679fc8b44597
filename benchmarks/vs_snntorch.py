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
        [--eval-every 1280 --val 1000] [--snn-lr 5e-4] [--snn-live 1]

With ``--eval-every N`` both trainers are also scored every N samples on ``--val`` held-out training images
(never trained on, never test images), with the evaluation time left out of the training time. The run then
prints the *time to equal accuracy*: the best validation accuracy snnTorch reached, the training seconds each
trainer needed to first reach it, and their ratio. ``--snn-live W`` adds our live-neuron regulariser
(training.train.live_penalty, on snnTorch's membrane peaks) to snnTorch's loss: without it its outputs fall
silent after a few thousand samples (docs/training.md has the measurements).
"""

from __future__ import annotations

import argparse
import time

import torch

from model.datasets import load_dataset
from training.net import SpikingNet
from training.train import live_penalty, loss_fn, predict


def train_loop(step, score, x, y, batch, eval_every, val):
    """Run ``step(xb, yb)`` (after one untimed ``update=False`` warm-up) over the samples in batches; every
    ``eval_every`` samples (and at the end, if ``eval_every``) score ``val`` with ``score(x)`` outside the clock.
    Returns (training seconds, curve of (samples, training seconds, validation accuracy))."""
    step(x[:2], y[:2], update=False)  # warm-up (compiled kernels, allocator): forward + backward, untimed
    elapsed, curve, next_eval = 0.0, [], eval_every
    for s in range(0, len(x), batch):
        t0 = time.perf_counter()
        step(x[s:s + batch], y[s:s + batch])
        elapsed += time.perf_counter() - t0
        done = min(s + batch, len(x))
        if eval_every and (done >= next_eval or done == len(x)):
            with torch.no_grad():
                curve.append((done, elapsed, float((score(val[0]) == val[1]).float().mean())))
            next_eval += eval_every
    return elapsed, curve


def stdbp_run(x, y, xt, yt, batch, lr, eval_every=0, val=None):
    net = SpikingNet("784-800-10", input_shape=(784,), seed=0)
    net.calibrate(x[:512])
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def step(xb, yb, update=True):
        times = net(xb, out_window=1000)
        loss = loss_fn(times[-1], yb, 3.0, net.t_end - 20.0) + live_penalty(net, xb, times)
        opt.zero_grad()
        loss.backward()
        if update:
            opt.step()

    def score(xs):
        return predict(net(xs)[-1], net.t_end)

    elapsed, curve = train_loop(step, score, x, y, batch, eval_every, val)
    with torch.no_grad():
        acc = float((score(xt) == yt).float().mean())
    return len(x) / elapsed, acc, curve


def snntorch_run(x, y, xt, yt, batch, lr, steps, eval_every=0, val=None, live_weight=0.0):
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

    def forward(xb, peaks=False):
        frames = frames_of(xb)
        m1, m2 = lif1.init_leaky(), lif2.init_leaky()
        out, hid, p1, p2 = [], [], None, None
        for t in range(steps):
            s1, m1 = lif1(fc1(frames[t]), m1)
            s2, m2 = lif2(fc2(s1), m2)
            out.append(s2)
            if peaks:
                hid.append(s1)
                p1 = m1 if p1 is None else torch.maximum(p1, m1)
                p2 = m2 if p2 is None else torch.maximum(p2, m2)
        if peaks:  # (T, B, 10), and per layer (spikes (T, B, N), peak membrane (B, N), threshold)
            return torch.stack(out), [(torch.stack(hid), p1, th1), (torch.stack(out), p2, th2)]
        return torch.stack(out)

    def live(layers):  # our live-neuron regulariser (training.train.live_penalty), on snnTorch's membranes
        total = 0.0
        for spk, peak, th in layers:
            silent = ~spk.bool().any(dim=0).any(dim=0)
            total = total + (torch.relu(1 - peak.amax(dim=0) / th) * silent).sum() / silent.numel()
        return total

    def step(xb, yb, update=True):
        if live_weight:
            spk, layers = forward(xb, peaks=True)
            loss = loss_f(spk, yb) + live_weight * live(layers)
        else:
            loss = loss_f(forward(xb), yb)
        opt.zero_grad()
        loss.backward()
        if update:
            opt.step()

    def score(xs):  # earliest output spike, ties to the lowest index, all silent -> -1 (as ours)
        spk = forward(xs)
        fired = spk.any(dim=0)
        first = torch.where(fired, spk.argmax(dim=0).float(), torch.full(fired.shape, float(steps)))
        return torch.where(fired.any(dim=1), first.argmin(dim=1), torch.full((len(xs),), -1))

    elapsed, curve = train_loop(step, score, x, y, batch, eval_every, val)
    with torch.no_grad():
        acc = float((score(xt) == yt).float().mean())
    return len(x) / elapsed, acc, curve


def time_to(curve, accuracy):
    """Training seconds at which ``curve`` first reaches ``accuracy`` (None: never)."""
    return next((t for _, t, a in curve if a >= accuracy), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=6400)
    ap.add_argument("--steps", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--snn-lr", type=float, default=None, help="snnTorch's learning rate (default --lr)")
    ap.add_argument("--eval-every", type=int, default=0,
                    help="score both every N training samples on --val held-out training images (0: off)")
    ap.add_argument("--snn-live", type=float, default=0.0,
                    help="weight of our live-neuron regulariser on the snnTorch side too (default 0: off)")
    ap.add_argument("--val", type=int, default=1000, help="held-out training images of --eval-every")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tr, te = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    if args.samples + args.val > len(tr.images):
        ap.error(f"--samples + --val must be <= {len(tr.images)}")
    enc = SpikingNet("784-800-10", input_shape=(784,))
    x, y = enc.encode(tr.images[:args.samples]).reshape(args.samples, -1), torch.from_numpy(tr.labels[:args.samples])
    xt, yt = enc.encode(te.images[:args.test]).reshape(args.test, -1), torch.from_numpy(te.labels[:args.test])
    held = slice(len(tr.images) - args.val, len(tr.images))  # the end of the training set, never trained on here
    val = (enc.encode(tr.images[held]).reshape(args.val, -1), torch.from_numpy(tr.labels[held]))
    snn_lr = args.lr if args.snn_lr is None else args.snn_lr
    print(f"784-800-10, {args.samples} training samples (batch {args.batch}, Adam lr {args.lr}, snnTorch lr "
          f"{snn_lr}, snnTorch live-neuron weight {args.snn_live}), accuracy on the first {args.test} test images, "
          "1 thread")
    sps, acc, curve = stdbp_run(x, y, xt, yt, args.batch, args.lr, args.eval_every, val)
    print(f"STDBP (exact spike times)          {sps:8.1f} samples/s   accuracy {acc:.4f}")
    for samples, t, a in curve:
        print(f"  after {samples:6d} samples, {t:7.1f} s of training: validation {a:.4f}")
    for steps in args.steps:
        s_sps, s_acc, s_curve = snntorch_run(x, y, xt, yt, args.batch, snn_lr, steps, args.eval_every, val,
                                             args.snn_live)
        print(f"snnTorch BPTT, {steps:3d} steps           {s_sps:8.1f} samples/s   accuracy {s_acc:.4f}   "
              f"STDBP speed ratio {sps / s_sps:5.1f}x")
        for samples, t, a in s_curve:
            print(f"  after {samples:6d} samples, {t:7.1f} s of training: validation {a:.4f}")
        if s_curve:
            best = max(a for _, _, a in s_curve)
            ours, theirs = time_to(curve, best), time_to(s_curve, best)
            verdict = (f"STDBP {ours:.1f} s, snnTorch {theirs:.1f} s: {theirs / ours:.1f}x" if ours is not None
                       else f"STDBP never reached it in {args.samples} samples")
            print(f"  time to snnTorch's best validation accuracy {best:.4f}: {verdict}")


if __name__ == "__main__":
    main()
