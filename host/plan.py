"""Plans: where a network's neurons live on the accelerator, computed once and passed around as data.

* :func:`pe_config` — the one way to derive a :class:`rtl.config.PEConfig` from a network (its widths, and the
  geometry a plan asks for).
* :class:`MeshPlan` (:func:`plan_mesh`) — a network on the mesh of rtl/mesh.py. Each dense (or conv2d, as its
  equivalent dense layer) layer is cut into ceil(n / ``neurons``) slices of equal size (rounded up to whole
  lanes; the last may be smaller); each slice runs on one PE. A maxpool2d layer after a conv2d layer runs in
  the conv layer's PEs (:func:`mesh_layers`: columns in window order, STORE passes a window's first spike).
  Slices take nodes in row-major order, layer after layer. A PE of layer ``l`` sends its output events to
  every PE of layer ``l + 1`` (and to the host when ``monitor`` is on or ``l`` is the output layer). Its
  ``SOURCES`` register is the number of PEs of layer ``l - 1`` (1 for the first layer: the host). docs/noc.md
  walks through an example. A plan is saved to and loaded from one ``.npz`` file (:meth:`MeshPlan.save`,
  :meth:`MeshPlan.load`): simulator processes get the plan, not the parameters to compute it again.
* :class:`StackPlan` — every layer resident in one PE at once (the one-PE board top, docs/fpga.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass

import numpy as np

import model
from model.network import NetworkError
from rtl.config import MAX_DEFER_DEPTH, PEConfig
from rtl.mesh import done_layout, noc_config
from rtl.noc_layouts import FlitKind, NocConfig

from .codec import FlitCodec, PECodec

__all__ = ["MappingError", "pe_config", "MeshLayer", "mesh_layers", "Slice", "MeshPlan", "plan_mesh", "StackPlan"]


class MappingError(NetworkError):
    """The network does not fit the mesh or the PE: one line with the numbers needed and available."""


@dataclass(frozen=True, eq=False)
class MeshLayer:
    """One layer of PEs: ``weight`` (in, columns) and ``threshold`` (columns,) of its neurons as a dense layer,
    ``pool_shift`` (0: no pooling; else column j belongs to max-pooling window j >> pool_shift, which is output
    neuron j >> pool_shift), and ``net_layer``, the layer of the network whose spike times it emits."""

    weight: np.ndarray
    threshold: np.ndarray
    pool_shift: int
    net_layer: int


def _pool_columns(conv: model.Conv2d, pool: model.MaxPool2d, n: int) -> tuple[np.ndarray, int]:
    """(conv neuron of each column, pool_shift): window p (pooled output p, row-major (C, PH, PW)) takes columns
    p * 2**shift .. (p + 1) * 2**shift - 1, its kernel x kernel conv neurons first, then padding (-1, a neuron
    with zero weights that never fires). Conv neurons in no window are left out (nothing reads them)."""
    k, st = pool.kernel, pool.stride
    if st < k:
        raise MappingError(f"layers[{n}]: maxpool2d kernel {k} with stride {st}: overlapping windows do not run "
                           f"on the mesh (a conv neuron must feed at most one window: stride >= kernel)")
    c, oh, ow = conv.out_shape
    _, ph, pw = pool.out_shape
    shift = (k * k - 1).bit_length()
    cols = np.full((c, ph, pw, 1 << shift), -1, dtype=np.int64)
    dy, dx = np.divmod(np.arange(k * k), k)
    ch, py, px = np.meshgrid(np.arange(c), np.arange(ph), np.arange(pw), indexing="ij")
    cols[..., :k * k] = (ch[..., None] * oh * ow + (py[..., None] * st + dy) * ow + px[..., None] * st + dx)
    return cols.reshape(-1), shift


def mesh_layers(net: model.Network) -> list[MeshLayer]:
    """The PE layers of ``net``: each dense and conv2d layer (as its dense equivalent), a maxpool2d layer fused
    into the conv2d layer before it (its columns reordered by window, :func:`_pool_columns`). MappingError for a
    maxpool2d layer that does not follow a conv2d layer or has overlapping windows."""
    layers = net.layers
    out, n = [], 0
    while n < len(layers):
        layer = layers[n]
        if layer.kind == "maxpool2d":
            raise MappingError(f"layers[{n}]: maxpool2d runs on the mesh only right after a conv2d layer (in its "
                               f"PEs), not after {'the input' if n == 0 else layers[n - 1].kind}")
        w, th = model.dense_equivalent(layer)
        if n + 1 < len(layers) and layers[n + 1].kind == "maxpool2d":
            cols, shift = _pool_columns(layer, layers[n + 1], n + 1)
            real = cols >= 0
            w = np.where(real[None, :], w[:, np.where(real, cols, 0)], 0)
            th = np.where(real, th[np.where(real, cols, 0)], (1 << net.threshold_bits) - 1)
            out.append(MeshLayer(w, th, shift, n + 1))
            n += 2
        else:
            out.append(MeshLayer(w, th, 0, n))
            n += 1
    return out


def pe_config(net: model.Network, *, lanes: int = 4, neurons: int | None = None, fan_in: int | None = None,
              **kwargs) -> PEConfig:
    """The PE for ``net``: the network's weight, time and threshold widths; ``fan_in`` weight rows and
    ``neurons`` neurons (default: the largest input and output of any dense/conv2d layer, the smallest PE that
    runs every layer in turn), neurons rounded up to whole lanes. ``kwargs``: other PEConfig fields.
    ValueError (from PEConfig) names a parameter out of range."""
    sizes = [(math.prod(layer.in_shape), math.prod(layer.out_shape)) for layer in net.layers
             if layer.kind in ("dense", "conv2d")]
    fan_in = max(i for i, _ in sizes) if fan_in is None else fan_in
    neurons = max(o for _, o in sizes) if neurons is None else neurons
    return PEConfig(neurons=-(-neurons // lanes) * lanes, fan_in=fan_in, lanes=lanes, weight_bits=net.weight_bits,
                    time_bits=net.time_bits, threshold_bits=net.threshold_bits, **kwargs)


@dataclass(frozen=True)
class Slice:
    """One PE's share of a mesh plan: neurons ``lo .. hi - 1`` of layer ``layer`` at node ``node``, ``sources``
    senders (PEs of the layer before, or the host), output events to ``dests`` ((x, y, host) each)."""

    layer: int
    node: tuple[int, int]
    lo: int
    hi: int
    sources: int
    dests: tuple[tuple[int, int, int], ...]

    @property
    def reports(self) -> bool:
        """The slice's output events reach the host."""
        return any(h for _, _, h in self.dests)


@dataclass(frozen=True, eq=False)
class MeshPlan:
    """A network placed on a mesh (see the module docstring): everything the host needs, as data."""

    pe: PEConfig
    noc: NocConfig
    slices: tuple[Slice, ...]
    weights: tuple[np.ndarray, ...]      # per layer, dense (in, out)
    thresholds: tuple[np.ndarray, ...]   # per layer, (out,)
    t_end: int
    monitor: bool
    #: The host sends the input events of step s only after every PE has sent STEP_END(s - window) to the
    #: host (needs ``monitor``); this bounds how far one source runs ahead of another, which bounds the
    #: PEs' defer FIFOs (docs/noc.md, "Run-ahead window"). None: no window.
    window: int | None = None
    #: Per layer of PEs: max-pooling windows of 2**shift columns (0: none); see :class:`MeshLayer`.
    pool_shifts: tuple[int, ...] | None = None
    #: Per layer of PEs: the network layer whose spike times it emits (a conv2d layer fused with the maxpool2d
    #: after it emits the pooled times). None: layer n emits network layer n.
    net_layers: tuple[int, ...] | None = None

    # ---- structure ----
    @property
    def no_spike(self) -> int:
        return self.pe.no_spike

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def layer_slices(self, layer: int) -> list[Slice]:
        return [s for s in self.slices if s.layer == layer]

    def pool_shift(self, layer: int) -> int:
        return 0 if self.pool_shifts is None else self.pool_shifts[layer]

    def net_layer(self, layer: int) -> int:
        return layer if self.net_layers is None else self.net_layers[layer]

    @property
    def n_net_layers(self) -> int:
        """Layers of the network (the output layer is never a maxpool2d)."""
        return self.net_layer(self.n_layers - 1) + 1

    def outputs(self, layer: int) -> int:
        """Output neurons of a layer of PEs (pooled windows when it pools)."""
        return self.weights[layer].shape[1] >> self.pool_shift(layer)

    def out_range(self, s: Slice) -> tuple[int, int]:
        """The output neuron indices lo .. hi - 1 of a slice's events (slices hold whole pooling windows)."""
        sh = self.pool_shift(s.layer)
        return s.lo >> sh, s.hi >> sh

    def by_net_layer(self, per_layer) -> tuple:
        """Per network layer: the entry of the layer of PEs that emits its times, None for a layer that no PE
        emits (a conv2d layer whose maxpool2d runs in its PEs)."""
        out = [None] * self.n_net_layers
        for n, x in enumerate(per_layer):
            out[self.net_layer(n)] = x
        return tuple(out)

    @property
    def n_reporting(self) -> int:
        """PEs whose output events reach the host."""
        return sum(s.reports for s in self.slices)

    @property
    def completions(self) -> int:
        """Host flits that end an image: every node's DONE and every reporting PE's STEP_END(t_end)."""
        return len(self.slices) + self.n_reporting

    @property
    def pred_node(self) -> int:
        """Lowest node number y * width + x of an output-layer PE (the board counts spikes from nodes at or
        above it for the prediction)."""
        return min(s.node[1] * self.noc.width + s.node[0] for s in self.layer_slices(self.n_layers - 1))

    @property
    def codec(self) -> FlitCodec:
        return FlitCodec(self.pe, self.noc)

    # ---- host -> mesh ----
    def config_flits(self) -> list[int]:
        """NI registers and destination tables, then every PE's registers, thresholds and weights."""
        fc = self.codec
        flits = []
        for s in self.slices:
            flits += [fc.flit(s.node, FlitKind.NI_CFG, w)
                      for w in fc.ni_words(sources=s.sources, t_end=self.t_end, dests=s.dests)]
            words = fc.pe.layer_cfg_words(self.weights[s.layer][:, s.lo:s.hi], self.thresholds[s.layer][s.lo:s.hi],
                                          neuron_base=self.out_range(s)[0], sources=s.sources, t_end=self.t_end,
                                          pool_shift=self.pool_shift(s.layer))
            flits += [fc.flit(s.node, FlitKind.PE_CFG, w) for w in words]
        return flits

    def image_steps(self, input_times: np.ndarray) -> list[tuple[int, list[int]]]:
        """The host flits of one image grouped by step: (-1, STARTs to every PE), then (t, the input SPIKEs of
        step t and STEP_END(t) to each first-layer PE) for t = 0..t_end."""
        fc = self.codec
        start = fc.pe.start()
        # STARTs go to the last layer first: a PE emits STEP_END(0) as soon as its START is processed, and that
        # marker must not reach a next-layer PE before the START of that PE does (the START would then reset
        # the marker count and the marker would be lost: a deadlock seen on a 4x3 mesh under host stalls).
        # Every START enters at router (0, 0) in this order and the network is empty between images.
        groups = [(-1, [fc.event(s.node, start) for s in sorted(self.slices, key=lambda s: -s.layer)])]
        first = self.layer_slices(0)
        for t, spikes in fc.pe.steps(input_times, self.t_end):
            # Event by event, each to every first-layer PE in turn: the PEs then work in parallel. (PE by PE
            # blocks left all but one PE idle while the host port was blocked on the busy one's full FIFOs.)
            # Each PE still gets its events in the same order.
            groups.append((t, [fc.event(s.node, e) for e in [*spikes, fc.pe.step_end(t)] for s in first]))
        return groups

    def image_flits(self, input_times: np.ndarray) -> list[int]:
        """:meth:`image_steps`, flattened."""
        return [w for _, group in self.image_steps(input_times) for w in group]

    # ---- cost ----
    def sops(self, golden_times, input_times: np.ndarray, until: int | None = None) -> int:
        """Synaptic operations of one image: each input spike (time <= t_end) of layer l times the number
        of neurons of layer l (every PE of the layer adds the weight row to all its neurons). ``golden_times``:
        per network layer. ``until``: count only input spikes at steps <= until (the work needed to close step
        ``until``, early exit)."""
        last = self.t_end if until is None else min(until, self.t_end)
        ins = [np.asarray(input_times).reshape(-1)] + [np.asarray(golden_times[self.net_layer(n)]).reshape(-1)
                                                       for n in range(self.n_layers - 1)]
        return int(sum(int((t <= last).sum()) * w.shape[1] for t, w in zip(ins, self.weights, strict=True)))

    def describe(self) -> str:
        parts = [f"layer {n}: {self.weights[n].shape[0]}->{self.weights[n].shape[1]}"
                 + (f" pooled to {self.outputs(n)}" if self.pool_shift(n) else "")
                 + f" on {len(self.layer_slices(n))} PE(s)" for n in range(self.n_layers)]
        return (f"{self.noc.width}x{self.noc.height} mesh, {len(self.slices)} PEs used, PE {self.pe.neurons} "
                f"neurons x {self.pe.lanes} lanes, fan-in {self.pe.fan_in}; " + "; ".join(parts))

    # ---- as data ----
    def save(self, path: str | os.PathLike) -> None:
        """Write the plan to one .npz file (metadata as JSON, weights and thresholds as arrays)."""
        meta = {"pe": dataclasses.asdict(self.pe), "noc": dataclasses.asdict(self.noc),
                "slices": [dataclasses.asdict(s) for s in self.slices], "t_end": self.t_end,
                "monitor": self.monitor, "window": self.window, "pool_shifts": self.pool_shifts,
                "net_layers": self.net_layers}
        arrays = {f"weight{n}": w for n, w in enumerate(self.weights)}
        arrays.update({f"threshold{n}": t for n, t in enumerate(self.thresholds)})
        np.savez(path, plan=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> MeshPlan:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["plan"]))
            n = sum(k.startswith("weight") for k in z.files)
            weights = tuple(z[f"weight{k}"] for k in range(n))
            thresholds = tuple(z[f"threshold{k}"] for k in range(n))
        slices = tuple(Slice(layer=s["layer"], node=tuple(s["node"]), lo=s["lo"], hi=s["hi"], sources=s["sources"],
                             dests=tuple(tuple(d) for d in s["dests"])) for s in meta["slices"])
        return cls(pe=PEConfig(**meta["pe"]), noc=NocConfig(**meta["noc"]), slices=slices, weights=weights,
                   thresholds=thresholds, t_end=meta["t_end"], monitor=meta["monitor"], window=meta["window"],
                   pool_shifts=None if meta.get("pool_shifts") is None else tuple(meta["pool_shifts"]),
                   net_layers=None if meta.get("net_layers") is None else tuple(meta["net_layers"]))


def _share(n: int, neurons: int, lanes: int) -> int:
    """Neurons per PE of a layer of ``n`` neurons on PEs of at most ``neurons``: the layer takes
    ceil(n / neurons) PEs and splits evenly, each share rounded up to a multiple of ``lanes`` (never above
    ``neurons`` rounded to lanes)."""
    pes = -(-n // neurons)
    even = -(-n // pes)
    return min(-(-even // lanes) * lanes, max(lanes, neurons // lanes * lanes))


def plan_mesh(net: model.Network, width: int, height: int, *, neurons: int = 64, lanes: int = 4,
              monitor: bool = True, fifo_depth: int = 4, pe: PEConfig | None = None,
              window: int | None = None) -> MeshPlan:
    """Place ``net`` on a ``width`` x ``height`` mesh of PEs with ``neurons`` neurons and ``lanes`` lanes
    (or the given ``pe``); router input FIFOs of ``fifo_depth`` flits. ``window``: the host's run-ahead window
    (docs/noc.md); None for a host that does not gate its input on the PEs' markers (defer FIFOs are then sized
    for one step of run-ahead per layer, which holds while no output is backpressured for long). Raises
    MappingError naming what is needed and what is available."""
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise MappingError(f"window: must be None or an integer >= 1 (step s is sent after STEP_END(s - window)), "
                           f"got {window!r}")
    if not (1 <= width <= 64 and 1 <= height <= 64):
        raise MappingError(f"mesh: width and height must be in 1..64, got {width}x{height}")
    layers = mesh_layers(net)
    weights = [ml.weight for ml in layers]
    thresholds = [ml.threshold for ml in layers]
    # Even split: a layer of n neurons takes ceil(n / neurons) PEs, each with an equal share rounded up to whole
    # lanes (the busiest PE sets the pace); a PE built here is sized for the largest share of any layer. A
    # pooling layer's shares are whole windows (2**pool_shift columns: STORE's window bits are per PE).
    limit, n_lanes = (neurons, lanes) if pe is None else (pe.neurons, pe.lanes)
    for ml in layers:
        if 1 << ml.pool_shift > limit:
            k = net.layers[ml.net_layer].kernel
            raise MappingError(f"layers[{ml.net_layer}]: a {k}x{k} pooling window needs {1 << ml.pool_shift} "
                               f"neurons in one PE, the PE has {limit}")
    shares = [_share(w.shape[1], limit, max(n_lanes, 1 << ml.pool_shift)) for w, ml in zip(weights, layers,
                                                                                          strict=True)]
    counts = [-(-w.shape[1] // sh) for w, sh in zip(weights, shares, strict=True)]
    # The PE count first: a network that needs more PEs than the mesh has is told so, whatever else is wrong.
    need = sum(counts)
    if need > width * height:
        per_layer = ", ".join(
            (f"layers {ml.net_layer - 1}-{ml.net_layer} (conv2d + maxpool2d)" if ml.pool_shift else
             f"layer {ml.net_layer}") + f": {ml.weight.shape[1]} neurons -> {c}"
            for ml, c in zip(layers, counts, strict=True))
        raise MappingError(f"--mesh {width}x{height}: the network needs {need} PEs of at most {limit} neurons "
                           f"({per_layer}), the mesh has {width * height}")
    if pe is None:
        # Event indices carry input rows and, on a PE's output, neuron numbers of the layer: the PE's index
        # width comes from max(fan_in, neurons), so fan_in also covers the widest layer output.
        per_pe = max(shares)
        max_sources = max([1, *counts[:-1]])
        # Early events of a fast source wait in the PE's defer FIFO. With the host's run-ahead window w, a
        # source of layer l - 1 is at most w + l steps ahead of a PE of layer l (docs/noc.md): its early events
        # are at most one marker per step ahead plus its output spikes (each output neuron, or pooling window,
        # spikes once per inference). The slowest source is never ahead. The PE is sized for the worst layer.
        ahead = (window if window is not None else 0) + len(counts) - 1
        outs = [sh >> ml.pool_shift for sh, ml in zip(shares, layers, strict=True)]
        fan = [(counts[n] - 1, outs[n]) for n in range(len(counts) - 1) if counts[n] > 1]
        defer = max(8, max((k * (ahead + o) for k, o in fan), default=0) + 2)
        if window is not None and defer > MAX_DEFER_DEPTH:  # name the setting that asked for it, not defer_depth
            fit = min((MAX_DEFER_DEPTH - 2) // k - o for k, o in fan) - (len(counts) - 1)
            raise MappingError(f"window: {window} needs defer FIFOs of {defer} entries, above the PE limit of "
                               f"{MAX_DEFER_DEPTH}; " + (f"the largest window this mapping allows is {fit}"
                                                         if fit >= 1 else "no window fits this mapping"))
        try:
            # (a pooling layer's output indices are its windows, not its columns)
            rows = max(max(ml.weight.shape[0], ml.weight.shape[1] >> ml.pool_shift) for ml in layers)
            pe = pe_config(net, lanes=lanes, neurons=per_pe, fan_in=rows,
                           defer_depth=defer, max_sources=max_sources)
        except ValueError as e:
            raise MappingError(f"PE: {e}") from None
    for ml in layers:
        n, w, n_out = ml.net_layer, ml.weight, ml.weight.shape[1] >> ml.pool_shift
        if w.shape[0] > pe.fan_in:
            raise MappingError(f"layers[{n}]: fan-in {w.shape[0]} needed, the PE has {pe.fan_in} weight rows")
        if n_out > 1 << pe.index_bits:
            raise MappingError(f"layers[{n}]: {n_out} neuron indices needed, events carry "
                               f"{pe.index_bits} index bits ({1 << pe.index_bits} values)")
    if (net.weight_bits, net.time_bits) != (pe.weight_bits, pe.time_bits) or net.threshold_bits > pe.threshold_bits:
        raise MappingError(f"PE: widths weight/time/threshold {pe.weight_bits}/{pe.time_bits}/{pe.threshold_bits} "
                           f"do not match the network's {net.weight_bits}/{net.time_bits}/{net.threshold_bits}")
    try:
        noc = noc_config(pe, width, height, fifo_depth=fifo_depth, max_dests=max(c + 1 for c in counts))
    except ValueError as e:
        raise MappingError(f"mesh: {e}") from None
    if window is not None and not monitor:
        raise MappingError("window: the run-ahead window needs monitor=True (the host must see every PE's markers)")
    if max(counts[:-1], default=1) > pe.max_sources:
        raise MappingError(f"PE: {max(counts[:-1])} sources needed, the PE counts up to {pe.max_sources}")
    nodes = [(x, y) for y in range(height) for x in range(width)]
    layer_nodes, k = [], 0
    for c in counts:
        layer_nodes.append(nodes[k:k + c])
        k += c
    slices = []
    for n, w in enumerate(weights):
        last = n == len(weights) - 1
        dests = [] if last else [(x, y, 0) for x, y in layer_nodes[n + 1]]
        if monitor or last:
            dests.append((0, 0, 1))
        sources = 1 if n == 0 else counts[n - 1]
        for s, node in enumerate(layer_nodes[n]):
            lo = s * shares[n]
            slices.append(Slice(layer=n, node=node, lo=lo, hi=min(lo + shares[n], w.shape[1]), sources=sources,
                                dests=tuple(dests)))
    assert done_layout(noc).size <= noc.payload_bits
    return MeshPlan(pe=pe, noc=noc, slices=tuple(slices), weights=tuple(weights), thresholds=tuple(thresholds),
                    t_end=net.t_end, monitor=monitor, window=window,
                    pool_shifts=tuple(ml.pool_shift for ml in layers), net_layers=tuple(ml.net_layer for ml in layers))


@dataclass(frozen=True)
class StackPlan:
    """Every layer of a network resident in one PE at once (the one-PE board top): layer ``l`` uses weight rows
    ``row_base[l] .. row_base[l] + fan_in_l - 1`` and neurons ``neuron_base[l] .. neuron_base[l] + n_out_l - 1``;
    the weights between blocks of different layers are zero."""

    fan_ins: tuple[int, ...]
    n_outs: tuple[int, ...]

    @classmethod
    def of(cls, net: model.Network) -> StackPlan:
        """ValueError for a layer that does not run on the PE (maxpool2d)."""
        shapes = [model.dense_equivalent(layer)[0].shape for layer in net.layers]
        return cls(tuple(s[0] for s in shapes), tuple(s[1] for s in shapes))

    @property
    def row_base(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.cumsum((0,) + self.fan_ins[:-1]))

    @property
    def neuron_base(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.cumsum((0,) + self.n_outs[:-1]))

    @property
    def rows(self) -> int:
        return sum(self.fan_ins)

    @property
    def neurons(self) -> int:
        return sum(self.n_outs)

    @property
    def max_spikes_in(self) -> int:
        return max(self.fan_ins)

    @property
    def max_spikes_out(self) -> int:
        return max(self.n_outs)

    def pe_config(self, net: model.Network, *, lanes: int = 4) -> PEConfig:
        """The smallest PE that holds every layer at once."""
        return pe_config(net, lanes=lanes, neurons=self.neurons, fan_in=self.rows)

    def config_words(self, net: model.Network, pe: PEConfig) -> tuple[list[int], np.ndarray]:
        """(registers and thresholds as configuration words, the stacked weight matrix (rows, neurons))."""
        if self.rows > pe.fan_in or self.neurons > pe.neurons:
            raise ValueError(f"network: needs {self.rows} weight rows x {self.neurons} neurons, the PE has "
                             f"{pe.fan_in} x {pe.neurons}")
        codec = PECodec(pe)
        words = codec.registers(active=self.neurons, neuron_base=0, sources=1, t_end=net.t_end)
        big = np.zeros((self.rows, self.neurons), dtype=np.int64)
        for layer, r0, n0 in zip(net.layers, self.row_base, self.neuron_base, strict=True):
            w, th = model.dense_equivalent(layer)
            big[r0:r0 + w.shape[0], n0:n0 + w.shape[1]] = w
            words += [codec.threshold(n0 + j, int(th[j])) for j in range(len(th))]
        return words, big

