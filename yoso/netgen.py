"""``yoso netgen``: write a random integer network file (tests, benchmarks, RTL bring-up)."""

from __future__ import annotations

import model

from .util import make_parents


def register(sub) -> None:
    p = sub.add_parser("netgen", help="write a random fully connected network file",
                       description="Random integer ReL-PSP network (uniform weights, thresholds spread so "
                                   "hidden spikes cover the window).")
    p.add_argument("--arch", default="784-800-10", help="layer sizes, input first (default 784-800-10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws, 0..2**64-1 (default 0)")
    p.add_argument("--weight-bits", type=int, default=8, help="signed weight width, 2..16 (default 8)")
    p.add_argument("--time-bits", type=int, default=8, help="time width, 2..16 (default 8)")
    p.add_argument("--t-end", type=int, help="last time step (default 2**time_bits - 2)")
    p.add_argument("--t-in-max", type=int, help="latest input spike time, 0..t_end (default min(31, t_end))")
    p.add_argument("--out", required=True, help="output .npz (missing folders are created)")
    p.set_defaults(func=main)


def main(args) -> int:
    # random_network checks every value (NetworkError naming the field; the CLI names the flag) before it
    # allocates anything, and never clamps one.
    net = model.random_network(args.arch, seed=args.seed, weight_bits=args.weight_bits, time_bits=args.time_bits,
                               t_end=args.t_end, t_in_max=args.t_in_max)
    # model.save writes atomically itself (a temporary renamed into place).
    model.save(net, make_parents(args.out), metadata={"generator": "yoso netgen", "arch": args.arch,
                                                       "seed": args.seed})
    print(f"wrote {args.out}: {net.describe()}")
    return 0
