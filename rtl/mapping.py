"""Mapping: from a network file to the mesh — placement, destination tables, configuration and input flits.

Each dense (or conv2d, as its equivalent dense layer) layer is cut into ceil(n / ``neurons``) slices of equal
size (rounded up to whole lanes; the last may be smaller); each slice runs on one PE. Slices take nodes in
row-major order, layer after layer. A PE of layer ``l`` sends its output events to every PE of layer
``l + 1`` (and to the host when ``monitor`` is on or ``l`` is the output layer). Its ``SOURCES`` register is
the number of PEs of layer ``l - 1`` (1 for the first layer: the host). docs/noc.md walks through an example.

The mapping is pure Python (numpy + layouts); flits are integers packed with ``verif.driver.pack``, the
same packing the PE testbenches use, so one encoding serves the Amaranth simulator, cocotb and a board.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import model
from model.network import NetworkError

from . import layouts as L
from .config import PEConfig
from .mesh import done_layout, ni_value_bits, noc_config
from .noc_layouts import FlitKind, NiReg, NocConfig, flit_layout, ni_cfg_layout

__all__ = ["MappingError", "Placement", "Mapping", "map_network", "ImageResult", "DecisionWatch"]


class MappingError(NetworkError):
    """The network does not fit the mesh or the PE: one line with the numbers needed and available."""


@dataclass(frozen=True)
class Placement:
    """One PE's share: neurons ``lo .. hi - 1`` of layer ``layer`` at node ``node``."""

    layer: int
    node: tuple[int, int]
    lo: int
    hi: int
    sources: int
    dests: tuple[tuple[int, int, int], ...]  # (x, y, host)


def _pack(layout, **fields) -> int:
    from verif.driver import pack

    return pack(layout, **fields)


@dataclass(frozen=True)
class ImageResult:
    """What the host saw for one image: spike times of every layer (flattened, NO_SPIKE = silent)."""

    times: tuple[np.ndarray, ...]
    cycles: int


@dataclass(frozen=True)
class Mapping:
    net: model.Network
    pe: PEConfig
    noc: NocConfig
    placements: tuple[Placement, ...]
    weights: tuple[np.ndarray, ...]      # per layer, dense (in, out)
    thresholds: tuple[np.ndarray, ...]   # per layer, (out,)
    monitor: bool
    #: The host sends the input events of step s only after every PE has sent STEP_END(s - window) to the
    #: host (needs ``monitor``); this bounds how far one source runs ahead of another, which bounds the
    #: PEs' defer FIFOs (docs/noc.md, "Run-ahead window"). None: no window.
    window: int | None = None

    # ---- structure ----
    def layer_pes(self, layer: int) -> list[Placement]:
        return [p for p in self.placements if p.layer == layer]

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def _flit(self, *, x, y, kind, payload, host=0, src=(0, 0)) -> int:
        return _pack(flit_layout(self.noc), x=x, y=y, host=host, src_x=src[0], src_y=src[1], kind=kind,
                     payload=payload)

    # ---- host -> mesh ----
    def config_flits(self) -> list[int]:
        """NI registers and destination tables, then every PE's registers, thresholds and weights."""
        from verif.driver import layer_cfg_words

        nil = ni_cfg_layout(self.noc, ni_value_bits(self.pe))
        flits = []
        for p in self.placements:
            x, y = p.node
            words = [_pack(nil, reg=NiReg.SOURCES, value=p.sources),
                     _pack(nil, reg=NiReg.T_END, value=self.net.t_end)]
            words += [_pack(nil, reg=NiReg.DEST, index=k, x=dx, y=dy, host=dh) for k, (dx, dy, dh) in
                      enumerate(p.dests)]
            flits += [self._flit(x=x, y=y, kind=FlitKind.NI_CFG, payload=w) for w in words]
            w = self.weights[p.layer][:, p.lo:p.hi]
            th = self.thresholds[p.layer][p.lo:p.hi]
            flits += [self._flit(x=x, y=y, kind=FlitKind.PE_CFG, payload=c) for c in
                      layer_cfg_words(self.pe, w, th, neuron_base=p.lo, sources=p.sources, t_end=self.net.t_end)]
        return flits

    def image_flits(self, input_times: np.ndarray) -> list[int]:
        """START to every PE, then per step t the input SPIKEs of step t and STEP_END(t) to each first-layer
        PE (interleaved event by event, so that the first-layer PEs work in parallel)."""
        return [w for _, group in self.image_steps(input_times) for w in group]

    def image_steps(self, input_times: np.ndarray) -> list[tuple[int, list[int]]]:
        """:meth:`image_flits` grouped by step: (-1, STARTs), then (t, flits of step t) for t = 0..t_end."""
        ev = L.event_layout(self.pe)
        times = np.asarray(input_times, dtype=np.int64).reshape(-1)
        t_end = self.net.t_end
        start = _pack(ev, kind=L.EventKind.START)
        # STARTs go to the last layer first: a PE emits STEP_END(0) as soon as its START is processed, and that
        # marker must not reach a next-layer PE before the START of that PE does (the START would then reset
        # the marker count and the marker would be lost: a deadlock seen on a 4x3 mesh under host stalls).
        # Every START enters at router (0, 0) in this order and the network is empty between images.
        order = sorted(self.placements, key=lambda p: -p.layer)
        groups = [(-1, [self._flit(x=p.node[0], y=p.node[1], kind=FlitKind.EVENT, payload=start)
                        for p in order])]
        first = self.layer_pes(0)
        order = np.argsort(times, kind="stable")
        by_t: dict[int, list[int]] = {}
        for i in order:
            if times[i] <= t_end:
                by_t.setdefault(int(times[i]), []).append(int(i))
        for t in range(t_end + 1):
            spikes = [_pack(ev, kind=L.EventKind.SPIKE, index=i, time=t) for i in by_t.get(t, [])]
            marker = _pack(ev, kind=L.EventKind.STEP_END, time=t)
            # Event by event, each to every first-layer PE in turn: the PEs then work in parallel. (PE by PE
            # blocks left all but one PE idle while the host port was blocked on the busy one's full FIFOs.)
            # Each PE still gets its events in the same order.
            flits = [self._flit(x=p.node[0], y=p.node[1], kind=FlitKind.EVENT, payload=e)
                     for e in [*spikes, marker] for p in first]
            groups.append((t, flits))
        return groups

    def step_end_of(self, word: int) -> tuple[tuple[int, int], int] | None:
        """(source node, t) if the host flit ``word`` is a STEP_END(t), else None."""
        from verif.driver import unpack

        f = unpack(flit_layout(self.noc), word)
        if f["kind"] != FlitKind.EVENT.value:
            return None
        e = unpack(L.event_layout(self.pe), f["payload"])
        if e["kind"] != L.EventKind.STEP_END.value:
            return None
        return (f["src_x"], f["src_y"]), e["time"]

    # ---- mesh -> host ----
    def decode(self, flits: list[int]) -> tuple[np.ndarray, ...]:
        """Spike times of every monitored layer from the host flits of one image; checks the event protocol
        per source PE (STEP_END(0..t_end) in order, spikes inside their step, each neuron once, one DONE per
        PE). Layers the host does not see (monitor off) come back as None."""
        return self.decode_prefix(flits, complete=True)[0]

    def decode_prefix(self, flits: list[int], *, complete: bool = False
                      ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """(times, horizons) of every monitored layer from the host flits of one image, which may stop early
        (early exit, :class:`DecisionWatch`). ``horizons[n][j]`` is the last step that neuron ``j``'s PE closed
        with STEP_END before the flits stop: its time is final if at most that step; a neuron still silent is
        known only to spike later. The protocol is checked as in :meth:`decode`; ``complete`` also requires
        every DONE and every final STEP_END."""
        from verif.driver import ProtocolError, unpack

        fl = flit_layout(self.noc)
        ev = L.event_layout(self.pe)
        by_node = {p.node: p for p in self.placements}
        seen = {p.node: -1 for p in self.placements}
        done = set()
        times = [np.full(w.shape[1], self.net.no_spike, dtype=np.int64) for w in self.weights]
        for k, word in enumerate(flits):
            f = unpack(fl, word)
            node = (f["src_x"], f["src_y"])
            if node not in by_node:
                raise ProtocolError(f"host flit {k}: from node {node}, which holds no PE of this mapping")
            p = by_node[node]
            if f["kind"] == FlitKind.DONE.value:
                if node in done:
                    raise ProtocolError(f"host flit {k}: second DONE from node {node}")
                done.add(node)
                continue
            if f["kind"] != FlitKind.EVENT.value:
                raise ProtocolError(f"host flit {k}: unexpected flit kind {f['kind']} from node {node}")
            e = unpack(ev, f["payload"])
            kind = L.EventKind(e["kind"])
            if kind == L.EventKind.STEP_END:
                if e["time"] != seen[node] + 1:
                    raise ProtocolError(f"host flit {k}: node {node} sent STEP_END({e['time']}) after "
                                        f"STEP_END({seen[node]})")
                seen[node] += 1
            elif kind == L.EventKind.SPIKE:
                j = e["index"]
                if not p.lo <= j < p.hi:
                    raise ProtocolError(f"host flit {k}: node {node} spiked neuron {j}, outside {p.lo}..{p.hi - 1}")
                if e["time"] != seen[node] + 1 or seen[node] < 0:
                    raise ProtocolError(f"host flit {k}: node {node} SPIKE at {e['time']} in step {seen[node] + 1}")
                if times[p.layer][j] != self.net.no_spike:
                    raise ProtocolError(f"host flit {k}: layer {p.layer} neuron {j} spiked twice")
                times[p.layer][j] = e["time"]
            else:
                raise ProtocolError(f"host flit {k}: node {node} sent {kind.name}")
        if complete:
            if len(done) != len(self.placements):
                raise ProtocolError(f"{len(self.placements) - len(done)} of {len(self.placements)} nodes sent "
                                    "no DONE")
            for p in self.placements:
                if self._reports(p) and seen[p.node] != self.net.t_end:
                    raise ProtocolError(f"node {p.node} ended after STEP_END({seen[p.node]}), expected "
                                        f"STEP_END({self.net.t_end})")
        horizons = [np.full(w.shape[1], -1, dtype=np.int64) for w in self.weights]
        for p in self.placements:
            horizons[p.layer][p.lo:p.hi] = seen[p.node]
        shown = [all(self._reports(p) for p in self.layer_pes(n)) for n in range(self.n_layers)]
        return (tuple(t if ok else None for t, ok in zip(times, shown, strict=True)),
                tuple(h if ok else None for h, ok in zip(horizons, shown, strict=True)))

    def decision_watch(self) -> DecisionWatch:
        """A fresh :class:`DecisionWatch` for one image."""
        return DecisionWatch(self)

    @property
    def n_reporting(self) -> int:
        """PEs whose output events reach the host."""
        return sum(self._reports(p) for p in self.placements)

    def is_last_host_flit(self, word: int) -> bool:
        """True for the flits that end an image at the host: a DONE, or a STEP_END(t_end) from a reporting
        PE. An image is over after ``len(placements) + n_reporting`` of them (every PE's input is complete
        and every reporting PE's output has arrived)."""
        from verif.driver import unpack

        f = unpack(flit_layout(self.noc), word)
        if f["kind"] == FlitKind.DONE.value:
            return True
        if f["kind"] != FlitKind.EVENT.value:
            return False
        e = unpack(L.event_layout(self.pe), f["payload"])
        return e["kind"] == L.EventKind.STEP_END.value and e["time"] == self.net.t_end

    def _reports(self, p: Placement) -> bool:
        return any(h for _, _, h in p.dests)

    def host_flits_per_image(self) -> int:
        """Upper bound of host flits per image (for buffer sizing and progress)."""
        return sum((p.hi - p.lo) + self.net.t_end + 2 for p in self.placements)

    # ---- cost ----
    def sops(self, golden_times: tuple[np.ndarray, ...], input_times: np.ndarray, until: int | None = None) -> int:
        """Synaptic operations of one image: each input spike (time <= t_end) of layer l times the number
        of neurons of layer l (every PE of the layer adds the weight row to all its neurons). ``until``: count
        only input spikes at steps <= until (the work needed to close step ``until``, early exit)."""
        last = self.net.t_end if until is None else min(until, self.net.t_end)
        ins = [np.asarray(input_times).reshape(-1)] + [np.asarray(t).reshape(-1) for t in golden_times[:-1]]
        return int(sum(int((t <= last).sum()) * w.shape[1] for t, w in zip(ins, self.weights, strict=True)))

    def describe(self) -> str:
        parts = []
        for n in range(self.n_layers):
            pes = self.layer_pes(n)
            parts.append(f"layer {n}: {self.weights[n].shape[0]}->{self.weights[n].shape[1]} on {len(pes)} PE(s)")
        return (f"{self.noc.width}x{self.noc.height} mesh, {len(self.placements)} PEs used, PE {self.pe.neurons} "
                f"neurons x {self.pe.lanes} lanes, fan-in {self.pe.fan_in}; " + "; ".join(parts))


class DecisionWatch:
    """Early exit (docs/noc.md): follows the host flits of one image and says when the prediction is
    decided — some output neuron spiked at step t and every output-layer PE has closed step t (STEP_END(t)),
    so every output spike at t is known and the earliest spike, lowest index rule (docs/spec.md) can no
    longer change. ``step`` is then t; it stays None while undecided (and for an image whose outputs are
    all silent, which ends normally)."""

    def __init__(self, mapping: Mapping):
        from verif.driver import unpack

        self._unpack, self._mp = unpack, mapping
        self._fl, self._ev = flit_layout(mapping.noc), L.event_layout(mapping.pe)
        self._last = {p.node: -1 for p in mapping.layer_pes(mapping.n_layers - 1)}
        self.first: int | None = None
        self.step: int | None = None

    def feed(self, word: int) -> bool:
        """Take one host flit; True once the prediction is decided."""
        if self.step is not None:
            return True
        f = self._unpack(self._fl, word)
        node = (f["src_x"], f["src_y"])
        if node in self._last and f["kind"] == FlitKind.EVENT.value:
            e = self._unpack(self._ev, f["payload"])
            if e["kind"] == L.EventKind.SPIKE.value:
                self.first = e["time"] if self.first is None else min(self.first, e["time"])
            elif e["kind"] == L.EventKind.STEP_END.value:
                self._last[node] = e["time"]
            if self.first is not None and min(self._last.values()) >= self.first:
                self.step = self.first
        return self.step is not None


def _share(n: int, neurons: int, lanes: int) -> int:
    """Neurons per PE of a layer of ``n`` neurons on PEs of at most ``neurons``: the layer takes
    ceil(n / neurons) PEs and splits evenly, each share rounded up to a multiple of ``lanes`` (never above
    ``neurons`` rounded to lanes)."""
    pes = -(-n // neurons)
    even = -(-n // pes)
    return min(-(-even // lanes) * lanes, max(lanes, neurons // lanes * lanes))


def dense_layers(net: model.Network) -> tuple[list[np.ndarray], list[np.ndarray]]:
    weights, thresholds = [], []
    for n, layer in enumerate(net.layers):
        if layer.kind == "dense":
            weights.append(np.asarray(layer.weight, dtype=np.int64))
            thresholds.append(np.asarray(layer.threshold, dtype=np.int64))
        elif layer.kind == "conv2d":
            weights.append(model.conv_as_dense(layer))
            thresholds.append(np.repeat(np.asarray(layer.threshold, dtype=np.int64),
                                        math.prod(layer.out_shape[1:])))
        else:
            raise MappingError(f"layers[{n}]: {layer.kind} does not run on the mesh (dense and conv2d only)")
    return weights, thresholds


def map_network(net: model.Network, width: int, height: int, *, neurons: int = 64, lanes: int = 4,
                monitor: bool = True, fifo_depth: int = 4, pe: PEConfig | None = None,
                window: int | None = None) -> Mapping:
    """Place ``net`` on a ``width`` x ``height`` mesh of PEs with ``neurons`` neurons and ``lanes`` lanes
    (or the given ``pe``). ``window``: the host's run-ahead window (docs/noc.md); None for a host that does not
    gate its input on the PEs' markers (defer FIFOs are then sized for one step of run-ahead per layer, which
    holds while no output is backpressured for long). Raises MappingError naming what is needed and what is
    available."""
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise MappingError(f"window: must be None or an integer >= 1 (step s is sent after STEP_END(s - window)), "
                           f"got {window!r}")
    weights, thresholds = dense_layers(net)
    # Even split: a layer of n neurons takes ceil(n / neurons) PEs, each with an equal share rounded up to whole
    # lanes (the busiest PE sets the pace); a PE built here is sized for the largest share of any layer.
    limit, n_lanes = (neurons, lanes) if pe is None else (pe.neurons, pe.lanes)
    shares = [_share(w.shape[1], limit, n_lanes) for w in weights]
    counts = [-(-w.shape[1] // sh) for w, sh in zip(weights, shares, strict=True)]
    if pe is None:
        # Event indices carry input rows and, on a PE's output, neuron numbers of the layer: the PE's index
        # width comes from max(fan_in, neurons), so fan_in also covers the widest layer output.
        fan_in = max(max(w.shape) for w in weights)
        per_pe = max(shares)
        max_sources = max([1, *counts[:-1]])
        # Early events of a fast source wait in the PE's defer FIFO. With the host's run-ahead window w, a
        # source of layer l - 1 is at most w + l steps ahead of a PE of layer l (docs/noc.md): its early events
        # are at most one marker per step ahead plus its neurons' spikes (each neuron spikes once per
        # inference). The slowest source is never ahead.
        ahead = (window if window is not None else 0) + len(counts) - 1
        defer = max(8, (max_sources - 1) * (ahead + per_pe) + 2)
        try:
            pe = PEConfig(neurons=per_pe, fan_in=fan_in, lanes=lanes, weight_bits=net.weight_bits,
                          time_bits=net.time_bits, threshold_bits=net.threshold_bits, defer_depth=defer,
                          max_sources=max_sources)
        except ValueError as e:
            raise MappingError(f"PE: {e}") from None
    for n, w in enumerate(weights):
        if w.shape[0] > pe.fan_in:
            raise MappingError(f"layers[{n}]: fan-in {w.shape[0]} needed, the PE has {pe.fan_in} weight rows")
        if w.shape[1] > 1 << pe.index_bits:
            raise MappingError(f"layers[{n}]: {w.shape[1]} neuron indices needed, events carry "
                               f"{pe.index_bits} index bits ({1 << pe.index_bits} values)")
    if (net.weight_bits, net.time_bits) != (pe.weight_bits, pe.time_bits) or net.threshold_bits > pe.threshold_bits:
        raise MappingError(f"PE: widths weight/time/threshold {pe.weight_bits}/{pe.time_bits}/{pe.threshold_bits} "
                           f"do not match the network's {net.weight_bits}/{net.time_bits}/{net.threshold_bits}")
    need = sum(counts)
    if need > width * height:
        per_layer = ", ".join(f"layer {n}: {w.shape[1]} neurons -> {c}" for n, (w, c) in
                              enumerate(zip(weights, counts, strict=True)))
        raise MappingError(f"--mesh {width}x{height}: the network needs {need} PEs of at most {limit} neurons "
                           f"({per_layer}), the mesh has {width * height}")
    max_dests = max(c + 1 for c in counts)
    try:
        noc = noc_config(pe, width, height, fifo_depth=fifo_depth, max_dests=max_dests)
    except ValueError as e:
        raise MappingError(f"mesh: {e}") from None
    if window is not None and not monitor:
        raise MappingError("window: the run-ahead window needs monitor=True (the host must see every PE's markers)")
    if max(counts[:-1], default=1) > pe.max_sources:
        raise MappingError(f"PE: {max(counts[:-1])} sources needed, the PE counts up to {pe.max_sources}")
    nodes = [(x, y) for y in range(height) for x in range(width)]
    placed = []
    k = 0
    layer_nodes = []
    for c in counts:
        layer_nodes.append(nodes[k:k + c])
        k += c
    for n, w in enumerate(weights):
        last = n == len(weights) - 1
        dests = [] if last else [(x, y, 0) for x, y in layer_nodes[n + 1]]
        if monitor or last:
            dests.append((0, 0, 1))
        sources = 1 if n == 0 else counts[n - 1]
        for s, node in enumerate(layer_nodes[n]):
            lo = s * shares[n]
            placed.append(Placement(layer=n, node=node, lo=lo, hi=min(lo + shares[n], w.shape[1]),
                                    sources=sources, dests=tuple(dests)))
    assert done_layout(noc).size <= noc.payload_bits
    return Mapping(net=net, pe=pe, noc=noc, placements=tuple(placed), weights=tuple(weights),
                   thresholds=tuple(thresholds), monitor=monitor, window=window)
