"""Host driver of the board protocol (docs/fpga.md). The same code talks to a board over a serial port
(``serial.Serial``, the optional ``fpga`` extra) and to the simulated top (:class:`fpga.sim.SimTransport`).

A transport is any object with ``write(bytes)`` and ``read(n) -> bytes`` (returning fewer bytes on timeout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.golden import conv_as_dense
from model.network import Conv2d, Dense, Network
from rtl import layouts as L
from rtl.config import PEConfig

from .protocol import MAX_PAYLOAD, NO_PREDICTION, SYNC_RESP, Cmd, ProtocolLayout, Status, crc8, request

__all__ = ["LinkError", "BoardError", "RunResult", "HostLink", "Placement", "Inference", "load_network", "infer",
           "open_serial", "load_mesh", "infer_mesh"]


class LinkError(RuntimeError):
    """No valid response: timeout, bad sync byte, CRC mismatch or a response to another command."""


class BoardError(RuntimeError):
    """The board answered with a status other than OK."""

    def __init__(self, cmd: Cmd, status: int):
        self.cmd, self.status = cmd, status
        name = Status(status).name if status in Status._value2member_map_ else f"0x{status:02x}"
        super().__init__(f"{cmd.name}: board answered {name}")


@dataclass(frozen=True)
class RunResult:
    """One RUN: cycles from START to the last STEP_END(t_end), the board's prediction (None: all silent),
    the output spikes (index, time) in arrival order, and whether the output buffer overflowed."""

    cycles: int
    prediction: int | None
    spikes: tuple[tuple[int, int], ...]
    overflow: bool


class HostLink:
    """Request/response client of the protocol over ``port`` (a pyserial-like transport)."""

    def __init__(self, port):
        self.port = port
        self._layout: ProtocolLayout | None = None

    def transact(self, cmd: Cmd, payload: bytes = b"", *, ok=(Status.OK,)) -> tuple[int, bytes]:
        self.port.write(request(cmd, payload))
        for _ in range(64):   # skip stray bytes before the sync byte
            b = self.port.read(1)
            if not b:
                raise LinkError(f"{cmd.name}: no response (timeout)")
            if b[0] == SYNC_RESP:
                break
        else:
            raise LinkError(f"{cmd.name}: no sync byte 0x{SYNC_RESP:02x} in 64 bytes")
        head = self.port.read(4)
        if len(head) != 4:
            raise LinkError(f"{cmd.name}: response header cut short ({len(head)} of 4 bytes)")
        n = int.from_bytes(head[2:4], "little")
        rest = self.port.read(n + 1)
        if len(rest) != n + 1:
            raise LinkError(f"{cmd.name}: response cut short ({len(rest)} of {n + 1} bytes)")
        if crc8(head + rest[:-1]) != rest[-1]:
            raise LinkError(f"{cmd.name}: response CRC mismatch")
        if head[0] != cmd:
            raise LinkError(f"{cmd.name}: response to command 0x{head[0]:02x}")
        if head[1] not in ok:
            raise BoardError(cmd, head[1])
        return head[1], rest[:-1]

    @property
    def layout(self) -> ProtocolLayout:
        if self._layout is None:
            self._layout = self.info()
        return self._layout

    def info(self) -> ProtocolLayout:
        _, payload = self.transact(Cmd.INFO)
        self._layout = ProtocolLayout.from_info(payload)
        return self._layout

    def cfg(self, words) -> None:
        """Write configuration words (integers of ``cfg_bits`` bits)."""
        nb = self.layout.cfg_bytes
        per = MAX_PAYLOAD // nb
        words = list(words)
        for k in range(0, len(words), per):
            self.transact(Cmd.CFG, b"".join(int(w).to_bytes(nb, "little") for w in words[k:k + per]))

    def weights(self, row: int, neuron: int, values) -> None:
        """Write ``values`` as the weights of input ``row`` to neurons ``neuron, neuron + 1, ...``."""
        nb, wb = self.layout.weight_bytes, self.layout.weight_bits
        per = (MAX_PAYLOAD - 4) // nb
        values = [int(v) for v in values]
        for k in range(0, len(values), per):
            body = b"".join((v & ((1 << wb) - 1)).to_bytes(nb, "little") for v in values[k:k + per])
            self.transact(Cmd.WEIGHTS, row.to_bytes(2, "little") + (neuron + k).to_bytes(2, "little") + body)

    def spikes(self, spikes) -> None:
        """Append input spikes ``(index, time)`` (time-sorted) to the board's input buffer."""
        lay = self.layout
        per = MAX_PAYLOAD // lay.in_bytes
        spikes = list(spikes)
        for k in range(0, len(spikes), per):
            self.transact(Cmd.SPIKES, b"".join(lay.pack_spike(i, t) for i, t in spikes[k:k + per]))

    def words(self, words) -> None:
        """Append raw input words (mesh: flits, ``in_bits`` each) to the board's input buffer."""
        nb = self.layout.in_bytes
        per = MAX_PAYLOAD // nb
        words = list(words)
        for k in range(0, len(words), per):
            self.transact(Cmd.SPIKES, b"".join(int(w).to_bytes(nb, "little") for w in words[k:k + per]))

    def run(self, t_end: int, *, completions: int | None = None, pred_node: int | None = None) -> RunResult:
        """RUN; a mesh also needs ``completions`` (flits that end the run) and ``pred_node``."""
        payload = t_end.to_bytes(2, "little")
        if completions is not None:
            payload += completions.to_bytes(2, "little") + pred_node.to_bytes(2, "little")
        return self._result(*self.transact(Cmd.RUN, payload, ok=(Status.OK, Status.OUTPUT_FULL)))

    def result(self) -> RunResult:
        return self._result(*self.transact(Cmd.RESULT, ok=(Status.OK, Status.OUTPUT_FULL)))

    def _result(self, status: int, payload: bytes) -> RunResult:
        lay = self.layout
        cycles = int.from_bytes(payload[0:4], "little")
        pred = int.from_bytes(payload[4:6], "little")
        count = int.from_bytes(payload[6:8], "little")
        sb = lay.spike_bytes
        if len(payload) != 8 + count * sb:
            raise LinkError(f"RUN: result of {len(payload)} bytes does not hold {count} spikes")
        spikes = tuple(lay.unpack_spike(payload[8 + k * sb: 8 + (k + 1) * sb]) for k in range(count))
        return RunResult(cycles=cycles, prediction=None if pred == NO_PREDICTION else pred, spikes=spikes,
                         overflow=status == Status.OUTPUT_FULL)


def _dense_of(layer) -> tuple[np.ndarray, np.ndarray]:
    """(weight (in, out), threshold (out,)) of a dense or conv2d layer (conv2d as its equivalent dense)."""
    if isinstance(layer, Dense):
        return np.asarray(layer.weight, dtype=np.int64), np.asarray(layer.threshold, dtype=np.int64)
    if isinstance(layer, Conv2d):
        oh_ow = layer.out_shape[1] * layer.out_shape[2]
        return conv_as_dense(layer).astype(np.int64), np.repeat(layer.threshold, oh_ow).astype(np.int64)
    raise ValueError(f"layers: {layer.kind} layers do not run on the PE (only dense and conv2d)")


@dataclass(frozen=True)
class Placement:
    """Where each layer of a network lives in one PE: layer ``l`` uses weight rows ``row_base[l] ..
    row_base[l] + fan_in_l - 1`` and neurons ``neuron_base[l] .. neuron_base[l] + n_out_l - 1``."""

    fan_ins: tuple[int, ...]
    n_outs: tuple[int, ...]

    @classmethod
    def of(cls, net: Network) -> Placement:
        fan_ins, n_outs = [], []
        for layer in net.layers:
            w, _ = _dense_of(layer)
            fan_ins.append(w.shape[0])
            n_outs.append(w.shape[1])
        return cls(tuple(fan_ins), tuple(n_outs))

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

    def pe_config(self, net: Network, *, lanes: int = 4) -> PEConfig:
        """The smallest PE that holds every layer at once."""
        return PEConfig(neurons=math.ceil(self.neurons / lanes) * lanes, fan_in=self.rows, lanes=lanes,
                        weight_bits=net.weight_bits, time_bits=net.time_bits, threshold_bits=net.threshold_bits)


def _check_geometry(lay: ProtocolLayout, net: Network, placement: Placement):
    cfg_index_max = (1 << lay.index_bits) - 1
    problems = [("input buffer (in_depth)", placement.max_spikes_in, lay.in_depth),
                ("output buffer (out_depth)", placement.max_spikes_out, lay.out_depth),
                ("weight rows (index)", placement.rows - 1, cfg_index_max),
                ("neurons (index)", placement.neurons - 1, cfg_index_max)]
    for name, need, have in problems:
        if need > have:
            raise ValueError(f"{name}: the network needs {need}, the board has {have}")
    if net.time_bits != lay.time_bits or net.weight_bits != lay.weight_bits:
        raise ValueError(f"time_bits/weight_bits: network {net.time_bits}/{net.weight_bits}, board "
                         f"{lay.time_bits}/{lay.weight_bits}")


def load_network(link: HostLink, net: Network, placement: Placement | None = None, *, pe: PEConfig,
                 skip_zero_rows: bool = False) -> None:
    """Write registers, thresholds and every weight (zeros between layer blocks included) of ``net``.

    ``pe`` is the PE configuration the board was built with (it fixes the configuration word layout).
    ``skip_zero_rows`` writes only each row's layer block (the zeros around it are not written): only valid
    when the weight memory is known to be all zero, as in a fresh simulation (speeds up latency runs).
    """
    placement = placement or Placement.of(net)
    _check_geometry(link.layout, net, placement)
    if placement.rows > pe.fan_in or placement.neurons > pe.neurons:
        raise ValueError(f"network: needs {placement.rows} weight rows x {placement.neurons} neurons, the PE "
                         f"has {pe.fan_in} x {pe.neurons}")
    from verif.driver import pack

    lay = L.cfg_layout(pe)
    words = [pack(lay, target=L.CfgTarget.REG, row=L.Reg.ACTIVE.value, data=placement.neurons),
             pack(lay, target=L.CfgTarget.REG, row=L.Reg.NEURON_BASE.value, data=0),
             pack(lay, target=L.CfgTarget.REG, row=L.Reg.SOURCES.value, data=1),
             pack(lay, target=L.CfgTarget.REG, row=L.Reg.T_END.value, data=net.t_end)]
    big = np.zeros((placement.rows, placement.neurons), dtype=np.int64)
    for layer, r0, n0 in zip(net.layers, placement.row_base, placement.neuron_base, strict=True):
        w, th = _dense_of(layer)
        big[r0:r0 + w.shape[0], n0:n0 + w.shape[1]] = w
        words += [pack(lay, target=L.CfgTarget.THRESHOLD, neuron=n0 + j, data=int(th[j])) for j in range(len(th))]
    link.cfg(words)
    if skip_zero_rows:
        for layer, r0, n0 in zip(net.layers, placement.row_base, placement.neuron_base, strict=True):
            w, _ = _dense_of(layer)
            for r in range(w.shape[0]):
                nz = np.flatnonzero(w[r])
                if nz.size:
                    link.weights(r0 + r, n0 + int(nz[0]), w[r, nz[0]:nz[-1] + 1])
        return
    for r in range(placement.rows):
        link.weights(r, 0, big[r])


@dataclass(frozen=True)
class Inference:
    """Spike times of every layer (NO_SPIKE = silent), the board's prediction (-1: all outputs silent) and
    the accelerator cycles of each layer's RUN."""

    times: tuple[np.ndarray, ...]
    prediction: int
    cycles: tuple[int, ...]

    @property
    def total_cycles(self) -> int:
        return sum(self.cycles)


def infer(link: HostLink, net: Network, input_times, placement: Placement | None = None) -> Inference:
    """One inference, layer by layer: each RUN's output spikes become the next layer's input spikes."""
    placement = placement or Placement.of(net)
    t = np.asarray(input_times, dtype=np.int64).reshape(-1)
    if t.shape != (net.n_inputs,):
        raise ValueError(f"input_times: expected {net.n_inputs} values, got {t.size}")
    times, cycles, pred = [], [], None
    for r0, n0, n_out in zip(placement.row_base, placement.neuron_base, placement.n_outs, strict=True):
        order = np.argsort(t, kind="stable")
        link.spikes((r0 + int(i), int(t[i])) for i in order if t[i] <= net.t_end)
        res = link.run(net.t_end)
        if res.overflow:
            raise LinkError(f"RUN: more output spikes than the board's output buffer ({link.layout.out_depth})")
        out = np.full(n_out, net.no_spike, dtype=np.int64)
        for index, time in res.spikes:
            j = index - n0
            if not 0 <= j < n_out:
                raise LinkError(f"RUN: spike of neuron {index} outside the layer's neurons {n0}..{n0 + n_out - 1}")
            if out[j] != net.no_spike:
                raise LinkError(f"RUN: neuron {index} spiked twice")
            out[j] = time
        times.append(out)
        cycles.append(res.cycles)
        pred = -1 if res.prediction is None else res.prediction - n0
        t = out
    return Inference(times=tuple(times), prediction=pred, cycles=tuple(cycles))


def open_serial(port: str, baud: int = 1_000_000, timeout: float = 2.0):
    """A board's serial port as a transport for :class:`HostLink` (needs the ``fpga`` extra: pyserial)."""
    try:
        import serial
    except ImportError:
        raise RuntimeError("open_serial: pyserial is not installed (pip install 'yoso-relpsp[fpga]')") from None
    return serial.Serial(port, baudrate=baud, timeout=timeout)


# ---- the mesh (rtl/mesh.py, rtl/mapping.py) ----

def load_mesh(link: HostLink, mapping) -> None:
    """Send the mapper's configuration flits (network interfaces, PE registers, thresholds, weights)."""
    lay = link.layout
    if not lay.node_bits:
        raise ValueError("load_mesh: the board holds one PE, not a mesh (INFO node_bits = 0)")
    link.cfg(mapping.config_flits())


def infer_mesh(link: HostLink, mapping, input_times) -> Inference:
    """One inference on the mesh: the mapper's image flits are buffered on the board and replayed by RUN;
    the output spikes carry their node, which tells the layers apart."""
    lay = link.layout
    net = mapping.net
    flits = mapping.image_flits(np.asarray(input_times, dtype=np.int64).reshape(-1))
    if len(flits) > lay.in_depth:
        raise ValueError(f"input buffer (in_depth): the image needs {len(flits)} flits, the board has {lay.in_depth}")
    link.words(flits)
    width = mapping.noc.width
    last = mapping.n_layers - 1
    pred_node = min(p.node[1] * width + p.node[0] for p in mapping.layer_pes(last))
    res = link.run(net.t_end, completions=len(mapping.placements) + mapping.n_reporting, pred_node=pred_node)
    if res.overflow:
        raise LinkError(f"RUN: more output spikes than the board's output buffer ({lay.out_depth})")
    xb = mapping.noc.x_bits
    by_node = {p.node: p for p in mapping.placements}
    times = [np.full(w.shape[1], net.no_spike, dtype=np.int64) for w in mapping.weights]
    for index, time, node in res.spikes:
        xy = (node & ((1 << xb) - 1), node >> xb)
        p = by_node.get(xy)
        if p is None or not p.lo <= index < p.hi:
            raise LinkError(f"RUN: spike of neuron {index} from node {xy}, which does not hold it")
        if times[p.layer][index] != net.no_spike:
            raise LinkError(f"RUN: layer {p.layer} neuron {index} spiked twice")
        times[p.layer][index] = time
    return Inference(times=tuple(times), prediction=-1 if res.prediction is None else res.prediction,
                     cycles=(res.cycles,))
