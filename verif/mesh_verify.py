"""End-to-end verification of a network on the mesh RTL: map, build, simulate under cocotb in chunks of
images, compare every neuron's spike time in every layer with the golden model. Used by ``yoso verify`` and
the tests."""

from __future__ import annotations

import json
import os
import queue
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

import model
from host.plan import MeshPlan
from host.runner import result_arrays
from rtl.mesh import Mesh

from . import chunk_sim
from .noc_runner import build, run_test
from .scoreboard import compare

__all__ = ["verify", "TOP", "TRANSPORTS"]

TOP = "yoso_mesh"
#: How the host reaches the simulated mesh: per clock edge from Python, or per chunk inside the simulation.
TRANSPORTS = ("cocotb", "chunk")


def verify(net: model.Network, plan: MeshPlan, inputs: np.ndarray, *, labels: np.ndarray | None = None,
           sim: str = "icarus", chunk: int = 100, seed: int = 0, idle: float = 0.0, stall: float = 0.0,
           reset_after: int | None = None, progress=None, profile: bool = False, early_exit: bool = False,
           jobs: int = 1, transport: str = "cocotb", arrays: dict | None = None) -> dict:
    """Run ``inputs`` (images x inputs spike times) through the mesh RTL as ``plan`` (host.plan.plan_mesh of
    ``net``, with its run-ahead window) places ``net``; return the summary dict. The plan travels to the
    simulator processes as a file: nothing is mapped again there.

    ``progress(n)`` is called after each chunk with the number of images it ran; ``jobs`` chunks run at once
    (separate simulator processes). ``reset_after``: reset the
    mesh that many cycles into the first image of each chunk, then configure it again and run the chunk.
    ``early_exit``: the host aborts each image once its prediction is decided (host.runner.DecisionWatch);
    every spike time the host saw before is still compared, and every neuron it did not see must spike after
    the last step its PE closed. ``transport``: ``cocotb`` (Python acts on every clock edge of the host port)
    or ``chunk`` (verif/chunk_sim.py: the host of a chunk runs inside the simulation; no ``idle``, ``stall``,
    ``reset_after`` or ``profile``). ``arrays`` (a dict) receives the per-image results: ``layers``,
    ``horizons`` (per network layer), ``cycles``, ``decided``, ``flits`` (in, out) and ``cfg_cycles``."""
    mp = plan
    if transport not in TRANSPORTS:
        raise ValueError(f"transport: {transport!r} is not one of {', '.join(TRANSPORTS)}")
    if transport == "chunk" and (idle or stall or reset_after is not None or profile):
        raise ValueError("transport: chunk runs the host without idle cycles, backpressure, reset or profile "
                         "counters; use the cocotb transport for those")
    window = plan.window
    counts: dict[str, int] = {}
    inputs = np.asarray(inputs, dtype=np.int64).reshape(len(inputs), -1)
    start = time.perf_counter()
    golden = model.run(net, inputs)
    if transport == "chunk":
        cbuild = chunk_sim.build(mp.pe, mp.noc, sim)
        cfg_words = chunk_sim.config_words(plan)  # once for every chunk (and cached on disk)
    else:
        bdir = build(Mesh(mp.pe, mp.noc), TOP, sim, internals=profile)
    build_s = time.perf_counter() - start
    errors: list[str] = []

    def run_chunk(c: int, slot: int) -> dict:
        """Simulate chunk ``c`` in run folder ``slot``; returns its result arrays."""
        s = c * chunk
        cdir = Path(tmp) / f"chunk{c}"
        cdir.mkdir()
        if transport == "chunk":
            results, run = chunk_sim.run_chunk(cbuild, plan, inputs[s:s + chunk], workdir=cdir, cfg_words=cfg_words,
                                               early_exit=early_exit)
            shutil.rmtree(cdir)
            return result_arrays(plan, results, run.cfg_cycles)
        np.save(cdir / "inputs.npy", inputs[s:s + chunk])
        job = {"plan": plan_file, "inputs": str(cdir / "inputs.npy"), "result": str(cdir / "result.npz"),
               "seed": seed + c, "idle": idle, "stall": stall, "reset_after": reset_after, "profile": profile,
               "early_exit": early_exit}
        # The run folder is per process and slot: pytest-xdist workers, and the parallel chunks of one
        # verify, may run the same build at once.
        run_test(bdir, TOP, sim, module="verif.cocotb_mesh", testcase="test_images",
                 name=f"verify-{os.getpid()}-{slot}", env={"MESH_JOB": json.dumps(job)})
        with np.load(cdir / "result.npz", allow_pickle=False) as r:
            out = {k: r[k] for k in r.files}
        shutil.rmtree(cdir)
        return out

    n_chunks = -(-len(inputs) // chunk)
    results: list[dict | None] = [None] * n_chunks
    with tempfile.TemporaryDirectory(prefix="yoso-verify-") as tmp:
        plan_file = str(Path(tmp) / "plan.npz")
        plan.save(plan_file)
        # Chunks are independent simulator runs (each loads the configuration): ``jobs`` of them at once, each
        # worker thread with its own run folder; the threads only wait on the simulator subprocesses.
        slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for k in range(max(1, jobs)):
            slots.put(k)

        def task(c: int) -> tuple[int, dict]:
            slot = slots.get()
            try:
                return c, run_chunk(c, slot)
            finally:
                slots.put(slot)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for fut in as_completed([pool.submit(task, c) for c in range(n_chunks)]):
                c, r = fut.result()
                results[c] = r
                if progress:
                    progress(len(r["cycles"]))
    # Per network layer; None for a conv2d layer pooled inside its PEs (its PEs emit the pooled times).
    layers = [np.concatenate([r[f"layer{n}"] for r in results]) if f"layer{n}" in results[0] else None
              for n in range(mp.n_net_layers)]
    horizons = [np.concatenate([r[f"horizon{n}"] for r in results]) if f"horizon{n}" in results[0] else None
                for n in range(mp.n_net_layers)]
    decided = np.concatenate([r["decided"] for r in results])
    cycles = np.concatenate([r["cycles"] for r in results])
    flits = np.concatenate([np.stack([r["flits_in"], r["flits_out"]], axis=1) for r in results])
    cfg_cycles = int(results[-1]["cfg_cycles"])
    if arrays is not None:
        arrays.update(layers=layers, horizons=horizons, cycles=cycles, decided=decided, flits=flits,
                      cfg_cycles=cfg_cycles)
    for c, r in enumerate(results):
        if profile:
            for k, v in json.loads(str(r["profile"])).items():
                counts[k] = counts.get(k, 0) + v
        errors += [f"image {c * chunk + int(e.split(':')[0].split()[1])}:{e.split(':', 1)[1]}"
                   for e in r["errors"] if e]
    wall = time.perf_counter() - start
    # A neuron the host did not see spike must spike after the last step its PE closed (without early exit that
    # is t_end, so only a silent neuron qualifies): anything else is a mismatch.
    score = compare(layers, [t.reshape(len(inputs), -1) for t in golden.times], net.no_spike, horizons=horizons)
    pred = model.decide(layers[-1], net.no_spike)
    per_image = [tuple(t[b] for t in golden.times) for b in range(len(inputs))]
    sops = np.array([mp.sops(g, inputs[b]) for b, g in enumerate(per_image)])
    pes = len(mp.slices)
    bound = sops / (pes * mp.pe.lanes)
    summary = {
        "images": int(len(inputs)), "simulator": sim, "transport": transport, "window": window,
        "early_exit": early_exit,
        "mesh": f"{mp.noc.width}x{mp.noc.height}", "pes_used": pes,
        "pe": {"neurons": mp.pe.neurons, "lanes": mp.pe.lanes, "fan_in": mp.pe.fan_in},
        "spikes_compared": score.compared, "mismatches": len(score.mismatches),
        "first_mismatch": None if score else str(score.first),
        "protocol_errors": len(errors), "first_protocol_error": errors[0] if errors else None,
        "predictions_equal_golden": bool((pred == golden.prediction).all()),
        "cycles_per_image": float(cycles.mean()), "cycles_max": int(cycles.max()),
        "sops_per_image": float(sops.mean()), "lower_bound_per_image": float(bound.mean()),
        "cycles_over_lower_bound": float(cycles.sum() / max(1e-9, bound.sum())),
        # Where cycles go: the host port moves one flit per cycle each way; a PE sweeps `words` cycles per step.
        "host_flits_in_per_image": float(flits[:, 0].mean()), "host_flits_out_per_image": float(flits[:, 1].mean()),
        # Upper bound of a PE's step sweeps: every word rising in every step, plus the MARK (docs/pe.md).
        "sweep_cycles_max_per_image": int(net.t_end * (mp.pe.words + 1)), "config_cycles": cfg_cycles,
        "wall_s": round(wall, 1), "build_s": round(build_s, 1), "jobs": jobs, "chunk": chunk,
    }
    if early_exit:
        # SOPs that closing the decision step needs (inputs at steps <= decision), against the whole image.
        until = np.array([mp.sops(g, inputs[b], until=int(decided[b]) if decided[b] >= 0 else None)
                          for b, g in enumerate(per_image)])
        summary.update({
            "early_exit_images": int((decided >= 0).sum()),
            "decision_step_mean": float(decided[decided >= 0].mean()) if (decided >= 0).any() else None,
            "sops_until_decision_per_image": float(until.mean()),
            "sops_saved_fraction": float(1 - until.sum() / max(1, sops.sum())),
        })
    if profile:
        # Per image: cycles in which each counted event happened (Profile in verif/cocotb_mesh.py).
        summary["profile_per_image"] = {k: round(v / len(inputs), 1) for k, v in sorted(counts.items())}
    if labels is not None:
        labels = np.asarray(labels)[: len(inputs)]
        summary["accuracy"] = float((pred == labels).mean())
        summary["golden_accuracy"] = float((golden.prediction == labels).mean())
    return summary
