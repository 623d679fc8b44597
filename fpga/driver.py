"""Host driver of the board protocol (docs/fpga.md). The same code talks to a board over a serial port
(``serial.Serial``, the optional ``fpga`` extra) and to the simulated top (:class:`fpga.sim.SimTransport`).

A transport is any object with ``write(bytes)`` and ``read(n) -> bytes`` (returning fewer bytes on timeout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from host.codec import StreamCheck
from host.plan import MeshPlan, StackPlan
from model.network import Network
from rtl.config import PEConfig

from .protocol import MAX_PAYLOAD, NO_PREDICTION, SYNC_RESP, Cmd, ProtocolLayout, Status, crc8, request

__all__ = ["LinkError", "BoardError", "RunResult", "HostLink", "Inference", "load_network", "infer",
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
        """Write ``values`` as the weights of input ``row`` to neurons ``neuron, neuron + 1, ...`` (``neuron`` a
        multiple of the board's ``cfg_weights``), ``cfg_weights`` weights per WEIGHTS entry; the last entry is
        filled with zeros (those neurons' weights of this row become 0)."""
        lay = self.layout
        nb, wb, lanes = lay.weight_bytes, lay.weight_bits, lay.cfg_weights
        if neuron % lanes:
            raise ValueError(f"weights: neuron {neuron} is not a multiple of the board's cfg_weights ({lanes})")
        values = [int(v) for v in values]
        values += [0] * (-len(values) % lanes)
        entries = [sum((v & ((1 << wb) - 1)) << (j * wb) for j, v in enumerate(values[k:k + lanes]))
                   for k in range(0, len(values), lanes)]
        per = (MAX_PAYLOAD - 4) // nb
        for k in range(0, len(entries), per):
            body = b"".join(e.to_bytes(nb, "little") for e in entries[k:k + per])
            self.transact(Cmd.WEIGHTS, row.to_bytes(2, "little") + (neuron + k * lanes).to_bytes(2, "little")
                          + body)

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

    def run(self, t_end: int, *, completions: int | None = None, pred_node: int | None = None,
            pe_nodes: int | None = None, window: int | None = None, early_exit: bool = False) -> RunResult:
        """RUN; a mesh also needs ``completions`` (flits that end the run), ``pred_node``, ``pe_nodes``, the
        run-ahead ``window`` (None: none) and ``early_exit`` (fpga.protocol.Cmd.RUN)."""
        payload = t_end.to_bytes(2, "little")
        if completions is not None:
            payload += b"".join(int(v).to_bytes(2, "little") for v in
                                (completions, pred_node, pe_nodes, window or 0, int(early_exit)))
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


def _check_geometry(lay: ProtocolLayout, net: Network, placement: StackPlan):
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


def load_network(link: HostLink, net: Network, placement: StackPlan | None = None, *, pe: PEConfig,
                 skip_zero_rows: bool = False) -> None:
    """Write registers, thresholds and every weight (zeros between layer blocks included) of ``net``.

    ``pe`` is the PE configuration the board was built with (it fixes the configuration word layout).
    ``skip_zero_rows`` writes only each row's layer block (the zeros around it are not written): only valid
    when the weight memory is known to be all zero, as in a fresh simulation (speeds up latency runs).
    """
    placement = placement or StackPlan.of(net)
    _check_geometry(link.layout, net, placement)
    words, big = placement.config_words(net, pe)
    link.cfg(words)
    if skip_zero_rows:
        for r in range(placement.rows):
            nz = np.flatnonzero(big[r])
            if nz.size:
                lo = int(nz[0]) - int(nz[0]) % link.layout.cfg_weights   # whole WEIGHTS entries
                link.weights(r, lo, big[r, lo:nz[-1] + 1])
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
    #: Early exit on a mesh: the step at which the prediction was decided (None: ran to completion).
    decided: int | None = None

    @property
    def total_cycles(self) -> int:
        return sum(self.cycles)


def infer(link: HostLink, net: Network, input_times, placement: StackPlan | None = None) -> Inference:
    """One inference, layer by layer: each RUN's output spikes become the next layer's input spikes. The
    output spikes are checked as every output stream is (host.codec.StreamCheck: ProtocolError)."""
    placement = placement or StackPlan.of(net)
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
        check = StreamCheck(out, lo=n0, no_spike=net.no_spike, name="the PE")
        for k, (index, time) in enumerate(res.spikes):
            check.spike(index, time, f"RUN spike {k}")
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


# ---- the mesh (rtl/mesh.py, host/plan.py) ----

def load_mesh(link: HostLink, plan: MeshPlan) -> None:
    """Send the plan's configuration flits (network interfaces, PE registers, thresholds, weights)."""
    lay = link.layout
    if not lay.node_bits:
        raise ValueError("load_mesh: the board holds one PE, not a mesh (INFO node_bits = 0)")
    link.cfg(plan.config_flits())


def infer_mesh(link: HostLink, plan: MeshPlan, input_times, *, early_exit: bool = False) -> Inference:
    """One inference on the mesh: the plan's image flits are buffered on the board and replayed by RUN under
    the plan's run-ahead window; the output spikes carry their node, which tells the layers apart (checked by
    host.codec.StreamCheck). ``early_exit``: the board ends the run once the prediction is decided (the spikes
    seen until then come back; ``Inference.decided`` is the decision step)."""
    lay = link.layout
    flits = plan.image_flits(np.asarray(input_times, dtype=np.int64).reshape(-1))
    if len(flits) > lay.in_depth:
        raise ValueError(f"input buffer (in_depth): the image needs {len(flits)} flits, the board has {lay.in_depth}")
    link.words(flits)
    res = link.run(plan.t_end, completions=plan.completions, pred_node=plan.pred_node, pe_nodes=len(plan.slices),
                   window=plan.window, early_exit=early_exit)
    if res.overflow:
        raise LinkError(f"RUN: more output spikes than the board's output buffer ({lay.out_depth})")
    xb = plan.noc.x_bits
    times = [np.full(plan.outputs(n), plan.no_spike, dtype=np.int64) for n in range(plan.n_layers)]
    checks = {s.node: StreamCheck(times[s.layer][lo:hi], lo=lo, no_spike=plan.no_spike, name=f"node {s.node}")
              for s in plan.slices for lo, hi in [plan.out_range(s)]}
    for k, (index, time, node) in enumerate(res.spikes):
        xy = (node & ((1 << xb) - 1), node >> xb)
        if xy not in checks:
            raise LinkError(f"RUN: spike {k} from node {xy}, which holds no PE of this plan")
        checks[xy].spike(index, time, f"RUN spike {k}")
    pred = -1 if res.prediction is None else res.prediction
    decided = None
    if early_exit and pred >= 0:
        decided = int(times[-1][pred])   # the decision step is the earliest output spike's
    # Per network layer: None for a conv2d layer pooled inside its PEs (they emit the pooled times).
    return Inference(times=plan.by_net_layer(times), prediction=pred, cycles=(res.cycles,), decided=decided)
