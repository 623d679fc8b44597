"""The training loop: float STDBP epochs, then quantisation-aware epochs, export and the golden-model judge.

Deterministic given the seed: weights come from a seeded generator, thresholds from a fixed calibration
batch, and epoch ``e`` shuffles with ``numpy.random.default_rng([seed, e])``, so a run resumed from its
checkpoint continues exactly as if it had not stopped. Checkpoints hold tensors, numbers and strings only
and are read with ``torch.load(weights_only=True)`` (no arbitrary pickle), written to a temporary file and
renamed into place.

Under ``torchrun`` (``WORLD_SIZE > 1``) each process joins a gloo process group, the model is wrapped in
``DistributedDataParallel`` and every global batch is split between the processes (rank r takes rows
r, r + world, ...); DDP averages the gradients, which equals the single-process gradient of the mean loss
when the shards have equal size. Rank 0 evaluates, writes checkpoints and the report.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import model
from model.datasets import load_dataset

from .net import SpikingNet, to_network

__all__ = ["TrainConfig", "TrainError", "train", "loss_fn", "live_penalty", "augment", "predict", "evaluate_float",
           "golden_eval"]

CHECKPOINT = "checkpoint.pt"


class TrainError(ValueError):
    """A training setting does not fit the data or the run folder; the message names the flag."""


NETWORK = "network.npz"


def _drop_run(out: Path, created: bool) -> None:
    """A diverged run leaves nothing behind in a folder it created (a resumed run keeps its checkpoint)."""
    if created:
        shutil.rmtree(out, ignore_errors=True)


def _diverged(epoch: int, batch: int, quantised: bool, what: str) -> str:
    lr = "--qat-lr" if quantised else "--lr"
    return (f"training diverged at epoch {epoch + 1}, batch {batch + 1}: {what}; "
            f"lower {lr} or raise --tau (nothing was exported)")
REPORT = "report.json"


@dataclass
class TrainConfig:
    dataset: str
    arch: str
    out: str
    epochs: int = 10
    qat_epochs: int = 1
    seed: int = 0
    batch: int = 32
    lr: float = 5e-3
    qat_lr: float = 1e-4
    tau: float = 3.0  # softmax temperature in time steps: logits are -t_out / tau
    out_window: int = 1000  # training-only firing window of the output layer (gives silent outputs a gradient)
    late_weight: float = 1.0  # weight of the penalty on correct outputs firing after t_end - 20 (see loss_fn)
    schedule: str = "cosine"  # float-phase learning rate: "cosine" (per batch, to lr * 0.02) or "exp"
    lr_decay: float = 0.85  # "exp" schedule: learning rate multiplied by this after each float epoch
    live_weight: float = 1.0  # dead-neuron regulariser (see live_penalty); 0 = off
    input_drop: float = 0.0  # float epochs: each input spike is dropped (made silent) with this probability
    jitter: int = 0  # float epochs: each input spike moves by a uniform integer in [-jitter, jitter] steps
    shift: int = 0  # float epochs: each image moves by a uniform integer in [-shift, shift] pixels per axis
    flip: bool = False  # float epochs: each image is mirrored left-right with probability 1/2
    weight_decay: float = 0.0  # AdamW decoupled weight decay (0: plain Adam)
    val_size: int | None = None  # held out of the training set for per-epoch curves; None: min(5000, 10 %)
    train_limit: int | None = None
    test_limit: int | None = None
    qat_limit: int | None = None  # QAT epochs use only the first N training samples (slow layers: conv)
    threads: int = 1
    t_in_max: int = 31
    time_bits: int = 8
    weight_bits: int = 8
    threshold_bits: int = 16
    resume: bool = False
    force: bool = False  # replace a run already in ``out`` (without it, or resume, such a folder is refused)
    stop_after: int | None = None  # stop after this many epochs in total (a later --resume continues)
    progress: bool = True
    plots: bool = True
    command: list[str] = field(default_factory=lambda: list(sys.argv))


def loss_fn(out_times: torch.Tensor, labels: torch.Tensor, tau: float, late_after: float | None = None,
            late_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy of softmax(-t / tau) over output spike times (B, classes); silent = window + 1.

    With ``late_after`` (training: ``t_end - 20``), a correct-class output firing after that step adds
    ``late_weight * (t - late_after) / tau``: cross-entropy only sees time differences, so without it all
    outputs can drift together past ``t_end`` (fine for the loss, silent for the decision)."""
    flat = out_times.reshape(len(out_times), -1)
    loss = F.cross_entropy(-flat / tau, labels)
    if late_after is not None and late_weight:
        t_label = flat.gather(1, labels[:, None])[:, 0]
        loss = loss + late_weight * torch.relu(t_label - late_after).mean() / tau
    return loss


def live_penalty(net: SpikingNet, t_in: torch.Tensor, times: list[torch.Tensor]) -> torch.Tensor:
    """Dead-neuron regulariser: for every neuron that is silent within ``t_end`` on the whole batch, how far
    its largest potential at ``t_end`` (over the batch) stays below threshold, ``relu(1 - max_b V_j(t_end) /
    theta_j)``, averaged over the layer's neurons and summed over weight layers (the output layer included:
    an output that never fires within ``t_end`` loses its class).

    A neuron that never fires gets no STDBP gradient at all (its spike time does not depend on anything), so
    once the loss has pushed it past ``t_end`` on every sample it stays dead; this term is the only gradient
    it sees and lifts its weights on the inputs of the sample closest to firing until it fires again. Live
    neurons contribute nothing, so the term vanishes once every neuron fires on some sample of the batch."""
    total = t_in.new_zeros(())
    t = t_in.reshape(len(t_in), *net.input_shape)
    for n, spec in enumerate(net.specs):
        if spec.kind != "maxpool2d":
            silent = (times[n] > net.t_end).reshape(len(t), -1).all(dim=0)
            if bool(silent.any()):
                w, theta = net.layer_params(n, quantised=False)
                ramp = (net.t_end - t.to(w.dtype)).clamp(min=0)  # silent inputs (t_end + 1) add nothing
                if spec.kind == "dense":
                    v = ramp.reshape(len(t), -1) @ w
                else:
                    v = F.conv2d(ramp.reshape(len(t), *spec.in_shape), w, stride=spec.stride, padding=spec.padding)
                v = v.reshape(len(t), -1).amax(dim=0)
                th = theta.repeat_interleave(v.numel() // theta.numel())  # conv: one threshold per channel
                total = total + (torch.relu(1 - v / th) * silent).sum() / v.numel()
        t = times[n]
    return total


def augment(x: torch.Tensor, t_end: int, t_in_max: int, drop: float, jitter: int,
            gen: torch.Generator, shift: int = 0, shape: tuple = (), flip: bool = False) -> torch.Tensor:
    """Input-spike dropout, integer time jitter, image translation and mirroring (float epochs only); silent
    inputs stay silent. ``shift`` moves each sample's ``shape`` (C, H, W) image by its own uniform integer
    offset in ``[-shift, shift]`` pixels along each axis; pixels moved in from outside are silent. ``flip``
    mirrors each image left-right (all channels) with probability 1/2."""
    if shift:
        b, (c, h, w) = len(x), shape
        img = F.pad(x.reshape(b, c, h, w), (shift, shift, shift, shift), value=t_end + 1.0)
        dy, dx = torch.randint(0, 2 * shift + 1, (2, b, 1), generator=gen)
        rows, cols = dy + torch.arange(h), dx + torch.arange(w)  # (b, h), (b, w) into the padded image
        x = img[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None],
                rows[:, None, :, None], cols[:, None, None, :]].reshape(x.shape)
    if flip:
        img = x.reshape(len(x), *shape)
        mirror = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(mirror[:, None, None, None], img.flip(-1), img).reshape(x.shape)
    if drop:
        x = torch.where(torch.rand(x.shape, generator=gen) < drop, torch.full_like(x, t_end + 1.0), x)
    if jitter:
        moved = (x + torch.randint(-jitter, jitter + 1, x.shape, generator=gen)).clamp(0, t_in_max)
        x = torch.where(x <= t_end, moved.to(x.dtype), x)
    return x


def predict(out_times: torch.Tensor, t_end: int) -> torch.Tensor:
    """Earliest output spike, ties to the lowest index, all silent -> -1 (docs/spec.md section 6)."""
    flat = out_times.reshape(len(out_times), -1)
    pred = flat.argmin(dim=1)  # first index among equal minima
    return torch.where(flat.min(dim=1).values > t_end, torch.full_like(pred, -1), pred)


@torch.no_grad()
def evaluate_float(net: SpikingNet, t_in: torch.Tensor, labels: torch.Tensor, batch: int = 500,
                   quantised: bool = False) -> dict:
    """Accuracy, per-layer dead-neuron ratio (silent on every sample) and mean spike time (fired only)."""
    correct, fired_any, time_sum, fired_n = 0, None, None, None
    for s in range(0, len(t_in), batch):
        x = t_in[s:s + batch]
        times = net(x.double() if quantised else x, quantised=quantised)
        out = times[-1]
        correct += int((predict(out, net.t_end) == labels[s:s + batch]).sum())
        fired = [(t.reshape(len(x), -1) <= net.t_end) for t in times]
        if fired_any is None:
            fired_any = [f.any(0) for f in fired]
            time_sum = [0.0] * len(times)
            fired_n = [0] * len(times)
        else:
            fired_any = [a | f.any(0) for a, f in zip(fired_any, fired, strict=True)]
        for n, (t, f) in enumerate(zip(times, fired, strict=True)):
            time_sum[n] += float(t.reshape(len(x), -1)[f].sum())
            fired_n[n] += int(f.sum())
    return {
        "accuracy": correct / len(t_in),
        "dead_ratio": [float(1 - a.float().mean()) for a in fired_any],
        "mean_spike_time": [ts / n if n else None for ts, n in zip(time_sum, fired_n, strict=True)],
    }


def golden_eval(net: model.Network, pixels: np.ndarray, labels: np.ndarray, batch: int = 1000,
                progress: bool = False):
    """Fixed-point accuracy by the golden model; returns (accuracy, model.Result over all samples)."""
    from tqdm import tqdm

    inputs = model.encode(pixels.reshape(len(pixels), -1), net.encoding, net.time_bits)
    parts = [model.run(net, inputs[s:s + batch])
             for s in tqdm(range(0, len(inputs), batch), desc="golden", disable=not progress, leave=False)]
    times = tuple(np.concatenate([p.times[n] for p in parts]) for n in range(len(net.layers)))
    result = model.Result(times=times, prediction=np.concatenate([p.prediction for p in parts]))
    return float((result.prediction == labels).mean()), result


def _save_checkpoint(path: Path, net: SpikingNet, opt, epoch: int, history: list, cfg: TrainConfig) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"state": net.state_dict(), "optim": opt.state_dict(), "epoch": epoch,
                "history": json.dumps(history), "config": json.dumps(_cfg_key(cfg))}, tmp)
    os.replace(tmp, path)


def _cfg_key(cfg: TrainConfig) -> dict:
    """The settings a checkpoint must match to be resumed (everything that changes the trajectory)."""
    d = asdict(cfg)
    for k in ("out", "resume", "force", "progress", "plots", "command", "threads", "epochs", "qat_epochs",
              "stop_after"):
        d.pop(k)
    if cfg.schedule == "cosine":  # the cosine schedule spans the float epochs: their number is part of it
        d["epochs"] = cfg.epochs
    return d


#: Files of a run in its output folder (the plots are the names training/plots.py writes).
RUN_FILES = (NETWORK, CHECKPOINT, REPORT, "curves.png", "spike_hist.png", "raster.png", "confusion.png")


def check_out(out: Path, cfg: TrainConfig) -> list[str]:
    """The output-folder check, before any work: ``out`` must be a folder or not exist; if it holds a run
    (any of :data:`RUN_FILES`) it is refused unless ``cfg.resume`` (which needs its checkpoint) or ``cfg.force``.
    Returns the run files found."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out: {out} is a file, not a folder")
    found = [name for name in RUN_FILES if (out / name).exists()] if out.is_dir() else []
    if not found or cfg.force:
        return found
    if not cfg.resume:
        raise TrainError(f"--out: {out} already holds a run ({', '.join(found)}); pass --resume to continue it, "
                         "--force to replace it, or choose another --out")
    if CHECKPOINT not in found:
        raise TrainError(f"--resume: {out} holds {', '.join(found)} but no {CHECKPOINT} to continue from; pass "
                         "--force to replace the run")
    return found


def _first_line(e: BaseException) -> str:
    """The gist of a library exception for a one-line message: its first sentence."""
    if isinstance(e, KeyError):
        return f"no entry {e}"
    text = str(e).strip()
    return text.splitlines()[0].split(". ")[0][:200] if text else type(e).__name__


def _float_lr(cfg: TrainConfig, epoch: int, batch: int, batches: int) -> float:
    if cfg.schedule == "exp":
        return cfg.lr * cfg.lr_decay ** epoch
    progress = (epoch * batches + batch) / max(1, cfg.epochs * batches)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    return world, rank


def build_net(cfg: TrainConfig, input_shape) -> SpikingNet:
    return SpikingNet(cfg.arch, input_shape=input_shape, time_bits=cfg.time_bits, weight_bits=cfg.weight_bits,
                      threshold_bits=cfg.threshold_bits, encoding=model.Encoding(t_in_max=cfg.t_in_max),
                      seed=cfg.seed)


def train(cfg: TrainConfig) -> dict:
    """Run the whole job; returns the report (also written to ``cfg.out/report.json`` on rank 0)."""
    from tqdm import tqdm

    start = time.perf_counter()
    torch.set_num_threads(max(1, cfg.threads))
    world, rank = _dist()
    out = Path(cfg.out)
    old_run = check_out(out, cfg)  # before any work: a finished run is never overwritten by accident
    tr = load_dataset(cfg.dataset, "train")
    te = load_dataset(cfg.dataset, "test")
    tr_px, tr_y = tr.images, tr.labels
    if cfg.train_limit:
        tr_px, tr_y = tr_px[:cfg.train_limit], tr_y[:cfg.train_limit]
    te_px, te_y = te.images, te.labels
    if cfg.test_limit:
        te_px, te_y = te_px[:cfg.test_limit], te_y[:cfg.test_limit]
    # Validation: a fixed part of the training set (the same for every seed), never trained on; per-epoch
    # curves use it, the test set is touched once, at the end.
    n_val = min(5000, len(tr_px) // 10) if cfg.val_size is None else cfg.val_size
    if not 0 <= n_val < len(tr_px):
        raise TrainError(f"--val-size: must lie in 0..{len(tr_px) - 1} (the training set has {len(tr_px)} samples), "
                         f"got {n_val}")
    split = np.random.default_rng(20221947).permutation(len(tr_px))
    va_px, va_y = tr_px[split[len(split) - n_val:]], tr_y[split[len(split) - n_val:]]
    tr_px, tr_y = tr_px[np.sort(split[:len(split) - n_val])], tr_y[np.sort(split[:len(split) - n_val])]

    net = build_net(cfg, tr.shape)
    if math.prod(net.input_shape) != math.prod(tr.shape) or (len(net.input_shape) == 3
                                                               and tuple(net.input_shape) != tuple(tr.shape)):
        raise TrainError(f"--arch: input {'x'.join(map(str, net.input_shape))} does not match the dataset's "
                       f"images {'x'.join(map(str, tr.shape))}")
    n_out = math.prod(net.specs[-1].out_shape)
    if max(tr_y.max(), te_y.max()) >= n_out:
        raise TrainError(f"--arch: the output layer has {n_out} neurons but the labels go up to "
                       f"{int(max(tr_y.max(), te_y.max()))}")
    created = rank == 0 and not out.exists()  # a run that diverges removes the folder it made
    if rank == 0:  # only after the inputs are known to be good: a failed start leaves nothing behind
        out.mkdir(parents=True, exist_ok=True)
        for name in old_run if cfg.force else ():  # --force: no file of the old run survives to mix in
            (out / name).unlink(missing_ok=True)
    x_tr, y_tr = net.encode(tr_px), torch.from_numpy(tr_y)
    x_te, y_te = net.encode(te_px), torch.from_numpy(te_y)
    x_va, y_va = net.encode(va_px), torch.from_numpy(va_y)
    net.calibrate(x_tr[:512])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict] = []
    first_epoch = 0
    ckpt = out / CHECKPOINT
    if cfg.resume and ckpt.exists():
        # A truncated, foreign or hostile file is a user error, not a crash (weights_only refuses pickled code).
        try:
            with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
                warnings.simplefilter("ignore")
                state = torch.load(ckpt, weights_only=True)
            saved_cfg = json.loads(state["config"])
        except pickle.UnpicklingError:
            raise TrainError(f"--resume: {ckpt} holds pickled Python objects, not only tensors and numbers; "
                             "refused (loading it could run code): delete it or pass --force") from None
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError, EOFError, OSError) as e:
            raise TrainError(f"--resume: {ckpt} is not a readable checkpoint ({_first_line(e)}); delete it "
                             "or pass --force to start over") from None
        if saved_cfg != _cfg_key(cfg):
            raise TrainError(f"--resume: {ckpt} was written with different settings; use another --out")
        try:
            net.load_state_dict(state["state"])
            opt.load_state_dict(state["optim"])
            first_epoch = int(state["epoch"])
            history = json.loads(state["history"])
            if not (0 <= first_epoch <= cfg.epochs + cfg.qat_epochs and isinstance(history, list)):
                raise ValueError(f"epoch {first_epoch} outside 0..{cfg.epochs + cfg.qat_epochs}")
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            raise TrainError(f"--resume: {ckpt} does not match this network ({_first_line(e)}); delete it "
                             "or pass --force to start over") from None
    ddp = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net

    total = cfg.epochs + cfg.qat_epochs
    last = total if cfg.stop_after is None else min(total, cfg.stop_after)
    float_batches = len(x_tr) // cfg.batch if len(x_tr) >= cfg.batch else 1
    for epoch in range(first_epoch, last):
        quantised = epoch >= cfg.epochs
        t0 = time.perf_counter()
        n_train = min(len(x_tr), cfg.qat_limit) if quantised and cfg.qat_limit else len(x_tr)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n_train)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        n_batches = len(order) // cfg.batch if len(order) >= cfg.batch else 1
        loss_sum, correct, seen, live_sum = 0.0, 0, 0, 0.0
        bar = tqdm(range(n_batches), desc=f"epoch {epoch + 1}/{total}{' qat' if quantised else ''}",
                   disable=not cfg.progress or rank != 0, leave=False)
        for b in bar:
            lr = cfg.qat_lr if quantised else _float_lr(cfg, epoch, b, float_batches)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = order[b * cfg.batch:(b + 1) * cfg.batch][rank::world]
            x, y = x_tr[idx], y_tr[idx]
            if not quantised:
                x = augment(x, net.t_end, cfg.t_in_max, cfg.input_drop, cfg.jitter, gen, cfg.shift, tr.shape,
                            cfg.flip)
            times = ddp(x.double() if quantised else x, quantised=quantised, out_window=cfg.out_window)
            loss = loss_fn(times[-1].float(), y, cfg.tau, net.t_end - 20.0, cfg.late_weight)
            if cfg.live_weight and not quantised:
                live = live_penalty(net, x, times)
                live_sum += float(live.detach()) * len(idx)
                loss = loss + cfg.live_weight * live
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                _drop_run(out, created)
                raise TrainError(_diverged(epoch, b, quantised, f"the loss is {loss_value}"))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                _drop_run(out, created)
                raise TrainError(_diverged(epoch, b, quantised, "a weight or threshold became infinite or NaN"))
            loss_sum += loss_value * len(idx)
            correct += int((predict(times[-1], net.t_end) == y).sum())
            seen += len(idx)
            if b % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        epoch_time = time.perf_counter() - t0
        if rank == 0:
            ev = evaluate_float(net, x_va, y_va, quantised=quantised) if len(x_va) else None
            rec = {"epoch": epoch + 1, "phase": "qat" if quantised else "float", "lr": lr,
                   "loss": loss_sum / max(seen, 1), "live_penalty": live_sum / max(seen, 1),
                   "train_accuracy": correct / max(seen, 1),
                   "val_accuracy": ev["accuracy"] if ev else None, "dead_ratio": ev["dead_ratio"] if ev else None,
                   "mean_spike_time": ev["mean_spike_time"] if ev else None, "epoch_time_s": epoch_time,
                   "train_samples": n_train, "val_samples": len(x_va)}
            history.append(rec)
            if cfg.progress:
                val = f"val {rec['val_accuracy']:.4f} dead {[round(d, 3) for d in rec['dead_ratio']]}" if ev else ""
                print(f"epoch {epoch + 1}/{total} {rec['phase']}: loss {rec['loss']:.4f} train "
                      f"{rec['train_accuracy']:.4f} {val} ({epoch_time:.0f} s)", file=sys.stderr)
            _save_checkpoint(ckpt, net, opt, epoch + 1, history, cfg)
        if world > 1:
            torch.distributed.barrier()

    if rank != 0 or last < total:
        _finish(world)
        return {"stopped_after": last} if rank == 0 else {}
    float_eval = evaluate_float(net, x_te, y_te)
    integer_net = to_network(net)
    fixed_acc, result = golden_eval(integer_net, te_px, te_y, progress=cfg.progress)
    report = {
        "dataset": cfg.dataset, "arch": cfg.arch, "network": integer_net.describe(),
        "epochs": cfg.epochs, "qat_epochs": cfg.qat_epochs, "seed": cfg.seed,
        "train_samples": int(len(x_tr)), "val_samples": int(len(x_va)), "test_samples": int(len(x_te)),
        "float_test_accuracy": float_eval["accuracy"],
        "fixed_point_test_accuracy": fixed_acc,
        "fixed_point_judge": "model.run (golden model) on the exported network file",
        "fixed_point_no_decision": int((result.prediction == model.NO_DECISION).sum()),
        "float_dead_ratio": float_eval["dead_ratio"],
        "float_mean_spike_time": float_eval["mean_spike_time"],
        "fixed_point_dead_ratio": [float((t.reshape(len(t), -1) == integer_net.no_spike).all(0).mean())
                                   for t in result.times],
        "history": history,
        "config": asdict(cfg),
        "command": " ".join(cfg.command),
        "wall_time_s": time.perf_counter() - start,
        "torch_threads": torch.get_num_threads(),
        "world_size": world,
    }
    model.save(integer_net, out / NETWORK, metadata={
        "trainer": "training/ (STDBP + QAT)", "arch": cfg.arch, "dataset": cfg.dataset, "seed": cfg.seed,
        "epochs": cfg.epochs, "qat_epochs": cfg.qat_epochs, "float_test_accuracy": report["float_test_accuracy"],
        "fixed_point_test_accuracy": fixed_acc, "command": report["command"]})
    if cfg.plots:
        from .plots import write_plots
        inputs = model.encode(te_px[:3].reshape(min(3, len(te_px)), -1), integer_net.encoding, integer_net.time_bits)
        report["plots"] = write_plots(out, history, result, te_y, integer_net, inputs)
    report["wall_time_s"] = time.perf_counter() - start
    tmp = out / f".{REPORT}.tmp"
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, out / REPORT)
    _finish(world)
    return report


def _finish(world: int) -> None:
    """Leave the process group together (rank 0 evaluates and writes meanwhile); a peer that tears gloo
    down while the other is still inside a collective can abort the process."""
    if world > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
