"""``yoso flow``: the whole chain a user comes for, in one command: train a network with STDBP, fine-tune it
in fixed point, export it, judge it with the golden model on the test set, run a few test images on the RTL
mesh (cocotb) and compare every neuron's spike time with the golden model, write the mesh Verilog, and print
one short summary (also ``OUT/flow.json``). Exit status 1 when the RTL and the golden model disagree."""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import train as train_cmd
from .util import CliError, atomic_path, load_inputs
from .verify import parse_mesh

#: Training defaults of the flow: the README main job (docs/training.md).
DEFAULTS = {"dataset": "fashion-mnist", "arch": "784-100-10", "epochs": 5, "qat_epochs": 1, "lr": 2e-3,
            "input_drop": 0.1, "jitter": 1}


def register(sub) -> None:
    p = sub.add_parser("flow", help="train -> export -> golden model -> RTL mesh bit-exact check -> Verilog, "
                                    "one summary",
                       description=__doc__.split("\n\n")[0].replace("``", "`"))
    train_cmd.add_arguments(p, defaults=DEFAULTS)
    p.add_argument("--mesh", default="2x2", metavar="WxH", help="mesh for the RTL check (default 2x2)")
    p.add_argument("--rtl-images", type=int, default=4, help="test images run on the RTL (default 4)")
    p.add_argument("--sim", choices=("icarus", "verilator"), default="icarus",
                   help="simulator of the RTL check (default icarus)")
    p.set_defaults(func=main)


def main(args) -> int:
    import model
    from host.plan import plan_mesh
    from verif.mesh_verify import verify

    width, height = parse_mesh(args.mesh)
    if args.rtl_images < 1:
        raise CliError(f"--rtl-images: must be >= 1, got {args.rtl_images}")
    start = time.perf_counter()
    report = train_cmd.run(args)
    if "fixed_point_test_accuracy" not in report:
        return 0
    train_s = time.perf_counter() - start
    out = Path(args.out)
    net = model.load(out / "network.npz")
    inputs, labels = load_inputs(net, dataset=args.dataset, input_times=None, limit=args.rtl_images)
    plan = plan_mesh(net, width, height, window=8)  # MappingError (needed vs available) exits 2 in yoso.cli
    t0 = time.perf_counter()
    rtl = verify(net, plan, inputs, labels=labels, sim=args.sim, chunk=len(inputs))
    rtl_s = time.perf_counter() - t0

    from amaranth.back import verilog as back

    from rtl.mesh import Mesh

    text = back.convert(Mesh(plan.pe, plan.noc), name="yoso_mesh", emit_src=False)
    vpath = out / "yoso_mesh.v"
    with atomic_path(vpath) as tmp:
        tmp.write_text(text)
    dead = report["fixed_point_dead_ratio"]
    summary = {
        "network": str(out / "network.npz"), "arch": report["network"],
        "float_test_accuracy": report["float_test_accuracy"],
        "fixed_point_test_accuracy": report["fixed_point_test_accuracy"],
        "test_samples": report["test_samples"], "dead_ratio_fixed_point": dead, "train_wall_s": round(train_s, 1),
        "rtl": {"mapping": plan.describe(), "simulator": rtl["simulator"], "images": rtl["images"],
                "spikes_compared": rtl["spikes_compared"], "mismatches": rtl["mismatches"],
                "protocol_errors": rtl["protocol_errors"], "predictions_equal_golden": rtl["predictions_equal_golden"],
                "cycles_per_image": rtl["cycles_per_image"], "wall_s": round(rtl_s, 1)},
        "verilog": {"path": str(vpath), "lines": text.count("\n")},
    }
    with atomic_path(out / "flow.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
    ok = rtl["mismatches"] == 0 and rtl["protocol_errors"] == 0 and rtl["predictions_equal_golden"]
    print("\n".join([
        f"trained      {report['network']} on {args.dataset} in {train_s:.0f} s "
        f"(dead hidden neurons: {', '.join(f'{d:.0%}' for d in dead[:-1])})",
        f"accuracy     float {report['float_test_accuracy']:.4f}, fixed point {report['fixed_point_test_accuracy']:.4f}"
        f" (golden model on {report['test_samples']} test images, {out / 'network.npz'})",
        f"RTL mesh     {plan.describe()}",
        f"             {rtl['images']} test images under {rtl['simulator']}: {rtl['spikes_compared']} spike times "
        f"compared, {rtl['mismatches']} mismatches, {rtl['cycles_per_image']:.0f} cycles per image "
        f"({rtl_s:.0f} s)",
        f"Verilog      {vpath} ({text.count(chr(10))} lines)",
        f"result       {'bit-exact' if ok else 'MISMATCH'}; summary {out / 'flow.json'}",
    ]))
    return 0 if ok else 1
