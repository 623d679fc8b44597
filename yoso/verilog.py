"""``yoso verilog``: plain Verilog of the YOSO processing element for a given config or network file."""

from __future__ import annotations

import json

from .util import CliError, atomic_path


def register(sub) -> None:
    p = sub.add_parser("verilog", help="generate plain Verilog of one processing element (PE)",
                       description="Verilog of the YOSO PE (docs/pe.md) via amaranth.back.verilog. With --net, "
                                   "the smallest PE that runs every layer of the network on one PE; explicit "
                                   "--neurons/--fan-in may only enlarge it.")
    p.add_argument("--net", help="network file (.npz): size the PE to fit it (widths from its header)")
    p.add_argument("--lanes", type=int, default=4, help="neurons updated per cycle, a power of two (default 4)")
    p.add_argument("--neurons", type=int, help="neurons per PE (default 64, or what --net needs)")
    p.add_argument("--fan-in", type=int, help="weight rows (default 1024, or what --net needs)")
    p.add_argument("--weight-bits", type=int, help="signed weight width (default 8, or from --net)")
    p.add_argument("--time-bits", type=int, help="time width (default 8, or from --net)")
    p.add_argument("--threshold-bits", type=int, help="threshold width (default 16, or from --net)")
    p.add_argument("--fifo-depth", type=int, default=4, help="entries per pipeline FIFO (default 4)")
    p.add_argument("--defer-depth", type=int, default=8, help="entries of the defer FIFO (default 8)")
    p.add_argument("--max-sources", type=int, default=16, help="largest SOURCES register value (default 16)")
    p.add_argument("--name", default="yoso_pe", help="top module name (default yoso_pe)")
    p.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall (waivers: docs/pe.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object (config, lines, lint status)")
    p.add_argument("--out", required=True, help="output .v file")
    p.set_defaults(func=main)


def config_from_args(args):
    from rtl.config import PEConfig

    kw = {"lanes": args.lanes, "fifo_depth": args.fifo_depth, "defer_depth": args.defer_depth,
          "max_sources": args.max_sources}
    for name in ("weight_bits", "time_bits", "threshold_bits"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    net = None
    if args.net:
        import model

        net = model.load(args.net)
    try:
        if net is not None:
            from host.plan import pe_config

            need = pe_config(net, lanes=args.lanes)
            for name in ("weight_bits", "time_bits", "threshold_bits"):
                if name in kw and kw[name] != getattr(need, name):
                    raise CliError(f"--{name.replace('_', '-')}: {kw[name]} differs from the network's "
                                   f"{getattr(need, name)}")
            kw.update(weight_bits=need.weight_bits, time_bits=need.time_bits, threshold_bits=need.threshold_bits)
            for name, opt in (("neurons", "--neurons"), ("fan_in", "--fan-in")):
                value = getattr(args, name)
                if value is not None and value < getattr(need, name):
                    raise CliError(f"{opt}: {value} is below the {getattr(need, name)} that {args.net} needs")
                kw[name] = value if value is not None else getattr(need, name)
        else:
            if args.neurons is not None:
                kw["neurons"] = args.neurons
            if args.fan_in is not None:
                kw["fan_in"] = args.fan_in
        return PEConfig(**kw)
    except ValueError as e:
        name, _, rest = str(e).partition(":")
        raise CliError(f"--{name.replace('_', '-')}:{rest}") from None


def main(args) -> int:
    from rtl.generate import lint, verilog

    config = config_from_args(args)
    if not args.name.isidentifier():
        raise CliError(f"--name: {args.name!r} is not a Verilog identifier")
    text = verilog(config, name=args.name)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
        lint_status = None
        if args.lint:
            proc = lint(tmp, top=args.name)
            lint_status = "clean" if proc.returncode == 0 else "failed"
            if proc.returncode:
                raise CliError(f"--lint: verilator reported problems:\n{proc.stdout}{proc.stderr}")
    lines = text.count("\n")
    if args.json:
        print(json.dumps({"out": args.out, "lines": lines, "lint": lint_status, "config": vars(config)}))
    else:
        print(f"wrote {args.out}: {lines} lines, {config}" + (f", lint {lint_status}" if args.lint else ""))
    return 0
