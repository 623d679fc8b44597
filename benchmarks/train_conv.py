"""Forward + backward of one training batch of conv ReL-PSP networks: the compiled STDBP kernel
(``path="auto"``, training/kernels.py) against the torch algorithms (``path="torch"``: the grid / sort paths
over ``unfold``-ed receptive fields, the trainer's path before the kernel), same process, same network and
batch, one thread. Checks that both give the same spike times and gradients, prints ms per batch of both,
the ratio, and the epoch time the kernel path implies.

    .venv/bin/python benchmarks/train_conv.py [--arch ARCH ...] [--batch 64] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from model.datasets import load_dataset
from training.net import SpikingNet
from training.train import loss_fn

DEFAULT_ARCHS = ["1x28x28-c16k5-p2-10", "1x28x28-c16k5-p2-c32k5-p2-10"]


def step(net: SpikingNet, x: torch.Tensor, y: torch.Tensor, path: str):
    net.zero_grad()
    times = net(x, out_window=1000, path=path)
    loss_fn(times[-1], y, 3.0, net.t_end - 20.0).backward()
    return times, [p.grad.clone() for p in net.parameters()]


def timed(net, x, y, path, repeats):
    step(net, x, y, path)  # warm-up (and the kernel's compile on a new machine)
    start = time.perf_counter()
    for _ in range(repeats):
        step(net, x, y, path)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=DEFAULT_ARCHS)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = load_dataset(args.dataset, "train")
    batches_per_epoch = len(d.images) // args.batch
    print(f"batch {args.batch}, {torch.get_num_threads()} thread(s), {args.repeats} timed batches per path")
    for arch in args.arch:
        net = SpikingNet(arch, input_shape=d.shape, seed=0)
        x = net.encode(d.images[:args.batch])
        y = torch.from_numpy(d.labels[:args.batch])
        net.calibrate(net.encode(d.images[:512]))
        ta, ga = step(net, x, y, "auto")
        tb, gb = step(net, x, y, "torch")
        dt = max(float((a - b).detach().abs().max()) for a, b in zip(ta, tb, strict=True))
        dg = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-30)) for a, b in zip(ga, gb, strict=True))
        same_silent = all(bool(((a > net.t_end) == (b > net.t_end)).all()) for a, b in zip(ta, tb, strict=True))
        t_new = timed(net, x, y, "auto", args.repeats)
        t_old = timed(net, x, y, "torch", args.repeats)
        print(f"{arch}: same silent sets {same_silent}, max |dt| {dt:.1e} steps, max relative gradient "
              f"difference {dg:.1e}")
        print(f"  kernel (new)      {t_new * 1e3:8.1f} ms/batch  -> {t_new * batches_per_epoch / 60:5.1f} min per "
              f"{len(d.images)}-sample epoch (forward + backward)")
        print(f"  torch (previous)  {t_old * 1e3:8.1f} ms/batch  -> {t_old * batches_per_epoch / 60:5.1f} min")
        print(f"  speed-up {t_old / t_new:.1f}x")


if __name__ == "__main__":
    main()
