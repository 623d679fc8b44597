"""Simulator throughput of `yoso verify`: the chunk transport against the free-running simulator and against
the cocotb transport, same process, same Verilator build settings, same images.

Three numbers, each in simulated clock cycles per second of wall time (reset, configuration and images):

* **free-running** (the baseline): the chunk testbench binary alone on a stimulus file written beforehand;
  the host source/sink runs inside the simulation, no Python at all while it runs. This is what Verilator
  itself delivers on this mesh with its host traffic.
* **chunk transport, end to end**: ``verify(transport="chunk")``: configuration words, stimulus file,
  simulator run, responses decoded and checked (host.runner.decode_image), golden model, scoreboard.
* **cocotb transport, end to end**: ``verify(transport="cocotb")``: Python acts on every clock edge
  (fewer images by default: it is the slow one).

Both transports must agree image for image (cycles, flits) on the images they share, and match the golden
model (0 mismatches); the script fails otherwise.

    .venv/bin/python benchmarks/sim_throughput.py [--net networks/fmnist-fc.npz] [--mesh 2x2] [--images 40]
        [--cocotb-images 10] [--window 1] [--early-exit] [--json]
"""

from __future__ import annotations

import argparse
import json
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
        raw_s = chunk_sim.run_binary(b, stim, resp, cwd=tmp)
        raw = chunk_sim.read_responses(resp, plan, len(inputs))

    # Chunk transport end to end (one chunk: configuration once).
    a: dict = {}
    t0 = time.perf_counter()
    s_chunk = verify(net, plan, inputs, sim="verilator", transport="chunk", chunk=len(inputs),
                     early_exit=args.early_exit, arrays=a)
    chunk_s = time.perf_counter() - t0
    chunk_cycles = 3 + a["cfg_cycles"] + int(a["cycles"].sum())
    assert chunk_cycles == raw.total_cycles, (chunk_cycles, raw.total_cycles)

    out = {
        "net": Path(args.net).name, "mesh": args.mesh, "window": args.window, "early_exit": args.early_exit,
        "images": args.images, "build_s": round(build_s, 1), "config_words_s": round(cfg_s, 2),
        "cycles_per_image": float(a["cycles"].mean()),
        "config_cycles": a["cfg_cycles"], "total_cycles": chunk_cycles,
        "free_running": {"wall_s": round(raw_s, 2), "cycles_per_s": round(chunk_cycles / raw_s)},
        "chunk": {"wall_s": round(chunk_s, 2), "cycles_per_s": round(chunk_cycles / chunk_s),
                  "mismatches": s_chunk["mismatches"], "protocol_errors": s_chunk["protocol_errors"]},
    }
    out["chunk_over_free_running"] = round(out["chunk"]["cycles_per_s"] / out["free_running"]["cycles_per_s"], 3)
    ok = s_chunk["mismatches"] == 0 and s_chunk["protocol_errors"] == 0
    if args.cocotb_images:
        n = min(args.cocotb_images, args.images)
        c: dict = {}
        t0 = time.perf_counter()
        s_co = verify(net, plan, inputs[:n], sim="verilator", transport="cocotb", chunk=n,
                      early_exit=args.early_exit, arrays=c)
        co_s = time.perf_counter() - t0
        co_cycles = 3 + c["cfg_cycles"] + int(c["cycles"].sum())
        same = bool(np.array_equal(c["cycles"], a["cycles"][:n]) and np.array_equal(c["flits"], a["flits"][:n]))
        out["cocotb"] = {"images": n, "wall_s": round(co_s, 2), "cycles_per_s": round(co_cycles / co_s),
                         "mismatches": s_co["mismatches"], "same_cycles_and_flits_as_chunk": same}
        out["chunk_over_cocotb"] = round(out["chunk"]["cycles_per_s"] / out["cocotb"]["cycles_per_s"], 2)
        out["cocotb_over_free_running"] = round(out["cocotb"]["cycles_per_s"] / out["free_running"]["cycles_per_s"],
                                                3)
        ok = ok and same and s_co["mismatches"] == 0
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['net']} on {args.mesh}, window {args.window}{', early exit' if args.early_exit else ''}: "
              f"{args.images} images, {out['cycles_per_image']:.0f} cycles/image, {out['config_cycles']} "
              f"configuration cycles, {chunk_cycles} cycles in all; configuration words {cfg_s:.1f} s (0 when "
              "cached by an earlier run)")
        print(f"free-running (binary alone)   {out['free_running']['cycles_per_s']:>9} cycles/s  "
              f"({raw_s:.1f} s)")
        print(f"chunk transport, end to end   {out['chunk']['cycles_per_s']:>9} cycles/s  ({chunk_s:.1f} s)  "
              f"= {out['chunk_over_free_running']:.1%} of free-running")
        if args.cocotb_images:
            co = out["cocotb"]
            print(f"cocotb transport, end to end  {co['cycles_per_s']:>9} cycles/s  ({co['wall_s']:.1f} s, "
                  f"{co['images']} images)  = {out['cocotb_over_free_running']:.1%} of free-running; chunk / "
                  f"cocotb = {out['chunk_over_cocotb']:.1f}x")
        print(f"mismatches: chunk {s_chunk['mismatches']}" + (f", cocotb {out['cocotb']['mismatches']}; same "
              f"cycles and flits per image: {out['cocotb']['same_cycles_and_flits_as_chunk']}"
              if args.cocotb_images else ""))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
