"""The host runner of the mesh: configure, run images with the run-ahead window, detect completion, exit
early, decode and check what came back — once, for every transport.

A transport is a *port*: one clock cycle of the mesh's host port at a time, with three methods

* ``async cycle(word, ready) -> (sent, received)``: offer ``word`` on ``host_i`` (None: valid low) and
  ``ready`` on ``host_o`` for one cycle; ``sent`` says whether ``word`` was taken, ``received`` is the word
  taken from ``host_o`` (None if none);
* ``async abort()``: raise the mesh's ``abort`` for one cycle (early exit), nothing offered or taken;
* ``release()``: drop ``host_i.valid`` without advancing time.

verif/cocotb_mesh.py drives it under cocotb, :mod:`host.pysim` in the Amaranth simulator. The image logic
itself (:class:`ImageRun`) never sees the port: it says which word may go next and takes the words that come
back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from rtl import layouts as L
from rtl.noc_layouts import FlitKind

from .codec import HostFlit, ProtocolError, StreamCheck
from .plan import MeshPlan

__all__ = ["DeadlockError", "ImageResult", "decode_image", "DecisionWatch", "ImageRun", "SendAll", "transfer",
           "HOST_IN_COUNTS", "result_arrays"]

#: Per-cycle categories of the host input port that :func:`transfer` counts (``counts``).
HOST_IN_COUNTS = ("host_in_sent", "host_in_blocked", "host_in_gated", "host_in_idle")


class DeadlockError(RuntimeError):
    """A transfer made no end within its cycle budget."""


@dataclass(frozen=True)
class ImageResult:
    """What the host saw for one image. ``times[n]``: spike times of network layer n (flattened, NO_SPIKE = silent;
    None for a layer the host does not see, or after a protocol error); ``horizons[n][j]``: the last step
    neuron j's PE closed before the flits stopped (a silent neuron is only known to spike later);
    ``decided``: the early-exit decision step (None: ran to completion); ``error``: the protocol error, if
    any (then times and horizons are None)."""

    times: tuple[np.ndarray | None, ...]
    horizons: tuple[np.ndarray | None, ...]
    cycles: int
    decided: int | None
    flits_in: int
    flits_out: int
    error: str | None = None


def decode_image(plan: MeshPlan, flits, *, complete: bool = True
                 ) -> tuple[tuple[np.ndarray | None, ...], tuple[np.ndarray | None, ...]]:
    """(times, horizons) per network layer, of every monitored one (None: not monitored, or a conv2d layer whose
    maxpool2d runs in its PEs), from the host flits of one image (words or
    :class:`HostFlit`), which may stop early (early exit). The event protocol is checked per source node
    (:class:`host.codec.StreamCheck`) and each node sends one DONE; ``complete`` also requires every DONE and
    every reporting PE's final STEP_END(t_end). Raises ProtocolError."""
    fc = plan.codec
    times = [np.full(plan.outputs(n), plan.no_spike, dtype=np.int64) for n in range(plan.n_layers)]
    by_node = {s.node: s for s in plan.slices}
    ranges = {s.node: plan.out_range(s) for s in plan.slices}
    checks = {s.node: StreamCheck(times[s.layer][lo:hi], lo=lo, no_spike=plan.no_spike, name=f"node {s.node}")
              for s in plan.slices for lo, hi in [ranges[s.node]]}
    done = set()
    for k, f in enumerate(flits):
        f = f if isinstance(f, HostFlit) else fc.decode(f)
        if f.src not in by_node:
            raise ProtocolError(f"host flit {k}: from node {f.src}, which holds no PE of this plan")
        if f.kind == FlitKind.DONE:
            if f.src in done:
                raise ProtocolError(f"host flit {k}: second DONE from node {f.src}")
            done.add(f.src)
        elif f.kind == FlitKind.EVENT:
            checks[f.src].event(f.event, f"host flit {k}")
        else:
            raise ProtocolError(f"host flit {k}: unexpected flit kind {f.kind.name} from node {f.src}")
    if complete:
        if len(done) != len(plan.slices):
            raise ProtocolError(f"{len(plan.slices) - len(done)} of {len(plan.slices)} nodes sent no DONE")
        for s in plan.slices:
            if s.reports:
                checks[s.node].finish(plan.t_end)
    horizons = [np.full(plan.outputs(n), -1, dtype=np.int64) for n in range(plan.n_layers)]
    for s in plan.slices:
        lo, hi = ranges[s.node]
        horizons[s.layer][lo:hi] = checks[s.node].step
    shown = [all(s.reports for s in plan.layer_slices(n)) for n in range(plan.n_layers)]
    return (plan.by_net_layer(t if ok else None for t, ok in zip(times, shown, strict=True)),
            plan.by_net_layer(h if ok else None for h, ok in zip(horizons, shown, strict=True)))


class DecisionWatch:
    """Early exit (docs/noc.md): follows the host flits of one image and says when the prediction is
    decided — some output neuron spiked at step t and every output-layer PE has closed step t (STEP_END(t)),
    so every output spike at t is known and the earliest spike, lowest index rule (docs/spec.md) can no
    longer change. ``step`` is then t; it stays None while undecided (and for an image whose outputs are
    all silent, which ends normally)."""

    def __init__(self, plan: MeshPlan):
        self._last = {s.node: -1 for s in plan.layer_slices(plan.n_layers - 1)}
        self.first: int | None = None
        self.step: int | None = None

    def feed(self, f: HostFlit) -> bool:
        """Take one decoded host flit; True once the prediction is decided."""
        if self.step is None and f.src in self._last and f.kind == FlitKind.EVENT:
            if f.event.kind == L.EventKind.SPIKE:
                self.first = f.event.time if self.first is None else min(self.first, f.event.time)
            elif f.event.kind == L.EventKind.STEP_END:
                self._last[f.src] = f.event.time
            if self.first is not None and min(self._last.values()) >= self.first:
                self.step = self.first
        return self.step is not None


class SendAll:
    """A transfer that only sends ``words`` (configuration): finished once every word is taken."""

    def __init__(self, words):
        self.words, self.k = list(words), 0
        self.received: list[int] = []

    def offer(self) -> int | None:
        return self.words[self.k] if self.k < len(self.words) else None

    @property
    def gated(self) -> bool:
        return False

    def sent(self) -> None:
        self.k += 1

    def receive(self, word: int) -> None:
        self.received.append(word)

    @property
    def finished(self) -> bool:
        return self.k == len(self.words)

    @property
    def abort(self) -> bool:
        return False


class ImageRun:
    """The host side of one image on a mesh plan, independent of the transport.

    The image's flits (:meth:`MeshPlan.image_steps`) go out in order; with the plan's run-ahead ``window`` a
    flit of step s waits until every PE has sent STEP_END(s - window) to the host (docs/noc.md). The image is
    finished once every flit is sent and every node's DONE and every reporting PE's STEP_END(t_end) came back
    (:attr:`MeshPlan.completions`), or, with ``early_exit``, as soon as the prediction is decided
    (:class:`DecisionWatch`; :attr:`abort` is then set and the transport raises the mesh's abort)."""

    def __init__(self, plan: MeshPlan, input_times, *, early_exit: bool = False):
        self.plan = plan
        self._codec = plan.codec
        groups = plan.image_steps(input_times)
        self.words = [w for _, g in groups for w in g]
        self._steps = [s for s, g in groups for _ in g]
        self.k = 0
        self.flits: list[HostFlit] = []
        self._finals = 0
        self._last_end = {s.node: -1 for s in plan.slices}
        self._allowed = None if plan.window is None else plan.window - 1
        self.watch = DecisionWatch(plan) if early_exit else None

    def offer(self) -> int | None:
        """The next word to send, or None (everything sent, or the window holds it back)."""
        return None if self.k == len(self.words) or self.gated else self.words[self.k]

    @property
    def gated(self) -> bool:
        """The next word waits for the run-ahead window."""
        return self._allowed is not None and self.k < len(self.words) and self._steps[self.k] > self._allowed

    def sent(self) -> None:
        self.k += 1

    def receive(self, word: int) -> None:
        f = self._codec.decode(word)
        self.flits.append(f)
        if f.kind == FlitKind.DONE:
            self._finals += 1
        elif f.kind == FlitKind.EVENT and f.event.kind == L.EventKind.STEP_END:
            self._finals += f.event.time == self.plan.t_end
            if f.src in self._last_end:
                self._last_end[f.src] = f.event.time
                if self._allowed is not None:
                    self._allowed = min(self._last_end.values()) + self.plan.window
        if self.watch is not None:
            self.watch.feed(f)

    @property
    def abort(self) -> bool:
        return self.watch is not None and self.watch.step is not None

    @property
    def finished(self) -> bool:
        return self.abort or (self.k == len(self.words) and self._finals >= self.plan.completions)

    def result(self, cycles: int) -> ImageResult:
        decided = self.watch.step if self.watch is not None else None
        try:
            times, horizons = decode_image(self.plan, self.flits, complete=decided is None)
            error = None
        except ProtocolError as e:
            times = horizons = (None,) * self.plan.n_net_layers
            error = str(e)
        return ImageResult(times=times, horizons=horizons, cycles=cycles, decided=decided, flits_in=self.k,
                           flits_out=len(self.flits), error=error)


async def transfer(port, job, *, rng: random.Random | None = None, idle: float = 0.0, stall: float = 0.0,
                   max_cycles: int = 5_000_000, abort_after: int | None = None, counts: dict | None = None) -> int:
    """Run ``job`` (:class:`ImageRun` or :class:`SendAll`) over ``port`` until it is finished, or for
    ``abort_after`` cycles; returns the cycles taken. ``idle``: probability that the host leaves a cycle idle
    before offering a word; ``stall``: probability of host backpressure on ``host_o`` per cycle (both drawn
    from ``rng``). ``counts``: add the cycles of each :data:`HOST_IN_COUNTS` category and ``host_out``
    handshakes. DeadlockError after ``max_cycles``."""
    rng = rng or random.Random(0)
    cycles, word = 0, None
    while not job.finished:
        if word is None:
            w = job.offer()
            if w is not None and (not idle or rng.random() >= idle):
                word = w
        ready = not (stall and rng.random() < stall)
        sent, got = await port.cycle(word, ready)
        cycles += 1
        if counts is not None:
            key = ("host_in_sent" if sent else "host_in_blocked") if word is not None else (
                "host_in_gated" if job.gated else "host_in_idle")
            counts[key] = counts.get(key, 0) + 1
            counts["host_out"] = counts.get("host_out", 0) + (got is not None)
        if sent:
            job.sent()
            word = None
        if got is not None:
            job.receive(got)
            if job.abort:
                await port.abort()
                cycles += 1
                break
        if abort_after is not None and cycles >= abort_after:
            break
        if cycles >= max_cycles:
            recent = [hex(w) for w in getattr(job, "words", [])[max(0, job.k - 4):job.k]]
            raise DeadlockError(f"no end after {max_cycles} cycles: {job.k} flits sent (last {recent}), "
                                f"{len(job.flits) if hasattr(job, 'flits') else len(job.received)} received")
    port.release()
    return cycles


def result_arrays(plan: MeshPlan, results: list[ImageResult], cfg_cycles: int) -> dict:
    """The result arrays of a chunk of images, whatever the transport (``layer<n>``, ``horizon<n>`` per
    network layer the host sees, ``cycles``, ``cfg_cycles``, ``flits_in``, ``flits_out``, ``decided``: -1 when
    not decided early, ``errors``) from their ImageResults."""
    n = len(results)
    sizes = plan.by_net_layer(plan.outputs(k) for k in range(plan.n_layers))
    times = {k: np.full((n, size), plan.no_spike, dtype=np.int64) for k, size in enumerate(sizes) if size}
    horizons = {k: np.full((n, size), -1, dtype=np.int64) for k, size in enumerate(sizes) if size}
    errors = []
    for b, r in enumerate(results):
        if r.error is not None:
            errors.append(f"image {b}: {r.error}")
            continue
        for k, layer in enumerate(r.times):
            if layer is not None:
                times[k][b], horizons[k][b] = layer, r.horizons[k]
    out = {f"layer{k}": t for k, t in times.items()}
    out.update({f"horizon{k}": h for k, h in horizons.items()})
    out.update(cycles=np.array([r.cycles for r in results], dtype=np.int64), cfg_cycles=np.int64(cfg_cycles),
               flits_in=np.array([r.flits_in for r in results], dtype=np.int64),
               flits_out=np.array([r.flits_out for r in results], dtype=np.int64),
               decided=np.array([-1 if r.decided is None else r.decided for r in results], dtype=np.int64),
               errors=np.array(errors if errors else [""]))
    return out
