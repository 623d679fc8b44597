"""``yoso verilog``: plain Verilog of the YOSO processing element, or of a whole mesh with its host stream port,
for a given config or network file."""

from __future__ import annotations

import json

from .util import CliError, add_mapping_options, atomic_path, mapping_options

#: PE options a mesh mapped from a network file sizes itself (host/plan.py); refused with --mesh --net.
_MAPPED = ("fan_in", "fifo_depth", "defer_depth", "max_sources")


def register(sub) -> None:
    p = sub.add_parser("verilog", help="generate plain Verilog of one processing element (PE) or of a whole mesh",
                       description="Verilog of the YOSO PE (docs/pe.md) via amaranth.back.verilog. With --net, "
                                   "the smallest PE that runs every layer of the network on one PE; explicit "
                                   "--neurons/--fan-in may only enlarge it. With --mesh WxH, the whole mesh "
                                   "(routers, network interfaces, PEs; top yoso_mesh) with its host stream port "
                                   "(docs/noc.md \"Verilog of the mesh\"); with --mesh and --net, the PEs the "
                                   "network maps onto (host/plan.py, --neurons per PE).")
    p.add_argument("--net", help="network file (.npz): size the PE (or the mesh's PEs) to fit it (widths from "
                                 "its header)")
    p.add_argument("--mesh", metavar="WxH", help="Verilog of a W x H mesh of PEs with its host port instead of "
                                                 "one PE")
    p.add_argument("--window", type=int, help="with --mesh --net: the host's run-ahead window in time steps that "
                                              "the PEs' defer FIFOs are sized for (default 1, docs/noc.md)")
    p.add_argument("--lanes", type=int, default=4, help="neurons updated per cycle, a power of two (default 4)")
    add_mapping_options(p, scope="with --mesh --net: ")
    p.add_argument("--neurons", type=int, help="neurons per PE (default 64, or what --net needs; with --mesh "
                                               "--net: the most neurons per PE the mapping may use, default 64)")
    p.add_argument("--fan-in", type=int, help="weight rows (default 1024, or what --net needs)")
    p.add_argument("--weight-bits", type=int, help="signed weight width (default 8, or from --net)")
    p.add_argument("--time-bits", type=int, help="time width (default 8, or from --net)")
    p.add_argument("--threshold-bits", type=int, help="threshold width (default 16, or from --net)")
    p.add_argument("--fifo-depth", type=int, help="entries per pipeline FIFO (default 4)")
    p.add_argument("--defer-depth", type=int, help="entries of the defer FIFO (default 8)")
    p.add_argument("--max-sources", type=int, help="largest SOURCES register value (default 16)")
    p.add_argument("--name", help="top module name (default yoso_pe, with --mesh yoso_mesh)")
    p.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall (waivers: docs/pe.md, "
                                                       "docs/noc.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object (config, lines, lint status, ports)")
    p.add_argument("--out", required=True, help="output .v file")
    p.set_defaults(func=main)


def _pe_error(e: ValueError) -> CliError:
    name, _, rest = str(e).partition(":")
    return CliError(f"--{name.replace('_', '-')}:{rest}")


def config_from_args(args, net=None):
    from rtl.config import PEConfig

    kw = {"lanes": args.lanes}
    for name in ("weight_bits", "time_bits", "threshold_bits", "fifo_depth", "defer_depth", "max_sources"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
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
        raise _pe_error(e) from None


def _mesh_config(args, net):
    """(PEConfig, NocConfig, mapping description or None) of ``--mesh``."""
    from .verify import parse_mesh

    width, height = parse_mesh(args.mesh)
    if net is None:
        from rtl.mesh import noc_config

        if args.window is not None:
            raise CliError("--window: only with --mesh --net (it sizes the mapped PEs' defer FIFOs)")
        pe = config_from_args(args)
        return pe, noc_config(pe, width, height), None
    from host.plan import MappingError, plan_mesh

    for name in _MAPPED:
        if getattr(args, name) is not None:
            raise CliError(f"--{name.replace('_', '-')}: with --mesh --net the mapping sizes the PEs "
                           f"(host/plan.py); leave it out")
    for name in ("weight_bits", "time_bits", "threshold_bits"):
        value = getattr(args, name)
        if value is not None and value != getattr(net, name):
            raise CliError(f"--{name.replace('_', '-')}: {value} differs from the network's {getattr(net, name)}")
    window = 1 if args.window is None else args.window
    if window < 1:
        raise CliError(f"--window: must be >= 1, got {window}")
    neurons = 64 if args.neurons is None else args.neurons
    if args.lanes < 1 or args.lanes & (args.lanes - 1) or args.lanes > 64:
        raise CliError(f"--lanes: {args.lanes} is not a power of two (allowed 1, 2, 4, ..., 64)")
    if neurons < args.lanes:
        raise CliError(f"--neurons: {neurons} is below --lanes {args.lanes}")
    try:
        plan = plan_mesh(net, width, height, neurons=neurons, lanes=args.lanes, window=window,
                         **mapping_options(args))
    except MappingError:
        raise    # one line with the numbers needed and available (yoso.cli)
    except ValueError as e:
        raise _pe_error(e) from None
    return plan.pe, plan.noc, plan.describe()


def main(args) -> int:
    from rtl.generate import MESH_LINT_WAIVERS, MESH_TOP, TOP, convert, lint, ports

    if args.window is not None and args.mesh is None:
        raise CliError("--window: only with --mesh --net")
    if args.mesh is None or not args.net:
        mapping_options(args, refuse="only with --mesh --net (a way of mapping the network)")
    name = args.name if args.name is not None else (MESH_TOP if args.mesh else TOP)
    if not name.isidentifier():
        raise CliError(f"--name: {name!r} is not a Verilog identifier")
    net = None
    if args.net:
        import model

        net = model.load(args.net)
    if args.mesh is not None:
        from rtl.mesh import Mesh

        config, noc, mapping = _mesh_config(args, net)
        component = Mesh(config, noc)
        waivers = MESH_LINT_WAIVERS
    else:
        from rtl.pe import PE

        config, noc, mapping = config_from_args(args, net), None, None
        component = PE(config)
        waivers = None
    port_list = ports(component)
    text = convert(component, name=name)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
        lint_status = None
        if args.lint:
            proc = lint(tmp, top=name) if waivers is None else lint(tmp, top=name, waivers=waivers)
            lint_status = "clean" if proc.returncode == 0 else "failed"
            if proc.returncode:
                raise CliError(f"--lint: verilator reported problems:\n{proc.stdout}{proc.stderr}")
    lines = text.count("\n")
    what = f"{noc.width}x{noc.height} mesh of {config}" if noc is not None else f"{config}"
    if args.json:
        info = {"out": args.out, "top": name, "lines": lines, "lint": lint_status, "config": vars(config),
                "ports": [{"name": n, "dir": d, "width": w} for n, d, w in port_list]}
        if noc is not None:
            info["noc"] = vars(noc)
            info["mapping"] = mapping
        print(json.dumps(info))
    else:
        print(f"wrote {args.out}: {lines} lines, {what}" + (f", lint {lint_status}" if args.lint else ""))
    return 0
