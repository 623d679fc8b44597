"""``yoso fpga``: build the accelerator for an FPGA board, report resources, Fmax and latency per image."""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import model

from .util import CliError, add_mapping_options, atomic_path, mapping_options
from .verify import parse_mesh

BOARD_NAMES = ("icebreaker", "ulx3s-85f")


def register(sub) -> None:
    p = sub.add_parser("fpga", help="build the accelerator for an FPGA board and report resources, Fmax, latency",
                       description="Maps a network onto the board top (UART host link + one PE running the "
                                   "layers in turn, docs/fpga.md), places and routes it, and reports LUT/FF/"
                                   "BRAM/SPRAM/DSP use, Fmax and the latency per image at Fmax (cycles of a "
                                   "simulated run x period).")
    p.add_argument("--board", required=True, choices=BOARD_NAMES)
    p.add_argument("--net", required=True, help="network file (.npz, docs/spec.md section 7)")
    p.add_argument("--mesh", help="mesh of WxH nodes (router + PE each, rtl/mesh.py) mapped by host/plan.py; "
                   "without it one PE runs the layers in turn")
    p.add_argument("--neurons", type=int, default=64, help="neurons per PE with --mesh (default 64)")
    add_mapping_options(p, scope="with --mesh: ")
    p.add_argument("--lanes", type=int, help="neurons updated per cycle in each PE (default: 4, or the most that "
                   "fit the board by its logic estimate: 2 for networks/fmnist-fc.npz on the iCEBreaker)")
    p.add_argument("--window", type=int, default=1, help="with --mesh: run-ahead window in time steps that the "
                   "board's RUN enforces (as yoso verify --window); sizes the PEs' defer FIFOs (default 1)")
    p.add_argument("--baud", type=int, default=1_000_000, help="UART baud rate (default 1000000)")
    p.add_argument("--build-dir", help="keep the build files here (default: a temporary folder)")
    p.add_argument("--dataset", help="latency image: first test image of this dataset (default: random "
                   "pixels, seed 0)")
    p.add_argument("--no-latency", action="store_true", help="skip the simulated run (no latency figure)")
    p.add_argument("--seeds", type=int, default=1, help="place and route N times (nextpnr's default seed, then "
                   "--seed 2..N) and keep the build with the highest Fmax (synthesis runs once; default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--program", action="store_true", help="load the bitstream onto a connected board")
    p.add_argument("--verilog-only", metavar="OUT.v", help="write plain Verilog of the top (UART pins rx, tx, "
                   "busy; clock clk, reset rst) for other vendors' tools and stop")
    p.set_defaults(func=main)


def _latency_cycles(net, pe, placement, image, depths, mapping=None
                    ) -> tuple[int, tuple[int, ...], np.ndarray, int | None]:
    """(cycles, cycles per layer, input times, cycles with early exit: mesh only, else None) of one image,
    every spike time checked against the golden model."""
    from fpga.driver import HostLink, infer, load_network
    from fpga.sim import SimTransport
    from fpga.top import LinkCore

    times = model.encode(image[None], net.encoding, net.time_bits)[0]
    if mapping is not None:
        # Mesh: loading every weight through the simulated engine takes too long for big networks; the mesh
        # is fed directly at its host port, one flit per cycle (host/pysim.py), as the board's RUN
        # replays its buffered flits. tests/fpga checks the full path through the engine on small meshes.
        # Run to completion and with early exit (the board's RUN has it, docs/fpga.md): the spikes seen
        # before the decision are checked as yoso verify --early-exit checks them.
        from host.pysim import run_images
        from verif.scoreboard import compare_images

        # One configuration, then the image twice: to completion, then with early exit.
        ref = model.run(net, times[None])
        runs = run_images(mapping, np.stack([times, times]), early_exit=[False, True])
        for got, label in zip(runs, ("", " with early exit"), strict=True):
            score, errors = compare_images([got], ref, net.no_spike)
            if errors or not score:
                raise RuntimeError(f"simulated run{label}: {errors[0] if errors else score.first}")
        full, early = (r.cycles for r in runs)
        return full, (full,), times, early
    else:
        link = HostLink(SimTransport(LinkCore(pe, **depths)))
        load_network(link, net, placement, pe=pe, skip_zero_rows=True)
        res = infer(link, net, times, placement)
    ref = model.run(net, times[None])
    for n, (got, want) in enumerate(zip(res.times, ref.times, strict=True)):
        if not np.array_equal(got, want.reshape(-1)):
            raise RuntimeError(f"simulated run differs from the golden model in layer {n}")
    return res.total_cycles, res.cycles, times, None


def _build(net, size, lanes, args):
    """(mesh plan or None, NocConfig or None, StackPlan or None, PEConfig, buffer depths) for ``lanes``."""
    from host.plan import StackPlan, plan_mesh

    if size is not None:
        if args.neurons < lanes:
            raise CliError(f"--neurons: {args.neurons} is below --lanes {lanes}")
        mapping = plan_mesh(net, *size, neurons=args.neurons, lanes=lanes, window=args.window,
                            **mapping_options(args))
        noc = mapping.noc
        # Image flits: START to every node, then per step each first-layer PE gets its spikes and a marker.
        n_first = len(mapping.layer_slices(0))
        depths = dict(in_depth=noc.n_nodes + n_first * (net.t_end + 1 + net.n_inputs),
                      out_depth=sum(mapping.outputs(n) for n in range(mapping.n_layers)))
        return mapping, noc, None, mapping.pe, depths
    try:
        placement = StackPlan.of(net)
        pe = placement.pe_config(net, lanes=lanes)
    except ValueError as e:
        raise CliError(str(e)) from None
    return None, None, placement, pe, dict(in_depth=placement.max_spikes_in, out_depth=placement.max_spikes_out)


def _fitting(net, size, board, args) -> int:
    """The most lanes (4, 2, 1) whose design passes the board's estimate (1 when none does)."""
    from fpga.boards import FitError, board_config, estimate

    for lanes in (4, 2):
        _, noc, _, pe, depths = _build(net, size, lanes, args)
        try:
            estimate(board_config(pe, board, noc), board, noc=noc, **depths)
            return lanes
        except FitError:
            pass
    return 1


def main(args) -> int:
    from fpga.boards import BOARDS, FitError, LogicFitError, board_config, estimate, place_and_route, program

    if args.lanes is not None and (args.lanes < 1 or args.lanes & (args.lanes - 1) or args.lanes > 64):
        raise CliError(f"--lanes: must be a power of two in 1..64, got {args.lanes}")
    if args.mesh is None:
        mapping_options(args, refuse="needs --mesh (the one-PE top runs the layers in turn in dense mode)")
    if not 1 <= args.seeds <= 100:
        raise CliError(f"--seeds: must be in 1..100, got {args.seeds}")
    net = model.load(args.net)
    board = BOARDS[args.board]
    size = None
    if args.mesh is not None:
        size = parse_mesh(args.mesh)
        if args.window < 1:
            raise CliError(f"--window: must be >= 1, got {args.window}")
    # The default lanes: 4, or the most that fit the board's logic (a logic estimate that misses is refused
    # here, naming the option, before minutes of simulation and synthesis).
    if args.lanes is not None:
        candidates = (args.lanes,)
    else:
        candidates = tuple(n for n in (4, 2, 1) if size is None or n <= max(args.neurons, 1))
    for lanes in candidates:
        mapping, noc, placement, pe, depths = _build(net, size, lanes, args)
        pe = board_config(pe, board, noc)  # iCE40UP5K: weights in SPRAM, smallest FIFOs
        if mapping is not None:
            mapping = dataclasses.replace(mapping, pe=pe)   # the latency run simulates what is built
        try:
            est = estimate(pe, board, noc=noc, **depths)
            break
        except LogicFitError as e:
            if args.lanes is not None and lanes > 1:
                raise CliError(f"--lanes {lanes}: the design {e}; use --lanes {_fitting(net, size, board, args)} "
                               f"or leave --lanes out (the default picks the most that fit)") from None
            if lanes == 1:
                what = (f"--mesh {args.mesh}: the design {e}; use a smaller --mesh or one PE (no --mesh)"
                        if size is not None and noc.n_nodes > 1 else f"network: the design {e}")
                raise CliError(what) from None
        except FitError as e:
            raise CliError(str(e)) from None

    if args.verilog_only:
        try:
            out = place_and_route(pe, board, Path("."), baud=args.baud, verilog_only=Path(args.verilog_only),
                                  noc=noc, **depths)
        except ValueError as e:
            raise CliError(str(e)) from None
        with atomic_path(args.verilog_only) as tmp:
            tmp.write_text(out["verilog"])
        print(f"wrote {args.verilog_only} (top yoso_top: rx, tx, busy; clk, rst)", file=sys.stderr)
        return 0

    report = {"board": board.name, "net": str(args.net), "architecture": net.describe(),
              "accelerator": mapping.describe() if mapping else "one PE, layers in turn",
              "pe": {"neurons": pe.neurons, "fan_in": pe.fan_in, "lanes": pe.lanes,
                     "weights_in": "SPRAM" if pe.weight_spram else "block RAM"}, "bram_estimate": est}
    if not args.no_latency:
        if args.dataset:
            from model.datasets import load_dataset
            image = load_dataset(args.dataset, "test").images[0].reshape(-1)
            if image.size != net.n_inputs:
                raise CliError(f"--dataset: images have {image.size} pixels, the network takes {net.n_inputs}")
            report["latency_image"] = f"{args.dataset} test image 0"
        else:
            image = np.random.default_rng(0).integers(0, 256, size=net.n_inputs)
            report["latency_image"] = "random pixels, seed 0"
        t0 = time.time()
        print("simulating one inference ...", file=sys.stderr)
        total, per_layer, _, early = _latency_cycles(net, pe, placement, image, depths, mapping)
        report["cycles_per_image"] = total
        if early is not None:
            report["cycles_per_image_early_exit"] = early
        report["cycles_per_layer"] = list(per_layer)
        report["simulation_s"] = round(time.time() - t0, 1)

    print(f"place and route for {board.device} ...", file=sys.stderr)
    t0 = time.time()
    try:
        if args.build_dir:
            pnr = place_and_route(pe, board, Path(args.build_dir), baud=args.baud, noc=noc, seeds=args.seeds,
                                  **depths)
        else:
            with tempfile.TemporaryDirectory(prefix="yoso-fpga-") as d:
                pnr = place_and_route(pe, board, Path(d), baud=args.baud, noc=noc, seeds=args.seeds, **depths)
                pnr["bitstream"] = None
    except FitError as e:
        raise CliError(str(e)) from None
    except RuntimeError as e:   # a tool failed for another reason: its log tail follows the first line
        raise CliError(str(e).replace("\n", " | ")) from None
    report.update(pnr)
    report["pnr_s"] = round(time.time() - t0, 1)
    if report.get("fmax_mhz") and "cycles_per_image" in report:
        report["latency_at_fmax_us"] = report["cycles_per_image"] / report["fmax_mhz"]
        report["latency_at_board_clock_us"] = report["cycles_per_image"] / (board.clk_hz / 1e6)
        if "cycles_per_image_early_exit" in report:
            report["latency_at_fmax_early_exit_us"] = report["cycles_per_image_early_exit"] / report["fmax_mhz"]

    # A routed design below the board clock gets its report (resources, Fmax, latency at Fmax) but no bitstream:
    # the check "runs at the board clock" failed (exit code 1).
    missed = not report.get("timing_met", True)
    if missed:
        print(f"yoso fpga: timing: the routed design reaches {report['fmax_mhz']:.2f} MHz, below the board clock "
              f"{board.clk_hz / 1e6:g} MHz: no bitstream (build in {args.build_dir or 'a temporary folder'})",
              file=sys.stderr)
    if args.program and not missed:
        if not report.get("bitstream"):
            raise CliError("--program: needs --build-dir (the bitstream of a temporary build is gone)")
        try:
            program(board, report["bitstream"])
        except RuntimeError as e:
            raise CliError(str(e)) from None
        report["programmed"] = True

    if args.json:
        print(json.dumps(report, indent=1))
        return 1 if missed else 0
    print(f"board {board.name} ({board.device}), network {report['architecture']}")
    print(f"accelerator: {report['accelerator']}")
    print(f"PE: {pe.neurons} neurons x {pe.fan_in} weight rows, {pe.lanes} lanes, weights in "
          f"{'SPRAM' if pe.weight_spram else 'block RAM'}")
    print(f"{'resource':<24}{'used':>8}{'available':>11}")
    for name, v in report["resources"].items():
        print(f"{name:<24}{v['used']:>8}{v['available']:>11}")
    print(f"Fmax {report['fmax_mhz']:.1f} MHz (board clock {board.clk_hz / 1e6:g} MHz)")
    if args.seeds > 1:
        def run_name(k):
            return "default seed" if int(k) == 1 else f"--seed {k}"
        runs = ", ".join(f"{run_name(k)} {v:.1f}" if v else f"{run_name(k)} -"
                         for k, v in report["fmax_by_seed"].items())
        print(f"placements: {runs} MHz; kept: {run_name(report['seed'])}")
    crit = report.get("critical_path")
    if crit:
        print(f"critical path {crit['ns']} ns ({crit['logic_ns']} logic, {crit['routing_ns']} routing, "
              f"{crit['levels']} cells): {crit['from']} -> {crit['to']}")
    if report.get("unclocked_dsp_path_ns"):
        print(f"paths through the combinational DSPs: {report['unclocked_dsp_path_ns']} ns plus the DSP delay "
              f"(not in nextpnr's Fmax)")
    if "cycles_per_image" in report:
        print(f"latency per image: {report['cycles_per_image']} cycles ({report['latency_image']}) = "
              f"{report.get('latency_at_fmax_us', float('nan')):.1f} us at Fmax, "
              f"{report.get('latency_at_board_clock_us', float('nan')):.1f} us at the board clock")
    if "cycles_per_image_early_exit" in report:
        print(f"with early exit: {report['cycles_per_image_early_exit']} cycles = "
              f"{report.get('latency_at_fmax_early_exit_us', float('nan')):.1f} us at Fmax")
    if report.get("bitstream"):
        print(f"bitstream {report['bitstream']}")
    return 1 if missed else 0
