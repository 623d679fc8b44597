"""Simulator throughput of `yoso verify`: the chunk transport against the free-running simulator and against
the cocotb transport, same process, same Verilator build settings, same images.

Four rates, each in simulated clock cycles (reset, configuration and images) per second of wall time and per
CPU second (this process and its simulator processes: the number that a shared, loaded machine does not move):

* **free-running** (the baseline): the chunk testbench binary alone on a stimulus file written beforehand;
  the host source/sink runs inside the simulation, no Python at all while it runs. This is what Verilator
  itself delivers on this mesh with its host traffic.
* **chunk transport**: ``chunk_sim.run_chunk``: stimulus file, simulator run, responses decoded and checked
  into ImageResults (host.runner.decode_image): everything the transport does;
* **verify(), chunk transport**: ``verify(transport="chunk")`` end to end: the transport plus the golden model
  (model.run), the SOP count and the scoreboard;
* **verify(), cocotb transport**: ``verify(transport="cocotb")`` end to end: Python acts on every clock edge
  (fewer images by default: it is the slow one).

Configuration words are packed once (through the Amaranth layouts: seconds to minutes, printed) and cached on
disk (chunk_sim.config_words), so the chunk rows find them ready; the cocotb simulator packs them again.

Both transports must agree image for image (cycles, flits) on the images they share, and match the golden
model (0 mismatches); the script fails otherwise.

    .venv/bin/python benchmarks/sim_throughput.py [--net networks/fmnist-fc.npz] [--mesh 2x2] [--images 40]
        [--cocotb-images 10] [--window 1] [--early-exit] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

import model
from host.plan import plan_mesh
from model.datasets import load_dataset
from rtl.mesh import Mesh
from verif import chunk_sim
from verif.mesh_verify import TOP, verify
from verif.noc_runner import build as cocotb_build

ROOT = Path(__file__).resolve().parent.parent


def measure(fn):
    """(fn(), (wall seconds, CPU seconds of this process and its finished child processes))."""
    def cpu():
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    w0, c0 = time.perf_counter(), cpu()
    result = fn()
    return result, (time.perf_counter() - w0, cpu() - c0)


def rates(cycles: int, t: tuple[float, float]) -> dict:
    wall, cpu = t
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "per_s": round(cycles / wall),
            "per_cpu_s": round(cycles / cpu)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default=str(ROOT / "networks" / "fmnist-fc.npz"))
    ap.add_argument("--mesh", default="2x2")
    ap.add_argument("--images", type=int, default=40, help="images for the chunk transport and the baseline")
    ap.add_argument("--cocotb-images", type=int, default=10, help="images for the cocotb transport (0: skip)")
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("--early-exit", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    net = model.load(args.net)
    w, h = (int(v) for v in args.mesh.split("x"))
    plan = plan_mesh(net, w, h, window=args.window)
    test = load_dataset("fashion-mnist", "test")
    inputs = model.encode(test.images[: args.images].reshape(args.images, -1), net.encoding, net.time_bits)

    t0 = time.perf_counter()
    b = chunk_sim.build(plan.pe, plan.noc, "verilator")
    if args.cocotb_images:
        cocotb_build(Mesh(plan.pe, plan.noc), TOP, "verilator")
    build_s = time.perf_counter() - t0

    # Configuration words: packed once through the Amaranth layouts, then cached on disk (chunk_sim.config_words);
    # the chunk transport below finds them in the cache, the cocotb transport packs them again in its simulator.
    t0 = time.perf_counter()
    cfg = chunk_sim.config_words(plan)
    cfg_s = time.perf_counter() - t0

    # Free-running baseline: the binary alone on a stimulus written beforehand.
    with tempfile.TemporaryDirectory(prefix="yoso-bench-") as tmp:
        stim, resp = Path(tmp) / "stim.txt", Path(tmp) / "resp.txt"
        chunk_sim.write_stimulus(stim, plan, inputs, cfg_words=cfg, early_exit=args.early_exit)
        _, raw_t = measure(lambda: chunk_sim.run_binary(b, stim, resp, cwd=tmp))
        raw = chunk_sim.read_responses(resp, plan, len(inputs))

    # The chunk transport alone: stimulus file, simulator, responses decoded into ImageResults (decode_image).
    with tempfile.TemporaryDirectory(prefix="yoso-bench-") as tmp:
        (results, _), tr_t = measure(lambda: chunk_sim.run_chunk(b, plan, inputs, workdir=tmp, cfg_words=cfg,
                                                                  early_exit=args.early_exit))
    assert all(r.error is None for r in results)

    # verify() end to end through the chunk transport (one chunk: configuration once), golden model and scoreboard
    # included.
    a: dict = {}
    s_chunk, chunk_t = measure(lambda: verify(net, plan, inputs, sim="verilator", transport="chunk",
                                              chunk=len(inputs), early_exit=args.early_exit, arrays=a))
    cycles = 3 + a["cfg_cycles"] + int(a["cycles"].sum())
    assert cycles == raw.total_cycles, (cycles, raw.total_cycles)

    out = {
        "net": Path(args.net).name, "mesh": args.mesh, "window": args.window, "early_exit": args.early_exit,
        "images": args.images, "build_s": round(build_s, 1), "config_words_s": round(cfg_s, 2),
        "cycles_per_image": float(a["cycles"].mean()), "config_cycles": a["cfg_cycles"], "total_cycles": cycles,
        "free_running": rates(cycles, raw_t), "transport": rates(cycles, tr_t),
        "chunk": {**rates(cycles, chunk_t), "mismatches": s_chunk["mismatches"],
                  "protocol_errors": s_chunk["protocol_errors"]},
    }
    ok = s_chunk["mismatches"] == 0 and s_chunk["protocol_errors"] == 0
    rows = [("free-running (binary alone)", "free_running"), ("chunk transport (run_chunk)", "transport"),
            ("verify(), chunk transport", "chunk")]
    if args.cocotb_images:
        n = min(args.cocotb_images, args.images)
        c: dict = {}
        s_co, co_t = measure(lambda: verify(net, plan, inputs[:n], sim="verilator", transport="cocotb", chunk=n,
                                            early_exit=args.early_exit, arrays=c))
        co_cycles = 3 + c["cfg_cycles"] + int(c["cycles"].sum())
        same = bool(np.array_equal(c["cycles"], a["cycles"][:n]) and np.array_equal(c["flits"], a["flits"][:n]))
        out["cocotb"] = {"images": n, "cycles": co_cycles, **rates(co_cycles, co_t), "mismatches": s_co["mismatches"],
                         "same_cycles_and_flits_as_chunk": same}
        ok = ok and same and s_co["mismatches"] == 0
        rows.append((f"verify(), cocotb ({n} images)", "cocotb"))
    base = out["free_running"]
    for _, key in rows[1:]:
        out[f"{key}_over_free_running"] = {m: round(out[key][m] / base[m], 3) for m in ("per_s", "per_cpu_s")}
    if args.cocotb_images:
        out["chunk_over_cocotb"] = {m: round(out["chunk"][m] / out["cocotb"][m], 2) for m in ("per_s", "per_cpu_s")}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['net']} on {args.mesh}, window {args.window}{', early exit' if args.early_exit else ''}: "
              f"{args.images} images, {out['cycles_per_image']:.0f} cycles/image, {out['config_cycles']} "
              f"configuration cycles, {cycles} cycles in all; configuration words {cfg_s:.1f} s (about 0 when "
              "cached by an earlier run)")
        print(f"{'':30} {'cycles/s':>10} {'cycles/CPU-s':>13} {'wall s':>8} {'CPU s':>8}   vs free-running")
        for label, key in rows:
            r = out[key]
            vs = out.get(f"{key}_over_free_running")
            print(f"{label:30} {r['per_s']:>10} {r['per_cpu_s']:>13} {r['wall_s']:>8} {r['cpu_s']:>8}   "
                  + (f"{vs['per_s']:.1%} / {vs['per_cpu_s']:.1%} (wall / CPU)" if vs else "1"))
        if args.cocotb_images:
            x = out["chunk_over_cocotb"]
            print(f"chunk / cocotb: {x['per_s']:.1f}x (wall), {x['per_cpu_s']:.1f}x (CPU); same cycles and flits per "
                  f"image: {out['cocotb']['same_cycles_and_flits_as_chunk']}")
        print(f"mismatches: chunk {s_chunk['mismatches']}"
              + (f", cocotb {out['cocotb']['mismatches']}" if args.cocotb_images else ""))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
