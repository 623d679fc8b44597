"""``yoso train``: STDBP training, quantisation-aware fine-tuning and export (docs/training.md)."""

from __future__ import annotations

import math
import sys

from model.datasets import DATASET_HELP

from .util import CliError, Interrupted


def register(sub) -> None:
    p = sub.add_parser("train", help="train a ReL-PSP network with STDBP, fine-tune it in fixed point, export it",
                       description="Float STDBP epochs, then quantisation-aware epochs in the exact integer "
                                   "semantics, export to OUT/network.npz and judge it with the golden model. "
                                   "OUT also gets report.json, checkpoint.pt and PNG plots. Runs under "
                                   "torchrun (DistributedDataParallel, gloo) too.")
    add_arguments(p)
    p.set_defaults(func=main)


def add_arguments(p, defaults: dict | None = None) -> None:
    """The training options, shared with ``yoso flow`` (which passes its own ``defaults`` for dataset, arch,
    epochs, ...); an option without a default (--dataset, --arch in ``yoso train``) is required."""
    d = {"dataset": None, "arch": None, "epochs": 10, "qat_epochs": 1, "lr": 5e-3, "input_drop": 0.0, "jitter": 0,
         **(defaults or {})}
    p.add_argument("--dataset", required=d["dataset"] is None, default=d["dataset"],
                   help=f"dataset: {DATASET_HELP}" + (f" (default {d['dataset']})" if d["dataset"] else ""))
    p.add_argument("--arch", required=d["arch"] is None, default=d["arch"],
                   help="784-800-10 (dense) or 1x28x28-c16k5-p2-c32k5-p2-10 (conv)"
                        + (f" (default {d['arch']})" if d["arch"] else ""))
    p.add_argument("--epochs", type=int, default=d["epochs"], help=f"float STDBP epochs (default {d['epochs']})")
    p.add_argument("--qat-epochs", type=int, default=d["qat_epochs"],
                   help=f"quantisation-aware epochs after them (default {d['qat_epochs']})")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and shuffling (default 0)")
    p.add_argument("--out", required=True, help="output folder (created with missing parents)")
    p.add_argument("--batch", type=int, default=32, help="global batch size (default 32)")
    p.add_argument("--lr", type=float, default=d["lr"],
                   help=f"Adam learning rate of the float phase (default {d['lr']:g})")
    p.add_argument("--schedule", choices=("cosine", "exp"), default="cosine",
                   help="float-phase learning rate: cosine over all float batches down to 2 %% of --lr "
                        "(default), or exp (times --lr-decay per epoch)")
    p.add_argument("--lr-decay", type=float, default=0.85, help="per-epoch factor of --schedule exp (default 0.85)")
    p.add_argument("--live-weight", type=float, default=1.0,
                   help="dead-neuron regulariser: lifts hidden neurons silent on a whole batch toward threshold "
                        "(default 1; 0 = off)")
    p.add_argument("--input-drop", type=float, default=d["input_drop"],
                   help=f"float epochs: drop each input spike with this probability (default {d['input_drop']:g})")
    p.add_argument("--jitter", type=int, default=d["jitter"],
                   help=f"float epochs: move each input spike by up to this many steps (default {d['jitter']})")
    p.add_argument("--shift", type=int, default=0,
                   help="float epochs: move each image by up to this many pixels along each axis, silent "
                        "pixels moved in (default 0)")
    p.add_argument("--flip", action="store_true",
                   help="float epochs: mirror each image left-right with probability 1/2 (default off)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    p.add_argument("--val-size", type=int,
                   help="training samples held out for the per-epoch curves (default min(5000, 10 %%))")
    p.add_argument("--qat-lr", type=float, default=1e-4, help="learning rate of the QAT phase (default 1e-4)")
    p.add_argument("--tau", type=float, default=3.0, help="softmax temperature in time steps (default 3)")
    p.add_argument("--late-weight", type=float, default=1.0,
                   help="penalty on correct outputs firing after t_end - 20 (default 1; 0 = off)")
    p.add_argument("--train-limit", type=int, help="first N training samples only")
    p.add_argument("--test-limit", type=int, help="first N test samples only (default: the full test set)")
    p.add_argument("--qat-limit", type=int, help="QAT epochs on the first N training samples only")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (default 1: faster than 2 on a busy 2-core machine)")
    p.add_argument("--t-in-max", type=int, default=31, help="latest input spike time of the encoding (default 31)")
    p.add_argument("--weight-bits", type=int, default=8, help="signed weight width of the export (default 8)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    p.add_argument("--force", action="store_true", help="replace the run already in OUT (its network.npz, "
                   "checkpoint.pt, report.json and plots are deleted once the inputs are checked); without "
                   "--force or --resume a folder holding a run is refused")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def main(args) -> int:
    report = run(args)
    if report and "float_test_accuracy" in report:
        print(f"float test accuracy       {report['float_test_accuracy']:.4f} (torch, {report['test_samples']} "
              "samples)")
        print(f"fixed-point test accuracy {report['fixed_point_test_accuracy']:.4f} (golden model on "
              f"{args.out}/network.npz)")
        print(f"wall time {report['wall_time_s']:.0f} s; report {args.out}/report.json")
    return 0


def run(args) -> dict:
    """Check the options, train, export, judge; returns the report (empty on other DDP ranks)."""
    for name, lo in (("epochs", 0), ("qat_epochs", 0), ("batch", 1), ("threads", 1), ("train_limit", 1),
                     ("test_limit", 1), ("qat_limit", 1), ("val_size", 0), ("jitter", 0),
                     ("shift", 0)):
        v = getattr(args, name)
        if v is not None and v < lo:
            raise CliError(f"--{name.replace('_', '-')}: must be >= {lo}, got {v}")
    if args.epochs + args.qat_epochs < 1:
        raise CliError("--epochs: --epochs + --qat-epochs must be >= 1")
    for name in ("lr", "qat_lr", "tau", "lr_decay"):
        if not 0 < getattr(args, name) < math.inf:
            raise CliError(f"--{name.replace('_', '-')}: must be a finite number > 0, got {getattr(args, name)}")
    for name in ("late_weight", "live_weight", "weight_decay"):
        if not 0 <= getattr(args, name) < math.inf:
            raise CliError(f"--{name.replace('_', '-')}: must be a finite number >= 0, got {getattr(args, name)}")
    if not 0 <= args.input_drop < 1:
        raise CliError(f"--input-drop: must lie in [0, 1), got {args.input_drop}")
    if not 2 <= args.weight_bits <= 16:
        raise CliError(f"--weight-bits: must lie in 2..16, got {args.weight_bits}")
    if not 0 <= args.t_in_max <= 254:
        raise CliError(f"--t-in-max: must lie in 0..254 (t_end), got {args.t_in_max}")
    if not 0 <= args.jitter <= 254:
        raise CliError(f"--jitter: must lie in 0..254 (t_end), got {args.jitter}")
    if not 1 <= args.threads <= 256:
        raise CliError(f"--threads: must lie in 1..256, got {args.threads}")
    if not 0 <= args.seed < 1 << 32:
        raise CliError(f"--seed: must lie in 0..{(1 << 32) - 1}, got {args.seed}")
    if args.force and args.resume:
        raise CliError("--force: cannot be combined with --resume (--force starts over, --resume continues)")
    from training.net import ArchError, parse_arch
    from training.train import TrainConfig, TrainError, train

    try:
        _, specs = parse_arch(args.arch)
    except ArchError as e:
        raise CliError(str(e)) from None
    check_arch_size(specs)
    cfg = TrainConfig(dataset=args.dataset, arch=args.arch, out=args.out, epochs=args.epochs,
                      qat_epochs=args.qat_epochs, seed=args.seed, batch=args.batch, lr=args.lr,
                      qat_lr=args.qat_lr, tau=args.tau, late_weight=args.late_weight, schedule=args.schedule,
                      lr_decay=args.lr_decay, live_weight=args.live_weight, input_drop=args.input_drop,
                      jitter=args.jitter, shift=args.shift, flip=args.flip, weight_decay=args.weight_decay,
                      val_size=args.val_size,
                      train_limit=args.train_limit, test_limit=args.test_limit, qat_limit=args.qat_limit,
                      threads=args.threads, t_in_max=args.t_in_max,
                      weight_bits=args.weight_bits, resume=args.resume, force=args.force,
                      progress=not args.quiet,
                      plots=not args.no_plots, command=["yoso", *sys.argv[1:]] if sys.argv[0].endswith("yoso")
                      else list(sys.argv))
    try:
        report = train(cfg)
    except (ArchError, TrainError) as e:
        raise CliError(str(e)) from None
    except KeyboardInterrupt:
        raise Interrupted(interrupt_note(args.out, args.epochs + args.qat_epochs)) from None
    return report


def check_arch_size(specs) -> None:
    """Refuse, before torch allocates anything, a layer the exported network could not hold (the limits of
    model/network.py: conv padding at most the kernel, at most MAX_LAYER_SYNAPSES synapses per layer)."""
    from model.network import check_layer_size

    for n, spec in enumerate(specs):
        if spec.kind == "maxpool2d":
            continue
        if spec.kind == "conv2d" and spec.padding > spec.kernel:
            raise CliError(f"--arch: layer {n + 1}: padding {spec.padding} exceeds the kernel {spec.kernel} "
                           "(positions beyond it see only padding)")
        try:
            check_layer_size(f"layer {n + 1}", math.prod(spec.in_shape), math.prod(spec.out_shape))
        except ValueError as e:
            raise CliError(f"--arch: {e}") from None


def interrupt_note(out: str, total: int) -> str:
    """What a Ctrl-C leaves behind: the epoch the checkpoint holds and the flag that continues from it."""
    from pathlib import Path

    from training.train import CHECKPOINT

    ckpt = Path(out) / CHECKPOINT
    if not ckpt.is_file():
        return f"interrupted (Ctrl-C) before the first epoch finished; {out} holds no checkpoint to resume"
    try:
        import torch

        epoch = int(torch.load(ckpt, weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - only the note is lost: the command is ending anyway
        epoch = None
    done = f"epoch {epoch} of {total}" if epoch is not None else "the last finished epoch"
    return (f"interrupted (Ctrl-C); {ckpt} holds {done}: run the same command with --resume to continue")
