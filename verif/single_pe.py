"""A whole network on one PE: every dense/conv2d layer is loaded through ``cfg`` in turn (in slices of
``neurons`` outputs when it has more) and all input images run through it; maxpool2d layers, which have no
neurons, are done by the host (model.maxpool_times). The result has the layout of ``yoso infer --dump-spikes``
(docs/spec.md section 8), so it is compared with the golden model's results array by array.

Host side (this module, imported by pytest) and simulator side (``run_network_layers`` in verif/cocotb_pe.py)
share the plan below.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np

import model
from host.plan import pe_config
from rtl.config import PEConfig

__all__ = ["pe_layers", "layer_slices", "run_network"]


def pe_layers(net: model.Network):
    """Per layer of ``net``: ("pe", weight (in, out), threshold (out,)) or ("pool", layer)."""
    return [("pool", layer) if layer.kind == "maxpool2d" else ("pe", *model.dense_equivalent(layer))
            for layer in net.layers]


def run_network(net_path: str | os.PathLike, input_times: np.ndarray, *, lanes: int = 4,
                neurons: int | None = None, sim: str | None = None, name: str = "network") -> dict:
    """Run ``input_times`` (batch, n_inputs) through the network file on one simulated PE (cocotb).

    Returns {"layer{n}": (batch, out_size) spike times, "cycles": int, "config": PEConfig}.
    """
    from . import runner

    net = model.load(net_path)
    cfg = pe_config(net, lanes=lanes, neurons=neurons)
    with tempfile.TemporaryDirectory() as tmp:
        times = Path(tmp) / "inputs.npy"
        result = Path(tmp) / "result.npz"
        np.save(times, np.asarray(input_times, dtype=np.int64))
        runner.run_network(cfg, net_path=str(Path(net_path).resolve()), inputs=str(times), result=str(result),
                           name=name, sim=sim)
        with np.load(result) as z:
            out = {k: z[k] for k in z.files}
    out["config"] = cfg
    out["cycles"] = int(out["cycles"])
    return out


def layer_slices(cfg: PEConfig, weight: np.ndarray):
    """Slices (start, stop) of a layer's outputs that fit the PE's neurons."""
    n_out = weight.shape[1]
    if weight.shape[0] > cfg.fan_in:
        raise ValueError(f"fan_in: layer has {weight.shape[0]} inputs, the PE {cfg.fan_in}")
    return [(s, min(n_out, s + cfg.neurons)) for s in range(0, n_out, cfg.neurons)]


def main(argv=None) -> int:
    """``python -m verif.single_pe --net FILE --dataset fashion-mnist --limit 100``: run the network on one
    simulated PE and compare every layer with the golden model (model.run); exit 1 on any mismatch."""
    import argparse
    import time

    from model.datasets import load_dataset

    from .scoreboard import first_mismatch

    p = argparse.ArgumentParser(prog="python -m verif.single_pe", description=main.__doc__)
    p.add_argument("--net", required=True)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--lanes", type=int, default=8)
    p.add_argument("--neurons", type=int, help="PE neurons (default: the widest layer); layers are sliced")
    p.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
    args = p.parse_args(argv)
    net = model.load(args.net)
    pixels = load_dataset(args.dataset, "test").images[:args.limit]
    images = pixels.reshape(len(pixels), -1)
    inputs = model.encode(images, net.encoding, net.time_bits)
    golden = model.run(net, inputs)
    want = {"input": inputs, **{f"layer{k}": t for k, t in enumerate(golden.times)}}
    start = time.perf_counter()
    got = run_network(args.net, want["input"], lanes=args.lanes, neurons=args.neurons, sim=args.sim,
                      name="cli")
    bad, compared = 0, 0
    for k in range(len(net.layers)):
        g, w = got[f"layer{k}"], want[f"layer{k}"].reshape(len(got[f"layer{k}"]), -1)
        compared += w.size
        for b in range(len(g)):
            msg = first_mismatch(g[b], w[b], net.no_spike)
            if msg:
                bad += 1
                print(f"MISMATCH layer {k} image {b}: {msg}")
    fired = [float((want[f"layer{k}"] != net.no_spike).mean()) for k in range(len(net.layers))]
    print(json.dumps({"net": args.net, "images": len(want["input"]), "layers": len(net.layers),
                      "spike_times_compared": compared, "mismatching_rows": bad, "fired_fraction": fired,
                      "cycles": got["cycles"], "config": dataclasses.asdict(got["config"]),
                      "wall_s": round(time.perf_counter() - start, 1)}))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
