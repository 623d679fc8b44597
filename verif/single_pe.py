"""A whole network on one PE: every dense/conv2d layer is loaded through ``cfg`` in turn (in slices of
``neurons`` outputs when it has more) and all input images run through it; maxpool2d layers, which have no
neurons, are done by the host. The result has the layout of ``yoso infer --dump-spikes`` (docs/spec.md
section 8), so it is compared with the golden model's dump array by array.

Host side (this module, imported by pytest and the CLI) and simulator side (``run_network_in_sim``, called
from verif/cocotb_pe.py) share the plan below.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np

import model
from rtl.config import PEConfig

__all__ = ["pe_layers", "run_network", "maxpool_times"]


def pe_layers(net: model.Network):
    """Per layer of ``net``: ("pe", weight (in, out), threshold (out,)) or ("pool", layer)."""
    out = []
    for layer in net.layers:
        if layer.kind == "dense":
            out.append(("pe", layer.weight, layer.threshold))
        elif layer.kind == "conv2d":
            oh_ow = int(np.prod(layer.out_shape[1:]))
            out.append(("pe", model.conv_as_dense(layer), np.repeat(layer.threshold, oh_ow)))
        else:
            out.append(("pool", layer))
    return out


def maxpool_times(t: np.ndarray, layer) -> np.ndarray:
    """Spike-time max pooling (earliest time of each window), docs/spec.md section 5; (batch, out_size)."""
    c, h, w = layer.in_shape
    _, oh, ow = layer.out_shape
    x = t.reshape(len(t), c, h, w)
    out = np.empty((len(t), c, oh, ow), dtype=np.int64)
    k, s = layer.kernel, layer.stride
    for y in range(oh):
        for xx in range(ow):
            out[:, :, y, xx] = x[:, :, y * s:y * s + k, xx * s:xx * s + k].min(axis=(2, 3))
    return out.reshape(len(t), -1)


def run_network(net_path: str | os.PathLike, input_times: np.ndarray, *, lanes: int = 4,
                neurons: int | None = None, sim: str | None = None, name: str = "network") -> dict:
    """Run ``input_times`` (batch, n_inputs) through the network file on one simulated PE (cocotb).

    Returns {"layer{n}": (batch, out_size) spike times, "cycles": int, "config": PEConfig}.
    """
    from . import runner

    net = model.load(net_path)
    cfg = PEConfig.for_network(net, lanes=lanes)
    if neurons is not None:
        cfg = dataclasses.replace(cfg, neurons=neurons)
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


def layer_jobs(cfg: PEConfig, weight: np.ndarray, threshold: np.ndarray):
    """Slices (start, stop) of a layer's outputs that fit the PE's neurons."""
    n_out = weight.shape[1]
    if weight.shape[0] > cfg.fan_in:
        raise ValueError(f"fan_in: layer has {weight.shape[0]} inputs, the PE {cfg.fan_in}")
    return [(s, min(n_out, s + cfg.neurons)) for s in range(0, n_out, cfg.neurons)]


def describe(cfg: PEConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg))


def main(argv=None) -> int:
    """``python -m verif.single_pe --net FILE --dataset fashion-mnist --limit 100``: run the network on one
    simulated PE and compare every layer with ``yoso infer --dump-spikes``; exit 1 on any mismatch."""
    import argparse
    import time

    from yoso.cli import main as yoso_main

    from .driver import first_mismatch

    p = argparse.ArgumentParser(prog="python -m verif.single_pe", description=main.__doc__)
    p.add_argument("--net", required=True)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--lanes", type=int, default=8)
    p.add_argument("--neurons", type=int, help="PE neurons (default: the widest layer); layers are sliced")
    p.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
    args = p.parse_args(argv)
    net = model.load(args.net)
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "golden.npz"
        if yoso_main(["infer", "--net", args.net, "--dataset", args.dataset, "--limit", str(args.limit), "--json",
                      "--dump-spikes", str(dump)]):
            return 2
        with np.load(dump) as z:
            want = {k: z[k] for k in z.files}
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
