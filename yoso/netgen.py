"""``yoso netgen``: write a random integer network file (tests, benchmarks, RTL bring-up)."""

from __future__ import annotations

import model


def register(sub) -> None:
    p = sub.add_parser("netgen", help="write a random fully connected network file",
                       description="Random integer ReL-PSP network (uniform weights, thresholds spread so "
                                   "hidden spikes cover the window).")
    p.add_argument("--arch", default="784-800-10", help="layer sizes, input first (default 784-800-10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weight-bits", type=int, default=8)
    p.add_argument("--time-bits", type=int, default=8)
    p.add_argument("--t-end", type=int)
    p.add_argument("--t-in-max", type=int, default=31)
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=main)


def main(args) -> int:
    try:
        net = model.random_network(args.arch, seed=args.seed, weight_bits=args.weight_bits,
                                   time_bits=args.time_bits, t_end=args.t_end, t_in_max=args.t_in_max)
    except ValueError as e:
        raise model.NetworkError(str(e)) from None
    from pathlib import Path

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    model.save(net, args.out, metadata={"generator": "yoso netgen", "arch": args.arch, "seed": args.seed})
    print(f"wrote {args.out}: {net.describe()}")
    return 0
