"""``yoso infer``: golden-model inference over a dataset or raw input spike times."""

from __future__ import annotations

import json
import sys
import time

import numpy as np

import model
from model.datasets import DATASET_HELP

from .util import CliError, atomic_path, load_inputs


def register(sub) -> None:
    p = sub.add_parser("infer", help="run the integer golden model on a dataset or raw input spike times",
                       description="Golden-model inference (docs/spec.md). Prints accuracy, silent outputs "
                                   "and spike statistics; --dump-spikes writes every layer's spike times.")
    p.add_argument("--net", required=True, help="network file (.npz, docs/spec.md section 7)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help=f"test split of a dataset: {DATASET_HELP}")
    src.add_argument("--input-times", metavar="FILE.npy", help="integer input spike times (batch x inputs)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="dataset split (default test)")
    p.add_argument("--limit", type=int, help="first N samples only")
    p.add_argument("--batch", type=int, default=1000, help="samples per golden-model call (default 1000)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--min-accuracy", type=float, metavar="A", help="exit 1 when the accuracy is below A (a "
                   "fraction in 0..1; needs --dataset)")
    p.add_argument("--dump-spikes", metavar="OUT.npz", help="write input times, every layer's spike times, "
                   "predictions (and labels) to OUT.npz (docs/spec.md section 8)")
    p.set_defaults(func=main)


def layer_stats(net: model.Network, result: model.Result) -> list[dict]:
    stats = []
    for n, (layer, t) in enumerate(zip(net.layers, result.times, strict=True)):
        flat = t.reshape(len(t), -1)
        fired = flat != net.no_spike
        stats.append({
            "layer": n, "kind": layer.kind, "neurons": int(flat.shape[1]),
            "fired_fraction": float(fired.mean()) if flat.size else 0.0,
            "mean_spike_time": float(flat[fired].mean()) if fired.any() else None,
            "dead_neurons": int((~fired.any(axis=0)).sum()),
        })
    return stats


def main(args) -> int:
    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit: must be >= 1, got {args.limit}")
    if args.batch < 1:
        raise CliError(f"--batch: must be >= 1, got {args.batch}")
    if args.min_accuracy is not None:
        if not 0 <= args.min_accuracy <= 1:
            raise CliError(f"--min-accuracy: must be a fraction in 0..1, got {args.min_accuracy}")
        if args.dataset is None:
            raise CliError("--min-accuracy: needs --dataset (raw --input-times carry no labels)")
    net = model.load(args.net)
    inputs, labels = load_inputs(net, dataset=args.dataset, input_times=args.input_times, limit=args.limit,
                                 split=args.split)
    from tqdm import tqdm

    start = time.perf_counter()
    parts = []
    for s in tqdm(range(0, len(inputs), args.batch), desc="infer", unit="batch", disable=args.json,
                  leave=False):
        parts.append(model.run(net, inputs[s:s + args.batch]))
    elapsed = time.perf_counter() - start
    result = model.Result(times=tuple(np.concatenate([r.times[n] for r in parts]) for n in range(len(net.layers))),
                          prediction=np.concatenate([r.prediction for r in parts]))
    report = {
        "net": str(args.net), "arch": net.describe(), "samples": int(len(inputs)),
        "no_decision": int((result.prediction == model.NO_DECISION).sum()),
        "images_per_s": len(inputs) / elapsed if elapsed > 0 else None,
        "layers": layer_stats(net, result),
    }
    if labels is not None:
        report["accuracy"] = float((result.prediction == labels).mean())
    if args.dump_spikes:
        arrays = {"input": inputs, "prediction": result.prediction, "t_end": np.array(net.t_end),
                  "no_spike": np.array(net.no_spike)}
        arrays.update({f"layer{n}": t for n, t in enumerate(result.times)})
        if labels is not None:
            arrays["label"] = labels
        with atomic_path(args.dump_spikes) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **{k: np.asarray(v, dtype=np.int64) for k, v in arrays.items()})
        report["dump_spikes"] = str(args.dump_spikes)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"network {report['arch']} ({args.net}), {report['samples']} samples, "
              f"{report['images_per_s']:.0f} images/s")
        if "accuracy" in report:
            print(f"accuracy      {100 * report['accuracy']:.2f} %")
        print(f"no decision   {report['no_decision']} (all outputs silent)")
        for s in report["layers"]:
            mean = f"{s['mean_spike_time']:.2f}" if s["mean_spike_time"] is not None else "-"
            fired = 100 * s["fired_fraction"]
            print(f"layer {s['layer']} {s['kind']:<9} {s['neurons']:>6} neurons  fired {fired:5.1f} %"
                  f"  mean t {mean:>6}  dead {s['dead_neurons']}")
        if args.dump_spikes:
            print(f"spike times written to {args.dump_spikes}")
    if args.min_accuracy is not None and report["accuracy"] < args.min_accuracy:
        print(f"yoso infer: check failed: accuracy {report['accuracy']:.4f} is below --min-accuracy "
              f"{args.min_accuracy}", file=sys.stderr)
        return 1
    return 0
