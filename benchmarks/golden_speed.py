"""Golden model speed: the fast vectorised path vs the time-stepped reference, same process, same data.

784-800-10 network with random int8 weights over Fashion-MNIST test images (default 1,000). Prints images/s
for each path and the ratio, after checking that both produce identical spike times in every layer.

    .venv/bin/python benchmarks/golden_speed.py [--images 1000] [--arch 784-800-10] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import model
from model.datasets import load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--arch", default="784-800-10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    net = model.random_network(args.arch, seed=args.seed)
    test = load_dataset("fashion-mnist", "test")
    pixels = test.images[: args.images].reshape(args.images, -1)
    t_in = model.encode(pixels, net.encoding, net.time_bits)

    model.run(net, t_in[:10])  # warm-up (BLAS threads, allocations)
    start = time.perf_counter()
    fast = model.run(net, t_in)
    t_fast = time.perf_counter() - start

    start = time.perf_counter()
    ref = model.run_reference(net, t_in)
    t_ref = time.perf_counter() - start

    identical = all(np.array_equal(a, b) for a, b in zip(fast.times, ref.times, strict=True))
    report = {
        "arch": net.describe(), "images": args.images, "identical_spike_times": identical,
        "fast_images_per_s": args.images / t_fast, "reference_images_per_s": args.images / t_ref,
        "speedup": t_ref / t_fast, "fast_s": t_fast, "reference_s": t_ref,
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{report['arch']} on {args.images} Fashion-MNIST test images "
              f"(spike times identical in every layer: {identical})")
        print(f"fast path      {report['fast_images_per_s']:10.1f} images/s  ({t_fast:.2f} s)")
        print(f"time-stepped   {report['reference_images_per_s']:10.1f} images/s  ({t_ref:.2f} s)")
        print(f"speedup        {report['speedup']:10.1f} x")
    if not identical:
        raise SystemExit("fast path and time-stepped reference disagree")


if __name__ == "__main__":
    main()
