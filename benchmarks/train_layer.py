"""One training epoch of a ReL-PSP network: the STDBP layer (training/stdbp.py) against a straightforward
time-stepped autograd formulation (training/reference.py), same network, data and optimiser, timed in the
same process. Prints samples/s of both and the ratio.

    .venv/bin/python benchmarks/train_layer.py [--arch 784-800-10] [--samples 1024] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from model.datasets import load_dataset
from training.net import SpikingNet
from training.reference import stepped_spike_times
from training.train import loss_fn


def reference_forward(net: SpikingNet, x: torch.Tensor) -> torch.Tensor:
    t = x.reshape(len(x), -1)
    for n, spec in enumerate(net.specs):
        assert spec.kind == "dense", "the reference benchmark covers dense networks"
        w, theta = net.layer_params(n, quantised=False)
        t = stepped_spike_times(t, w, theta, net.t_end)
    return t


def epoch(net, x, y, batch, forward) -> float:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for s in range(0, len(x), batch):
        out = forward(net, x[s:s + batch])
        opt.zero_grad()
        loss_fn(out, y[s:s + batch], 3.0).backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="784-800-10")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = load_dataset(args.dataset, "train")
    net = SpikingNet(args.arch, input_shape=d.shape, seed=0)
    x = net.encode(d.images[:args.samples])
    y = torch.from_numpy(d.labels[:args.samples])
    net.calibrate(x[:256])
    ref_net = copy.deepcopy(net)
    with torch.no_grad():
        a = net(x[:256])[-1]
        b = reference_forward(ref_net, x[:256])
    both = (a <= net.t_end) & (b <= net.t_end)
    print(f"forward agreement on 256 samples: same silent set {bool(((a <= net.t_end) == (b <= net.t_end)).all())}, "
          f"max |dt| {float((a - b)[both].abs().max()):.2e} steps")
    t_fast = epoch(net, x, y, args.batch, lambda n, xb: n(xb)[-1])
    t_ref = epoch(ref_net, x, y, args.batch, reference_forward)
    print(f"{args.arch}, {args.samples} samples, batch {args.batch}, {torch.get_num_threads()} thread(s)")
    print(f"STDBP layer (closed form):    {t_fast:7.2f} s  {args.samples / t_fast:8.1f} samples/s")
    print(f"time-stepped autograd (ref.): {t_ref:7.2f} s  {args.samples / t_ref:8.1f} samples/s")
    print(f"speed-up: {t_ref / t_fast:.1f}x")


if __name__ == "__main__":
    main()
