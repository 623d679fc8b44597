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
from rtl import layouts as L
from rtl.config import MAX_CONV_KERNEL, MAX_DEFER_DEPTH, PEConfig
from rtl.mesh import done_layout, noc_config
from rtl.noc_layouts import FlitKind, NocConfig

from .codec import FlitCodec, PECodec

__all__ = ["MappingError", "pe_config", "MeshLayer", "mesh_layers", "ConvTile", "ConvSetup", "conv_setup",
           "conv_map_entries", "conv_reach", "conv_fanout", "Slice", "MeshPlan", "plan_mesh", "StackPlan"]


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


@dataclass(frozen=True)
class ConvTile:
    """One conv-mode PE's share of a conv2d layer (docs/pe.md "Conv mode"): output channels ``oc0 .. oc1 - 1``,
    conv output rows ``y0 .. y0 + h - 1`` and columns ``x0 .. x0 + w - 1``."""

    oc0: int
    oc1: int
    y0: int
    x0: int
    h: int
    w: int


@dataclass(frozen=True, eq=False)
class ConvSetup:
    """What one conv-mode PE is loaded with (:func:`conv_setup`): the kernel slice ``kernel`` (C * KH * KW rows,
    ``ch_words * lanes`` columns, zero beyond the tile's channels), ``threshold`` per neuron (ACTIVE of them),
    the conv registers ``regs``, ``pool_shift``, and ``out_map``: per output index of the PE (relative to its
    NEURON_BASE) the flattened neuron of the emitted network layer (the conv output, or the pooled one), -1 for
    a padding lane that never fires."""

    kernel: np.ndarray
    threshold: np.ndarray
    regs: dict
    pool_shift: int
    out_map: np.ndarray

    @property
    def active(self) -> int:
        return len(self.threshold)

    @property
    def outputs(self) -> int:
        return len(self.out_map)


def conv_setup(conv: model.Conv2d, tile: ConvTile, lanes: int, *, pool: int = 1, threshold_bits: int = 16
               ) -> ConvSetup:
    """The configuration of one conv-mode PE holding ``tile`` of ``conv``, followed (``pool`` > 1, a power of
    two) by a ``pool`` x ``pool`` maxpool2d of stride ``pool`` (the tile then starts and ends on window edges).

    Neuron ``n = pos * L + o`` (``L = ch_words * lanes`` lanes per position, ``o`` the channel in the tile):
    positions window by window (``pos = ((yl // q) * (w // q) + xl // q) * q * q + (yl % q) * q + xl % q``), so
    with pooling the neurons of window (pooled position ``pp``, channel ``o``) are ``n`` with bits
    ``log2 L .. log2 L + 2 log2 q - 1`` varying: POOL_LOW = log2 L, POOL_SHIFT = 2 log2 q, output index
    ``pp * L + o``. Without pooling the output index is ``n``."""
    q = pool
    oct_ = tile.oc1 - tile.oc0
    if q > 1:
        cwl = max(lanes, 1 << (oct_ - 1).bit_length())
        qb = q.bit_length() - 1
    else:
        cwl = -(-oct_ // lanes) * lanes
        qb = 0
    _, c_in, kh, kw = conv.weight.shape
    _, oh, ow = conv.out_shape
    kernel = np.zeros((c_in * kh * kw, cwl), dtype=np.int64)
    kernel[:, :oct_] = conv.weight[tile.oc0:tile.oc1].reshape(oct_, -1).T
    yl, xl = np.divmod(np.arange(tile.h * tile.w), tile.w)
    pos = ((yl >> qb) * (tile.w >> qb) + (xl >> qb)) * (q * q) + (yl & (q - 1)) * q + (xl & (q - 1))
    n_pos = tile.h * tile.w
    ch = np.arange(cwl)
    real = ch < oct_
    threshold = np.full(n_pos * cwl, (1 << threshold_bits) - 1, dtype=np.int64)
    oc = tile.oc0 + np.where(real, ch, 0)
    for p in pos:
        threshold[p * cwl:(p + 1) * cwl] = np.where(real, conv.threshold[oc], (1 << threshold_bits) - 1)
    if q > 1:
        pp = np.arange(n_pos // (q * q))
        py, px = tile.y0 // q + pp // (tile.w // q), tile.x0 // q + pp % (tile.w // q)
        ph, pw = oh // q, ow // q
        flat = oc[None, :] * ph * pw + (py * pw + px)[:, None]
    else:
        order = np.empty(n_pos, dtype=np.int64)
        order[pos] = np.arange(n_pos)
        y, x = tile.y0 + yl[order], tile.x0 + xl[order]
        flat = oc[None, :] * oh * ow + (y * ow + x)[:, None]
    out_map = np.where(real[None, :], flat, -1).reshape(-1)
    regs = {"kh": kh, "kw": kw, "stride": conv.stride - 1, "pad": conv.padding, "tile_y0": tile.y0,
            "tile_x0": tile.x0, "tile_h": tile.h, "tile_w": tile.w, "ch_words": cwl // lanes,
            "pool_low": (cwl.bit_length() - 1) if q > 1 else 0}
    return ConvSetup(kernel, threshold, regs, 2 * qb, out_map)


def conv_map_entries(conv: model.Conv2d, in_index: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Input map entries (index, c * KH * KW, y, x) of a conv-mode PE: ``in_index[i]`` is the flattened input
    position (c, y, x) of input index i, or -1 for an index that never spikes (left out)."""
    c, h, w = conv.in_shape
    kk = conv.weight.shape[2] * conv.weight.shape[3]
    out = []
    for i in np.flatnonzero(np.asarray(in_index) >= 0):
        ch, rest = divmod(int(in_index[i]), h * w)
        out.append((int(i), ch * kk, rest // w, rest % w))
    return out


def conv_reach(conv: model.Conv2d, tile: ConvTile) -> np.ndarray:
    """Per flattened input position of ``conv``: whether a spike there reaches an output position of ``tile``."""
    c, h, w = conv.in_shape
    _, _, kh, kw = conv.weight.shape
    s, p = conv.stride, conv.padding

    def axis(n, k, lo, size):
        d = (np.arange(n) + p)[:, None] - np.arange(k)[None, :]   # y + p - ky = y' * s, lo <= y' < lo + size
        return ((d >= 0) & (d % s == 0) & (d // s >= lo) & (d // s < lo + size)).any(1)

    ry, rx = axis(h, kh, tile.y0, tile.h), axis(w, kw, tile.x0, tile.w)
    return np.broadcast_to((ry[:, None] & rx[None, :])[None], (c, h, w)).reshape(-1)


def conv_fanout(conv: model.Conv2d) -> np.ndarray:
    """Per flattened input position: the synapses a spike there drives (OC x the output positions it reaches)."""
    c, h, w = conv.in_shape
    oc, _, kh, kw = conv.weight.shape
    _, oh, ow = conv.out_shape
    s, p = conv.stride, conv.padding

    def axis(n, k, size):
        d = (np.arange(n) + p)[:, None] - np.arange(k)[None, :]
        return ((d >= 0) & (d % s == 0) & (d // s < size)).sum(1)

    return np.broadcast_to((oc * axis(h, kh, oh)[:, None] * axis(w, kw, ow)[None, :])[None], (c, h, w)).reshape(-1)


def mesh_layers(net: model.Network) -> list[MeshLayer]:
    """The PE layers of ``net``: each dense and conv2d layer (as its dense equivalent), a maxpool2d layer fused
    into the conv2d layer before it (its columns reordered by window, :func:`_pool_columns`). MappingError for a
    maxpool2d layer that does not follow a conv2d layer or has overlapping windows."""
    out, n = [], 0
    while n < len(net.layers):
        out.append(mesh_layers_at(net, n))
        n = out[-1].net_layer + 1
    return out


def mesh_layers_at(net: model.Network, n: int) -> MeshLayer:
    """The dense-mode PE layer that starts at network layer ``n`` (see :func:`mesh_layers`)."""
    layers = net.layers
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
        return MeshLayer(w, th, shift, n + 1)
    return MeshLayer(w, th, 0, n)


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
    #: Conv mode: (oc0, oc1, y0, x0, h, w) of the slice's :class:`ConvTile`; lo .. hi are then its output
    #: indices (not columns). None: a dense-mode slice.
    tile: tuple[int, ...] | None = None

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
    #: Per layer of PEs, conv mode only (docs/pe.md "Conv mode"): {"in_shape", "kernel", "stride", "padding",
    #: "pool"} of a conv2d layer run weight-shared (``weights[n]`` is then its kernel, C * KH * KW rows x OC,
    #: ``thresholds[n]`` one per channel), None for a dense-mode layer. None: no conv-mode layer.
    convs: tuple[dict | None, ...] | None = None
    #: Per layer of PEs: the network neuron (flattened, of the layer it emits) of each output index, -1 for
    #: an index that never spikes; None: output index = network neuron (dense mode).
    out_maps: tuple[np.ndarray | None, ...] | None = None

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

    def conv(self, layer: int) -> dict | None:
        """The conv-mode geometry of a layer of PEs, None for a dense-mode layer."""
        return None if self.convs is None else self.convs[layer]

    def out_map(self, layer: int) -> np.ndarray | None:
        return None if self.out_maps is None else self.out_maps[layer]

    def conv_layer(self, layer: int) -> model.Conv2d | None:
        """The conv2d layer a conv-mode layer of PEs runs (rebuilt from the plan's data)."""
        g = self.conv(layer)
        if g is None:
            return None
        kh, kw = g["kernel"]
        c = g["in_shape"][0]
        w = self.weights[layer]
        return model.Conv2d(in_shape=tuple(g["in_shape"]), weight=w.T.reshape(w.shape[1], c, kh, kw),
                            threshold=self.thresholds[layer], stride=g["stride"], padding=g["padding"])

    def in_index(self, layer: int) -> np.ndarray:
        """Per input index of a layer of PEs: the flattened input neuron (of the network layer before it), -1 for
        an index that never spikes."""
        prev = None if layer == 0 else self.out_map(layer - 1)
        if prev is not None:
            return prev
        g = self.conv(layer)
        return np.arange(self.weights[layer].shape[0] if g is None else math.prod(g["in_shape"]))

    def neurons(self, layer: int) -> int:
        """Neurons of the network layer that a layer of PEs computes (a conv2d layer: OC * OH * OW)."""
        conv = self.conv_layer(layer)
        return self.weights[layer].shape[1] if conv is None else math.prod(conv.out_shape)

    def outputs(self, layer: int) -> int:
        """Output indices of a layer of PEs (pooled windows when it pools; a conv-mode layer's index space,
        :attr:`out_maps`)."""
        if self.conv(layer) is not None:
            return max(s.hi for s in self.layer_slices(layer))
        return self.weights[layer].shape[1] >> self.pool_shift(layer)

    def out_range(self, s: Slice) -> tuple[int, int]:
        """The output neuron indices lo .. hi - 1 of a slice's events (slices hold whole pooling windows)."""
        if s.tile is not None:
            return s.lo, s.hi
        sh = self.pool_shift(s.layer)
        return s.lo >> sh, s.hi >> sh

    def to_net(self, layer: int, x):
        """An entry of a layer of PEs in the network's order: an array over the output indices is gathered
        into network neuron order (a conv-mode layer, :attr:`out_maps`), a size becomes the network layer's."""
        omap = self.out_map(layer)
        if omap is None or x is None:
            return x
        real = np.flatnonzero(omap >= 0)
        if isinstance(x, (int, np.integer)):
            return len(real)
        out = np.empty(len(real), dtype=np.asarray(x).dtype)
        out[omap[real]] = np.asarray(x)[real]
        return out

    def by_net_layer(self, per_layer) -> tuple:
        """Per network layer: the entry of the layer of PEs that emits its times (:meth:`to_net`), None for a
        layer that no PE emits (a conv2d layer whose maxpool2d runs in its PEs)."""
        out = [None] * self.n_net_layers
        for n, x in enumerate(per_layer):
            out[self.net_layer(n)] = self.to_net(n, x)
        return tuple(out)

    def conv_setup(self, s: Slice) -> ConvSetup:
        """The configuration of a conv-mode slice."""
        return conv_setup(self.conv_layer(s.layer), ConvTile(*s.tile), self.pe.lanes, pool=self.conv(s.layer)["pool"],
                          threshold_bits=self.pe.threshold_bits)

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
        """NI registers and destination tables, then every PE's registers, thresholds and weights. With the
        weight stream (``PEConfig.cfg_stream``) every PE's words up to its STREAM register write come first, PE
        by PE, then the PEs' stream words interleaved in proportion to their numbers (all PEs finish together):
        a PE takes about ``lanes`` weights per cycle and a stream word carries more, so the host port's one
        flit per cycle feeds several PEs at once."""
        fc = self.codec
        heads, bodies = [], []
        for s in self.slices:
            flits = [fc.flit(s.node, FlitKind.NI_CFG, w)
                     for w in fc.ni_words(sources=s.sources, t_end=self.t_end, dests=s.dests)]
            if s.tile is not None:
                st = self.conv_setup(s)
                words = fc.pe.conv_cfg_words(st.kernel, st.threshold,
                                             conv_map_entries(self.conv_layer(s.layer), self.in_index(s.layer)),
                                             neuron_base=s.lo, sources=s.sources, t_end=self.t_end,
                                             pool_shift=st.pool_shift, conv=st.regs, outputs=st.outputs)
            else:
                words = fc.pe.layer_cfg_words(self.weights[s.layer][:, s.lo:s.hi],
                                              self.thresholds[s.layer][s.lo:s.hi],
                                              neuron_base=self.out_range(s)[0], sources=s.sources,
                                              t_end=self.t_end, pool_shift=self.pool_shift(s.layer))
            body = fc.pe.stream_body(words)
            flits += [fc.flit(s.node, FlitKind.PE_CFG, w) for w in words[:len(words) - body]]
            heads.append(flits)
            bodies.append([fc.flit(s.node, FlitKind.PE_CFG, w) for w in words[len(words) - body:]])
        # stream word j of a PE with n of them goes at (j + 0.5) / n of the way (ties: slice order)
        keys = [((j + 0.5) / len(b), k, j) for k, b in enumerate(bodies) for j in range(len(b))]
        return [f for h in heads for f in h] + [bodies[k][j] for _, k, j in sorted(keys)]

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
        reach = self._first_reach()
        times = np.asarray(input_times, dtype=np.int64).reshape(-1)
        for t, spikes in fc.pe.steps(times, self.t_end):
            # Event by event, each to every first-layer PE in turn: the PEs then work in parallel. (PE by PE
            # blocks left all but one PE idle while the host port was blocked on the busy one's full FIFOs.)
            # Each PE still gets its events in the same order. A conv-mode PE gets only the input spikes that
            # reach its tile.
            idx = np.flatnonzero(times == t) if reach is not None else None
            flits = []
            for k, e in enumerate(spikes):
                flits += [fc.event(s.node, e) for j, s in enumerate(first) if reach is None or reach[j][idx[k]]]
            flits += [fc.event(s.node, fc.pe.step_end(t)) for s in first]
            groups.append((t, flits))
        return groups

    def _first_reach(self) -> list[np.ndarray] | None:
        """Per first-layer slice, which input indices reach it (None: every slice takes every input)."""
        if self.conv(0) is None:
            return None
        conv = self.conv_layer(0)
        return [conv_reach(conv, ConvTile(*s.tile)) for s in self.layer_slices(0)]

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
        total = 0
        for n, t in enumerate(ins):
            conv = self.conv_layer(n)
            if conv is None:
                total += int((t <= last).sum()) * self.weights[n].shape[1]
            else:   # weight-shared: an input spike reaches OC x (the output positions its taps reach)
                total += int(conv_fanout(conv)[t <= last].sum())
        return total

    def weight_bits(self) -> list[dict]:
        """Per layer of PEs: the weight bits loaded into its PEs (``bits``; conv mode: the kernel slices, plus
        ``map_bits`` of input map entries), against ``dense_bits``, the same layer as its dense expansion
        (every input row x every neuron), and the PEs used."""
        out = []
        for n in range(self.n_layers):
            conv = self.conv_layer(n)
            pes = self.layer_slices(n)
            wb = self.pe.weight_bits
            if conv is None:
                bits = self.weights[n].shape[0] * self.weights[n].shape[1] * wb
                out.append({"layer": self.net_layer(n), "mode": "dense", "pes": len(pes), "bits": bits,
                            "map_bits": 0, "dense_bits": bits})
                continue
            kernel_rows = self.weights[n].shape[0]
            bits = sum(kernel_rows * self.conv_setup(s).kernel.shape[1] * wb for s in pes)
            entries = int((self.in_index(n) >= 0).sum())
            map_bits = len(pes) * entries * L.input_map_layout(self.pe).size
            dense_bits = math.prod(conv.in_shape) * math.prod(conv.out_shape) * wb
            out.append({"layer": n if self.net_layers is None else self.net_layer(n), "mode": "conv",
                        "pes": len(pes), "bits": bits, "map_bits": map_bits, "dense_bits": dense_bits})
        return out

    def describe(self) -> str:
        parts = []
        for n, wb in enumerate(self.weight_bits()):
            conv = self.conv_layer(n)
            if conv is None:
                parts.append(f"layer {n}: {self.weights[n].shape[0]}->{self.weights[n].shape[1]}"
                             + (f" pooled to {self.outputs(n)}" if self.pool_shift(n) else "")
                             + f" on {len(self.layer_slices(n))} PE(s)")
            else:
                pool = self.conv(n)["pool"]
                parts.append(f"layer {n}: conv {'x'.join(map(str, conv.in_shape))}->"
                             f"{'x'.join(map(str, conv.out_shape))}" + (f" pooled {pool}x{pool}" if pool > 1 else "")
                             + f" on {wb['pes']} PE(s) in conv mode, {wb['bits']:,} weight bits + "
                             f"{wb['map_bits']:,} input map bits (dense expansion {wb['dense_bits']:,})")
        return (f"{self.noc.width}x{self.noc.height} mesh, {len(self.slices)} PEs used, PE {self.pe.neurons} "
                f"neurons x {self.pe.lanes} lanes, fan-in {self.pe.fan_in}; " + "; ".join(parts))

    # ---- as data ----
    def save(self, path: str | os.PathLike) -> None:
        """Write the plan to one .npz file (metadata as JSON, weights and thresholds as arrays)."""
        meta = {"pe": dataclasses.asdict(self.pe), "noc": dataclasses.asdict(self.noc),
                "slices": [dataclasses.asdict(s) for s in self.slices], "t_end": self.t_end,
                "monitor": self.monitor, "window": self.window, "pool_shifts": self.pool_shifts,
                "net_layers": self.net_layers, "convs": self.convs}
        arrays = {f"weight{n}": w for n, w in enumerate(self.weights)}
        arrays.update({f"out_map{n}": m for n, m in enumerate(self.out_maps or ()) if m is not None})
        arrays.update({f"threshold{n}": t for n, t in enumerate(self.thresholds)})
        np.savez(path, plan=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> MeshPlan:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["plan"]))
            n = sum(k.startswith("weight") for k in z.files)
            weights = tuple(z[f"weight{k}"] for k in range(n))
            thresholds = tuple(z[f"threshold{k}"] for k in range(n))
            out_maps = tuple(z[f"out_map{k}"] if f"out_map{k}" in z.files else None for k in range(n))
        slices = tuple(Slice(layer=s["layer"], node=tuple(s["node"]), lo=s["lo"], hi=s["hi"], sources=s["sources"],
                             dests=tuple(tuple(d) for d in s["dests"]),
                             tile=None if s.get("tile") is None else tuple(s["tile"])) for s in meta["slices"])
        convs = meta.get("convs")
        return cls(pe=PEConfig(**meta["pe"]), noc=NocConfig(**meta["noc"]), slices=slices, weights=weights,
                   thresholds=thresholds, t_end=meta["t_end"], monitor=meta["monitor"], window=meta["window"],
                   pool_shifts=None if meta.get("pool_shifts") is None else tuple(meta["pool_shifts"]),
                   net_layers=None if meta.get("net_layers") is None else tuple(meta["net_layers"]),
                   convs=None if convs is None else tuple(convs),
                   out_maps=None if convs is None else out_maps)


def _share(n: int, neurons: int, lanes: int) -> int:
    """Neurons per PE of a layer of ``n`` neurons on PEs of at most ``neurons``: the layer takes
    ceil(n / neurons) PEs and splits evenly, each share rounded up to a multiple of ``lanes`` (never above
    ``neurons`` rounded to lanes)."""
    pes = -(-n // neurons)
    even = -(-n // pes)
    return min(-(-even // lanes) * lanes, max(lanes, neurons // lanes * lanes))


def plan_mesh(net: model.Network, width: int, height: int, *, neurons: int = 64, lanes: int = 4,
              monitor: bool = True, fifo_depth: int = 4, pe: PEConfig | None = None,
              window: int | None = None, conv_mode: bool = True, compact_weights: bool = False,
              balance: bool = False) -> MeshPlan:
    """Place ``net`` on a ``width`` x ``height`` mesh of PEs with ``neurons`` neurons and ``lanes`` lanes
    (or the given ``pe``); router input FIFOs of ``fifo_depth`` flits. ``window``: the host's run-ahead window
    (docs/noc.md); None for a host that does not gate its input on the PEs' markers (defer FIFOs are then sized
    for one step of run-ahead per layer, which holds while no output is backpressured for long). Raises
    MappingError naming what is needed and what is available. ``conv_mode``: conv2d layers (stride 1 or 2,
    kernel and padding up to 8, optionally followed by a q x q maxpool2d of stride q, q a power of two) run in
    the PEs' conv mode (:func:`_plan_conv`, docs/noc.md "Mapping"); False maps them as their dense expansion.
    ``compact_weights`` (a network with conv-mode layers): every other layer runs in conv mode too, a dense layer
    as a 1x1 convolution of a C x 1 x 1 map, so that the PE's weight SRAM is built with only the words its
    largest kernel slice needs (``PEConfig.weight_depth``) instead of a row of every neuron for every input.
    ``balance``: the mesh's spare nodes go to the layers with the most synapses per PE, which get smaller
    tiles (conv-mode layers, :func:`_balance`) or shares (a network of dense layers, :func:`_balance_dense`),
    instead of every layer taking as few PEs as fit; the output layer keeps its PEs."""
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise MappingError(f"window: must be None or an integer >= 1 (step s is sent after STEP_END(s - window)), "
                           f"got {window!r}")
    if not (1 <= width <= 64 and 1 <= height <= 64):
        raise MappingError(f"mesh: width and height must be in 1..64, got {width}x{height}")
    if conv_mode and any(_conv_mode_pool(net, n) is not None for n in range(len(net.layers))):
        return _plan_conv(net, width, height, neurons=neurons, lanes=lanes, monitor=monitor, fifo_depth=fifo_depth,
                          pe=pe, window=window, compact=compact_weights, balance=balance)
    if compact_weights:
        raise MappingError("compact_weights: the network has no layer that runs in conv mode")
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
    if balance:
        _balance_dense(weights, layers, shares, counts, n_lanes, width * height)
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
                           defer_depth=defer, max_sources=max_sources, cfg_stream=True)
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


def _conv_mode_pool(net: model.Network, n: int) -> int | None:
    """For a conv2d layer ``n`` that runs in conv mode: the pooling window q fused into it (1: none); None if
    layer n is not such a layer (not conv2d, stride above 2, kernel or padding above MAX_CONV_KERNEL, or followed
    by a maxpool2d that is not q x q with stride q, q a power of two: then the dense expansion runs it)."""
    layer = net.layers[n]
    if layer.kind != "conv2d" or layer.stride not in (1, 2):
        return None
    _, _, kh, kw = layer.weight.shape
    if max(kh, kw, layer.padding) > MAX_CONV_KERNEL:
        return None
    if n + 1 < len(net.layers) and net.layers[n + 1].kind == "maxpool2d":
        pool = net.layers[n + 1]
        q = pool.kernel
        return q if q == pool.stride and q & (q - 1) == 0 else None
    return 1


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _conv_tiles(conv: model.Conv2d, q: int, limit: int, lanes: int, n: int) -> list[ConvTile]:
    """The tiles of a conv-mode layer on PEs of ``limit`` neurons: all output channels per PE when a q x q
    window of them fits (else the fewest channel groups that fit), then tiles of whole rows when a row band of
    q rows fits, else q-row bands cut into column blocks; equal sizes (in whole windows), the busiest PE sets the
    pace. Only the rows and columns that feed a pooling window are mapped."""
    oc, oh, ow = conv.out_shape
    rh, rw = oh // q * q, ow // q * q

    def width(k):  # lanes per position for k channels
        return max(lanes, 1 << (k - 1).bit_length()) if q > 1 else -(-k // lanes) * lanes

    for groups in range(1, oc + 1):
        per = -(-oc // groups)
        if width(per) * q * q <= limit:
            break
    else:
        raise MappingError(f"layers[{n}]: a conv-mode PE needs at least {width(1) * q * q} neurons (one "
                           f"{q}x{q} window of one channel in {lanes} lanes), the PE has {limit}")
    per = -(-oc // groups)
    positions = limit // width(per)
    if rw * q <= positions:
        tw, th_max = rw, min(rh, positions // rw // q * q)
    else:
        tw, th_max = positions // q // q * q, q
    n_r, n_c = -(-rh // th_max), -(-rw // tw)
    th = _ceil(_ceil(rh, n_r), q) * q
    tw = _ceil(_ceil(rw, n_c), q) * q
    return [ConvTile(o0, min(oc, o0 + per), y0, x0, min(th, rh - y0), min(tw, rw - x0))
            for o0 in range(0, oc, per) for y0 in range(0, rh, th) for x0 in range(0, rw, tw)]


def _layer_tiles(net: model.Network, entry, limit: int, lanes: int) -> list[ConvTile]:
    """:func:`_conv_tiles` of a conv-mode entry of _plan_conv's ``layers`` on tiles of at most ``limit`` neurons."""
    _, net_n, conv, q, _ = entry
    return _conv_tiles(conv, q, limit, lanes, net_n - (net.layers[net_n].kind == "maxpool2d"))


def _synapses(entry) -> int:
    """Synapses of a layer of PEs (an entry of _plan_conv's ``layers``): what its SOPs scale with."""
    kind, _, conv, _, ml = entry
    return math.prod(conv.out_shape) * math.prod(conv.weight.shape[1:]) if kind == "conv" else ml.weight.size


def _spread(syn, counts: list[int], settings: list[int], nodes: int, smaller, candidates) -> None:
    """The greedy of plan_mesh's ``balance``, in place: while the mesh has nodes for it, the layer among
    ``candidates`` with the most synapses per PE (``syn[k] / counts[k]``, the one that sets the pace) takes
    ``smaller(k)``: its next smaller setting that needs more PEs, as (setting, PEs). Stops when that layer
    cannot split (None) or its split does not fit the nodes."""
    while sum(counts) <= nodes:
        k = max(candidates, key=lambda j: syn[j] / counts[j])
        found = smaller(k)
        if found is None or sum(counts) - counts[k] + found[1] > nodes:
            return
        settings[k], counts[k] = found


def _balance_dense(weights, layers, shares: list[int], counts: list[int], lanes: int, nodes: int) -> None:
    """plan_mesh's ``balance`` for dense layers, in place (:func:`_spread` over the shares): the hidden layer
    that sets the pace takes the next smaller even share that needs more PEs. The output layer keeps its share
    (one PE for a classifier's outputs, where early exit watches them)."""
    def smaller(k):
        n, step = weights[k].shape[1], max(lanes, 1 << layers[k].pool_shift)
        limit = shares[k]
        while limit > step:
            limit -= step
            share = _share(n, limit, step)
            if -(-n // share) > counts[k]:
                return share, -(-n // share)
        return None

    if len(counts) > 1:
        _spread([w.size for w in weights], counts, shares, nodes, smaller, range(len(counts) - 1))


def _balance(net: model.Network, layers, limit: int, lanes: int, nodes: int) -> list[int]:
    """Per layer of PEs (_plan_conv's ``layers``), the neurons its tiles may hold. All start at ``limit`` (as
    few PEs as fit); then (:func:`_spread` over the limits) the layer with the most synapses per PE gets the
    next smaller tiles that take more PEs. Dense-mode layers and the output layer keep ``limit`` (the output
    layer's indices must stay the network's, see compact_weights): balancing stops at them."""
    def tiles(k, lim):
        return len(_layer_tiles(net, layers[k], lim, lanes))

    def smaller(k):
        if layers[k][0] != "conv" or k == len(layers) - 1:
            return None
        lim = limits[k]
        while lim > lanes:
            lim -= lanes
            try:
                c = tiles(k, lim)
            except MappingError:
                return None
            if c > counts[k]:
                return lim, c
        return None

    limits = [limit] * len(layers)
    try:
        counts = [tiles(k, limit) if layers[k][0] == "conv" else 1 for k in range(len(layers))]
    except MappingError:
        return limits   # _plan_conv reports it
    _spread([_synapses(e) for e in layers], counts, limits, nodes, smaller, range(len(layers)))
    return limits


def _plan_conv(net: model.Network, width: int, height: int, *, neurons: int, lanes: int, monitor: bool,
               fifo_depth: int, pe: PEConfig | None, window: int | None, compact: bool = False,
               balance: bool = False) -> MeshPlan:
    """plan_mesh with conv-mode layers (docs/noc.md "Mapping"). Each conv-mode layer is cut into
    :func:`_conv_tiles`; its output indices are the tiles' outputs one after the other (``out_maps``), and the
    next layer reads them: a dense layer through its weight rows permuted to that order (zero rows for indices
    that never spike), a conv-mode layer through its PEs' input maps. A PE sends to the next-layer PEs whose
    tiles some of its outputs reach (all of them for a dense next layer); the host sends each input spike only
    to the first-layer PEs it reaches. ``compact``: dense layers run as 1x1 convolutions (plan_mesh's
    ``compact_weights``)."""
    limit, n_lanes = (neurons, lanes) if pe is None else (pe.neurons, pe.lanes)
    layers, n = [], 0   # (kind, net layer emitted, conv, pool q, MeshLayer or None)
    while n < len(net.layers):
        layer = net.layers[n]
        q = _conv_mode_pool(net, n)
        if q is not None:
            pooled = n + 1 < len(net.layers) and net.layers[n + 1].kind == "maxpool2d"
            layers.append(("conv", n + pooled, layer, q, None))
            n += 1 + pooled
            continue
        ml = mesh_layers_at(net, n)
        if compact:
            if ml.pool_shift:
                raise MappingError(f"compact_weights: layers {ml.net_layer - 1}-{ml.net_layer} (a maxpool2d after a "
                                   "conv2d that does not run in conv mode) cannot run as a 1x1 convolution")
            n_in, n_out = ml.weight.shape
            as_conv = model.Conv2d(in_shape=(n_in, 1, 1), weight=ml.weight.T.reshape(n_out, n_in, 1, 1),
                                   threshold=np.asarray(ml.threshold, dtype=np.int64))
            layers.append(("conv", ml.net_layer, as_conv, 1, None))
        else:
            layers.append(("dense", ml.net_layer, None, 1, ml))
        n = ml.net_layer + 1
    # ---- slices of each layer (output index ranges), out maps ----
    per_layer = []   # per PE layer: list of (lo, hi, active, tile or None)
    out_maps, weights, thresholds, convs, pool_shifts = [], [], [], [], []
    layer_words = []   # per layer of PEs: weight SRAM words of its largest kernel slice (rows x CH_WORDS; dense 0)
    prev_map = None
    limits = _balance(net, layers, limit, n_lanes, width * height) if balance else [limit] * len(layers)
    for entry, lim in zip(layers, limits, strict=True):
        kind, net_n, conv, q, ml = entry
        if kind == "conv":
            tiles = _layer_tiles(net, entry, lim, n_lanes)
            setups = [conv_setup(conv, t, n_lanes, pool=q, threshold_bits=net.threshold_bits) for t in tiles]
            layer_words.append(max(st.kernel.shape[0] * (st.kernel.shape[1] // n_lanes) for st in setups))
            lo, entries = 0, []
            for t, st in zip(tiles, setups, strict=True):
                entries.append((lo, lo + st.outputs, st.active, (t.oc0, t.oc1, t.y0, t.x0, t.h, t.w)))
                lo += st.outputs
            per_layer.append(entries)
            out_maps.append(np.concatenate([st.out_map for st in setups]))
            oc = conv.weight.shape[0]
            weights.append(conv.weight.reshape(oc, -1).T.copy())
            thresholds.append(np.asarray(conv.threshold, dtype=np.int64))
            convs.append({"in_shape": list(conv.in_shape), "kernel": list(conv.weight.shape[2:]),
                          "stride": conv.stride, "padding": conv.padding, "pool": q})
            pool_shifts.append(0)
        else:
            w = ml.weight
            if prev_map is not None:   # rows in the previous conv-mode layer's output index order
                real = prev_map >= 0
                rows = np.zeros((len(prev_map), w.shape[1]), dtype=w.dtype)
                rows[real] = w[prev_map[real]]
                w = rows
            if 1 << ml.pool_shift > limit:
                kk = net.layers[ml.net_layer].kernel
                raise MappingError(f"layers[{ml.net_layer}]: a {kk}x{kk} pooling window needs {1 << ml.pool_shift} "
                                   f"neurons in one PE, the PE has {limit}")
            share = _share(w.shape[1], limit, max(n_lanes, 1 << ml.pool_shift))
            cnt = -(-w.shape[1] // share)
            per_layer.append([(j * share, min((j + 1) * share, w.shape[1]),
                               min((j + 1) * share, w.shape[1]) - j * share, None) for j in range(cnt)])
            out_maps.append(None)
            layer_words.append(0)
            weights.append(w)
            thresholds.append(ml.threshold)
            convs.append(None)
            pool_shifts.append(ml.pool_shift)
        prev_map = out_maps[-1]
    if compact:
        om = out_maps[-1]
        n_real = int((om >= 0).sum())
        if not np.array_equal(om[:n_real], np.arange(n_real)):   # the prediction reads output indices as neurons
            raise MappingError(f"compact_weights: the output layer ({n_real} neurons) must fit one PE of {limit} "
                               f"neurons in whole lanes")
    counts = [len(e) for e in per_layer]
    need = sum(counts)
    if need > width * height:
        parts = []
        for (kind, net_n, conv, _, ml), c in zip(layers, counts, strict=True):
            if kind == "conv":
                pooled = net.layers[net_n].kind == "maxpool2d"
                kind_n = "conv2d" if net.layers[net_n].kind == "conv2d" else f"{net.layers[net_n].kind} as a 1x1 conv"
                name = f"layers {net_n - 1}-{net_n} (conv2d + maxpool2d)" if pooled else f"layer {net_n} ({kind_n})"
                parts.append(f"{name}: {math.prod(conv.out_shape)} neurons in conv mode -> {c}")
            else:
                parts.append((f"layers {ml.net_layer - 1}-{ml.net_layer} (conv2d + maxpool2d)" if ml.pool_shift
                              else f"layer {ml.net_layer}") + f": {ml.weight.shape[1]} neurons -> {c}")
        raise MappingError(f"--mesh {width}x{height}: the network needs {need} PEs of at most {limit} neurons "
                           f"({', '.join(parts)}), the mesh has {width * height}")
    # ---- who sends to whom ----
    def emitted(k, lo, hi):   # network neurons (of the layer PE layer k emits) behind output indices lo .. hi - 1
        m = out_maps[k]
        if m is None:
            sh = pool_shifts[k]
            return np.arange(lo >> sh, -(-hi >> sh) if sh else hi)
        part = m[lo:hi]
        return part[part >= 0]

    senders = []   # per PE layer, per slice: indices of the source slices (layer k - 1)
    for k, entries in enumerate(per_layer):
        if k == 0:
            senders.append([[] for _ in entries])
            continue
        if layers[k][0] == "conv":
            conv = layers[k][2]
            srcs = [emitted(k - 1, lo, hi) for lo, hi, _, _ in per_layer[k - 1]]
            row = []
            for _, _, _, tile in entries:
                reach = conv_reach(conv, ConvTile(*tile))
                got = [j for j, e in enumerate(srcs) if reach[e].any()]
                row.append(got or list(range(len(srcs))))
            senders.append(row)
        else:
            senders.append([list(range(counts[k - 1])) for _ in entries])
    nodes = [(x, y) for y in range(height) for x in range(width)]
    layer_nodes, j = [], 0
    for c in counts:
        layer_nodes.append(nodes[j:j + c])
        j += c
    dests = [[[] for _ in e] for e in per_layer]
    for k in range(1, len(per_layer)):
        for r, got in enumerate(senders[k]):
            for j in got:
                dests[k - 1][j].append((*layer_nodes[k][r], 0))
    last = len(per_layer) - 1
    sources = [[1] * counts[0]] + [[len(g) for g in senders[k]] for k in range(1, len(per_layer))]
    out_idx = [[(lo >> pool_shifts[k], hi >> pool_shifts[k]) if layers[k][0] == "dense" else (lo, hi)
                for lo, hi, _, _ in e] for k, e in enumerate(per_layer)]
    if pe is None:
        per_pe = max(a for e in per_layer for _, _, a, _ in e)
        max_sources = max(max(x) for x in sources)
        ahead = (window if window is not None else 0) + len(per_layer) - 1
        fan = [(len(g) - 1, max(out_idx[k - 1][j][1] - out_idx[k - 1][j][0] for j in g))
               for k in range(1, len(per_layer)) for g in senders[k] if len(g) > 1]
        defer = max(8, max((a * (ahead + o) for a, o in fan), default=0) + 2)
        if window is not None and defer > MAX_DEFER_DEPTH:
            fit = min((MAX_DEFER_DEPTH - 2) // a - o for a, o in fan) - (len(per_layer) - 1)
            raise MappingError(f"window: {window} needs defer FIFOs of {defer} entries, above the PE limit of "
                               f"{MAX_DEFER_DEPTH}; " + (f"the largest window this mapping allows is {fit}"
                                                         if fit >= 1 else "no window fits this mapping"))
        conv_layers = [c for kind, _, c, _, _ in layers if kind == "conv"]
        in_sizes = [len(out_maps[k - 1]) if k and out_maps[k - 1] is not None else
                    math.prod(layers[k][2].in_shape) for k in range(len(layers)) if layers[k][0] == "conv"]
        size = max(max(*c.in_shape[1:], *c.out_shape[1:]) for c in conv_layers)
        kernel = max(max(*c.weight.shape[2:], c.padding) for c in conv_layers)
        rows = max(max(w.shape[0] for w in weights),
                   max(hi for e in out_idx for _, hi in e))
        try:
            pe = pe_config(net, lanes=lanes, neurons=per_pe, fan_in=rows, defer_depth=defer,
                           max_sources=max_sources, conv_inputs=max(in_sizes), conv_size=size, conv_kernel=kernel,
                           weight_depth=max(layer_words) if compact else 0, cfg_stream=True)
        except ValueError as e:
            raise MappingError(f"PE: {e}") from None
    if not pe.conv:
        raise MappingError("PE: the plan has conv-mode layers, the PE has no conv mode (conv_inputs = 0)")
    for k, (kind, net_n, conv, _, _) in enumerate(layers):
        w = weights[k]
        if w.shape[0] > pe.fan_in:
            raise MappingError(f"layers[{net_n}]: {'kernel rows' if kind == 'conv' else 'fan-in'} {w.shape[0]} "
                               f"needed, the PE has {pe.fan_in} weight rows")
        n_out = max(hi for _, hi in out_idx[k])
        if n_out > 1 << pe.index_bits:
            raise MappingError(f"layers[{net_n}]: {n_out} neuron indices needed, events carry "
                               f"{pe.index_bits} index bits ({1 << pe.index_bits} values)")
        if kind == "dense" and w.shape[0] * pe.words > pe.weight_words:
            raise MappingError(f"layers[{net_n}]: the dense mode needs {w.shape[0]} x {pe.words} weight SRAM words, "
                               f"the PE has {pe.weight_words} (weight_depth; plan with compact_weights)")
        if kind == "conv":
            if layer_words[k] > pe.weight_words:
                raise MappingError(f"layers[{net_n}]: a kernel slice needs {layer_words[k]} weight SRAM words, the "
                                   f"PE has {pe.weight_words}")
            n_in = len(out_maps[k - 1]) if k and out_maps[k - 1] is not None else math.prod(conv.in_shape)
            if n_in > pe.conv_inputs:
                raise MappingError(f"layers[{net_n}]: {n_in} input map entries needed, the PE has "
                                   f"{pe.conv_inputs}")
            if max(*conv.in_shape[1:], *conv.out_shape[1:]) > pe.conv_size:
                raise MappingError(f"layers[{net_n}]: maps of {max(*conv.in_shape[1:], *conv.out_shape[1:])} "
                                   f"rows or columns needed, the PE's conv mode has {pe.conv_size}")
        if max(a for _, _, a, _ in per_layer[k]) > pe.neurons:
            raise MappingError(f"layers[{net_n}]: {max(a for _, _, a, _ in per_layer[k])} neurons per PE needed, "
                               f"the PE has {pe.neurons}")
    if (net.weight_bits, net.time_bits) != (pe.weight_bits, pe.time_bits) or net.threshold_bits > pe.threshold_bits:
        raise MappingError(f"PE: widths weight/time/threshold {pe.weight_bits}/{pe.time_bits}/{pe.threshold_bits} "
                           f"do not match the network's {net.weight_bits}/{net.time_bits}/{net.threshold_bits}")
    all_dests = [[tuple(d) + (((0, 0, 1),) if monitor or k == last else ()) for d in dk]
                 for k, dk in enumerate(dests)]
    try:
        noc = noc_config(pe, width, height, fifo_depth=fifo_depth,
                         max_dests=max(len(d) for dk in all_dests for d in dk))
    except ValueError as e:
        raise MappingError(f"mesh: {e}") from None
    if window is not None and not monitor:
        raise MappingError("window: the run-ahead window needs monitor=True (the host must see every PE's markers)")
    if max(max(x) for x in sources) > pe.max_sources:
        raise MappingError(f"PE: {max(max(x) for x in sources)} sources needed, the PE counts up to "
                           f"{pe.max_sources}")
    slices = [Slice(layer=k, node=layer_nodes[k][j], lo=lo, hi=hi, sources=sources[k][j], dests=all_dests[k][j],
                    tile=tile)
              for k, e in enumerate(per_layer) for j, (lo, hi, _, tile) in enumerate(e)]
    assert done_layout(noc).size <= noc.payload_bits
    return MeshPlan(pe=pe, noc=noc, slices=tuple(slices), weights=tuple(weights), thresholds=tuple(thresholds),
                    t_end=net.t_end, monitor=monitor, window=window, pool_shifts=tuple(pool_shifts),
                    net_layers=tuple(x[1] for x in layers), convs=tuple(convs), out_maps=tuple(out_maps))


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

    def pe_config(self, net: model.Network, *, lanes: int = 4, **kwargs) -> PEConfig:
        """The smallest PE that holds every layer at once; ``kwargs``: other PEConfig fields."""
        return pe_config(net, lanes=lanes, neurons=self.neurons, fan_in=self.rows, **kwargs)

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

