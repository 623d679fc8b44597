"""``yoso verify``: map a network onto the mesh, run the RTL under cocotb, compare every neuron's spike time in
every layer with the golden model."""

from __future__ import annotations

import json
import re

from .util import CliError, add_mapping_options, load_inputs, mapping_options


def register(sub) -> None:
    from model.datasets import DATASET_HELP

    p = sub.add_parser("verify", help="run a network on the mesh RTL (cocotb) and compare it bit for bit with "
                                      "the golden model",
                       description="Maps the network onto a W x H mesh (host/plan.py), generates the mesh "
                                   "Verilog, runs the images under cocotb and compares every neuron's spike time "
                                   "in every layer with model.run. Exits 1 on any mismatch (docs/noc.md).")
    p.add_argument("--net", required=True, help="network file (.npz, docs/spec.md section 7)")
    p.add_argument("--mesh", required=True, metavar="WxH", help="mesh size, e.g. 2x2")
    p.add_argument("--sim", choices=("icarus", "verilator"), default="icarus", help="simulator (default icarus)")
    p.add_argument("--transport", choices=("cocotb", "chunk"), default="cocotb",
                   help="how the host reaches the simulated mesh: cocotb (Python acts on every clock edge) or chunk "
                   "(the host of each chunk runs inside the simulation, responses read back once per chunk; "
                   "docs/simulation.md) (default cocotb)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help=f"test split of a dataset: {DATASET_HELP}")
    src.add_argument("--input-times", metavar="FILE.npy", help="integer input spike times (images x inputs)")
    p.add_argument("--images", type=int, help="first N images (default all)")
    p.add_argument("--neurons", type=int, default=64, help="neurons per PE (default 64)")
    p.add_argument("--lanes", type=int, default=4, help="neurons updated per cycle in a PE (default 4)")
    add_mapping_options(p)
    p.add_argument("--chunk", type=int, default=100, help="images per simulator run (default 100)")
    p.add_argument("--jobs", type=int, default=1, help="chunks simulated at once, one simulator process each "
                   "(default 1)")
    p.add_argument("--window", type=int, default=1, help="run-ahead window in time steps: the host sends step s "
                   "after every PE reported STEP_END(s - window); sizes the PEs' defer FIFOs (default 1)")
    p.add_argument("--profile", action="store_true", help="also count, per image, host-port and per-PE "
                   "handshakes and stalls (slower; the JSON gets profile_per_image, docs/noc.md 'Cycle breakdown')")
    p.add_argument("--early-exit", action="store_true", help="abort each image once its prediction is decided "
                   "(an output spike at step t and every output PE closed step t); spike times seen until then "
                   "are compared, and the cycles and SOPs saved are reported (docs/noc.md 'Early exit')")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=main)


def parse_mesh(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text or "")
    if not m:
        raise CliError(f"--mesh: expected WxH such as 2x2, got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (1 <= w <= 64 and 1 <= h <= 64):
        raise CliError(f"--mesh: width and height must be in 1..64, got {w}x{h}")
    return w, h


def main(args) -> int:
    import model

    width, height = parse_mesh(args.mesh)
    for name, lo in (("images", 1), ("neurons", 1), ("lanes", 1), ("chunk", 1), ("jobs", 1), ("window", 1)):
        v = getattr(args, name)
        if v is not None and v < lo:
            raise CliError(f"--{name}: must be >= {lo}, got {v}")
    if args.transport == "chunk" and args.profile:
        raise CliError("--profile: needs --transport cocotb (the chunk transport counts no handshakes)")
    net = model.load(args.net)
    inputs, labels = load_inputs(net, dataset=args.dataset, input_times=args.input_times, limit=args.images)
    from host.plan import plan_mesh

    plan = plan_mesh(net, width, height, neurons=args.neurons, lanes=args.lanes, window=args.window,
                     **mapping_options(args))  # fit errors
    from tqdm import tqdm

    from verif.mesh_verify import verify

    with tqdm(total=len(inputs), desc="verify", unit="img", disable=args.json) as bar:
        summary = verify(net, plan, inputs, labels=labels, sim=args.sim, chunk=args.chunk, progress=bar.update,
                         profile=args.profile, early_exit=args.early_exit, jobs=args.jobs,
                         transport=args.transport)
    summary["mapping"] = plan.describe()
    if args.json:
        print(json.dumps(summary))
    else:
        lines = [
            f"mapping            {summary['mapping']}",
            f"images run         {summary['images']} ({summary['simulator']}, {summary['transport']} transport, "
            f"{summary['wall_s']} s)",
            f"spikes compared    {summary['spikes_compared']} (every neuron of every layer; a conv2d layer "
            "followed by maxpool2d: its pooled times)",
            f"mismatches         {summary['mismatches']}" + (f"  first: {summary['first_mismatch']}"
                                                             if summary['first_mismatch'] else ""),
            f"protocol errors    {summary['protocol_errors']}",
        ]
        if "accuracy" in summary:
            lines.append(f"accuracy           {summary['accuracy']:.4f} (golden model "
                         f"{summary['golden_accuracy']:.4f})")
        lines += [
            f"cycles per image   {summary['cycles_per_image']:.1f} (max {summary['cycles_max']})",
            f"SOPs per image     {summary['sops_per_image']:.1f}",
            f"lower bound        {summary['lower_bound_per_image']:.1f} cycles = SOPs / ({summary['pes_used']} "
            f"PEs x {summary['pe']['lanes']} lanes)",
            f"cycles / bound     {summary['cycles_over_lower_bound']:.2f}",
            f"where cycles go    host port {summary['host_flits_in_per_image']:.0f} flits in, "
            f"{summary['host_flits_out_per_image']:.0f} out per image (1 per cycle each way); "
            f"time-step sweeps at most {summary['sweep_cycles_max_per_image']} cycles per PE per image "
            f"(rising words only, docs/pe.md)",
        ]
        if args.early_exit:
            step = summary["decision_step_mean"]
            lines.append(f"early exit         {summary['early_exit_images']} of {summary['images']} images decided "
                         f"early (mean decision step {'-' if step is None else f'{step:.1f}'}); SOPs until the "
                         f"decision {summary['sops_until_decision_per_image']:.1f} per image "
                         f"({100 * summary['sops_saved_fraction']:.1f} % saved)")
        print("\n".join(lines))
    ok = summary["mismatches"] == 0 and summary["protocol_errors"] == 0 and summary["predictions_equal_golden"]
    return 0 if ok else 1
