"""The accelerator side of the protocol engine: what RUN does for one PE and for the mesh. The command
controller (fpga/engine.py) is the same for both; it hands each back end configuration words, the buffered
input words of a run and the run's parameters, and takes back the output spikes and the end of the run.

Interface (controller side) of both back ends
---------------------------------------------
cmd_cfg : In(stream of cfg_bits)        configuration words (CFG)
run : In(stream of run_layout)          start a run: ``t_end``, ``n_words`` and the back end's ``run_params``
words : In(stream of in_word_bits)      the run's buffered input words, in order
running : In(1)                         the controller's run flag (cleared on ``finish``)
finish : Out(1)                         the run is over (its last output arrived, or early exit)
spike : Out(stream of spike_bits, always ready)   an output spike: index, time, then (mesh) the sending node
counts : Out(1)                         that spike counts for the prediction (an output-layer spike)
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl import layouts as L
from rtl.config import PEConfig
from rtl.noc_layouts import FlitKind, NocConfig, flit_layout

from .protocol import ProtocolLayout

__all__ = ["PEBackend", "MeshBackend"]


def _common(cfg_bits: int, in_bits: int, spike_bits: int, run_layout) -> dict:
    return {"cmd_cfg": In(stream.Signature(unsigned(cfg_bits))), "run": In(stream.Signature(run_layout)),
            "words": In(stream.Signature(unsigned(in_bits))), "running": In(1), "finish": Out(1),
            "spike": Out(stream.Signature(unsigned(spike_bits), always_ready=True)), "counts": Out(1)}


class PEBackend(wiring.Component):
    """One PE that runs the layers in turn (docs/fpga.md). RUN sends START, then for every step t = 0 ..
    t_end the buffered spikes of step t and one STEP_END(t); the run ends with the PE's STEP_END(t_end).
    WEIGHTS words (``cmd_weight``) become WEIGHT configuration words.

    Accelerator ports: cfg : Out(stream of layouts.cfg_layout), i : Out(stream of layouts.event_layout),
    o : In(stream of layouts.event_layout) (always accepted).
    """

    run_params = ()
    has_weights = True
    accelerator_ports = ("cfg", "i", "o")

    def __init__(self, config: PEConfig):
        self._config = c = config
        self._cfg_bits = L.cfg_layout(c).size
        self._in_bits = c.index_bits + c.time_bits
        run = data.StructLayout({"t_end": unsigned(16), "n_words": unsigned(16)})
        super().__init__({
            **_common(self._cfg_bits, self._in_bits, c.index_bits + c.time_bits, run),
            # row and neuron as wide as the WEIGHT configuration word's fields (the PE's input and neuron index).
            "cmd_weight": In(stream.Signature(data.StructLayout({
                "row": L.cfg_layout(c)["row"].shape, "neuron": L.cfg_layout(c)["neuron"].shape,
                "data": unsigned(c.cfg_weights * c.weight_bits)}))),
            "cfg": Out(stream.Signature(L.cfg_layout(c))),
            "i": Out(stream.Signature(L.event_layout(c))),
            "o": In(stream.Signature(L.event_layout(c))),
        })

    def layout(self, *, in_depth: int, out_depth: int) -> ProtocolLayout:
        c = self._config
        return ProtocolLayout(index_bits=c.index_bits, time_bits=c.time_bits, cfg_bits=self._cfg_bits,
                              weight_bits=c.weight_bits, in_depth=in_depth, out_depth=out_depth,
                              cfg_weights=c.cfg_weights)

    def word_time(self, word):
        """The time of a buffered input word (SPIKES must not go back in time)."""
        c = self._config
        return word[c.index_bits:c.index_bits + c.time_bits]

    def elaborate(self, platform):
        m = Module()
        c = self._config
        ib, tb = c.index_bits, c.time_bits

        # Configuration: CFG words as they are, WEIGHTS words as WEIGHT writes (never both at once).
        w = self.cmd_weight.payload
        with m.If(self.cmd_weight.valid):
            m.d.comb += [self.cfg.valid.eq(1), self.cfg.payload.target.eq(L.CfgTarget.WEIGHT),
                         self.cfg.payload.row.eq(w.row), self.cfg.payload.neuron.eq(w.neuron),
                         self.cfg.payload.data.eq(w.data), self.cmd_weight.ready.eq(self.cfg.ready)]
        with m.Else():
            m.d.comb += [self.cfg.valid.eq(self.cmd_cfg.valid), self.cfg.payload.as_value().eq(self.cmd_cfg.payload),
                         self.cmd_cfg.ready.eq(self.cfg.ready)]

        # Output: spikes to the controller; the run ends with STEP_END(t_end).
        t_end = Signal(tb)
        o = self.o.payload
        m.d.comb += [self.o.ready.eq(1), self.spike.valid.eq(self.o.valid & (o.kind == L.EventKind.SPIKE)),
                     self.spike.payload.eq(Cat(o.index, o.time)), self.counts.eq(1),
                     self.finish.eq(self.o.valid & (o.kind == L.EventKind.STEP_END) & (o.time == t_end))]

        # Replay: START, then the words with every step's STEP_END inserted, then the remaining STEP_ENDs.
        cur_t = Signal(tb + 1)
        n, k = Signal(16), Signal(16)
        m.d.comb += self.i.payload.as_value().eq(0)

        def emit(kind, index=0, time=0):
            m.d.comb += [self.i.valid.eq(1), self.i.payload.kind.eq(kind), self.i.payload.index.eq(index),
                         self.i.payload.time.eq(time)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.run.valid):
                    emit(L.EventKind.START)
                    m.d.comb += self.run.ready.eq(self.i.ready)
                    with m.If(self.i.ready):
                        m.d.sync += [t_end.eq(self.run.payload.t_end), n.eq(self.run.payload.n_words), k.eq(0),
                                     cur_t.eq(0)]
                        m.next = "FEED"
            with m.State("FEED"):
                s_index, s_time = self.words.payload[:ib], self.words.payload[ib:ib + tb]
                with m.If(k == n):
                    m.next = "TAIL"
                with m.Elif(self.words.valid):
                    with m.If(s_time != cur_t):
                        emit(L.EventKind.STEP_END, time=cur_t)
                        with m.If(self.i.ready):
                            m.d.sync += cur_t.eq(cur_t + 1)
                    with m.Else():
                        emit(L.EventKind.SPIKE, index=s_index, time=s_time)
                        m.d.comb += self.words.ready.eq(self.i.ready)
                        with m.If(self.i.ready):
                            m.d.sync += k.eq(k + 1)
            with m.State("TAIL"):
                emit(L.EventKind.STEP_END, time=cur_t)
                with m.If(self.i.ready):
                    m.d.sync += cur_t.eq(cur_t + 1)
                    with m.If(cur_t == t_end):
                        m.next = "IDLE"
        return m


class MeshBackend(wiring.Component):
    """The mesh of rtl/mesh.py at its host port. CFG words and the run's words are whole flits. RUN replays
    the words under the run-ahead window (a flit of step s waits until every PE node has sent STEP_END(s -
    window); STARTs never wait; window 0: no gating) and ends after ``completions`` DONE / STEP_END(t_end)
    flits, or, with ``early_exit``, once every output-layer node (``>= pred_node``) has closed the step of the
    earliest output spike: ``abort`` is then raised for one cycle (host.runner does the same in simulation).

    Accelerator ports: host_i : Out(stream of flit_layout), host_o : In(stream of flit_layout) (always
    accepted), abort : Out(1).
    """

    run_params = ("completions", "pred_node", "pe_nodes", "window", "early_exit")
    has_weights = False
    accelerator_ports = ("host_i", "host_o", "abort")

    def __init__(self, config: PEConfig, noc: NocConfig):
        self._config, self._noc = config, noc
        flit = flit_layout(noc)
        self._flit_bits = flit.size
        run = data.StructLayout({"t_end": unsigned(16), "n_words": unsigned(16),
                                 **{p: unsigned(16) for p in self.run_params}})
        super().__init__({
            **_common(flit.size, flit.size, config.index_bits + config.time_bits + noc.x_bits + noc.y_bits, run),
            "host_i": Out(stream.Signature(flit)), "host_o": In(stream.Signature(flit)), "abort": Out(1),
        })

    def layout(self, *, in_depth: int, out_depth: int) -> ProtocolLayout:
        c, noc = self._config, self._noc
        return ProtocolLayout(index_bits=c.index_bits, time_bits=c.time_bits, cfg_bits=self._flit_bits,
                              weight_bits=c.weight_bits, in_depth=in_depth, out_depth=out_depth,
                              node_bits=noc.x_bits + noc.y_bits, in_bits=self._flit_bits,
                              cfg_weights=c.cfg_weights)

    def word_time(self, word):
        """Flits are replayed as they are: no time order to check."""
        return Const(0, self._config.time_bits)

    def elaborate(self, platform):
        m = Module()
        c, noc = self._config, self._noc
        tb = c.time_bits
        ev_layout = L.event_layout(c)

        # The run's parameters, latched when it starts.
        params = Signal(self.run.payload.shape())
        m.d.comb += self.run.ready.eq(1)
        with m.If(self.run.valid):
            m.d.sync += params.eq(self.run.payload)

        # ---- output: spikes, completion, the last step each node closed, the earliest output spike ----
        f = self.host_o.payload
        o = ev_layout(f.payload[:ev_layout.size])
        node_no = f.src_y * noc.width + f.src_x
        event = self.host_o.valid & (f.kind == FlitKind.EVENT)
        m.d.comb += [self.host_o.ready.eq(1), self.spike.valid.eq(event & (o.kind == L.EventKind.SPIKE)),
                     self.spike.payload.eq(Cat(o.index, o.time, f.src_x, f.src_y)),
                     self.counts.eq(node_no >= params.pred_node)]
        seen = Signal(16)
        ends = self.host_o.valid & ((f.kind == FlitKind.DONE) |
                                    (event & (o.kind == L.EventKind.STEP_END) & (o.time == params.t_end)))
        with m.If(self.run.valid):
            m.d.sync += seen.eq(0)
        with m.Elif(ends & self.running):
            m.d.sync += seen.eq(seen + 1)
            with m.If(seen + 1 == params.completions):
                m.d.comb += self.finish.eq(1)

        last_end = [Signal(signed(tb + 2), name=f"last_end_{n}", init=-1) for n in range(noc.n_nodes)]
        with m.If(self.run.valid):
            m.d.sync += [e.eq(-1) for e in last_end]
        with m.Elif(event & (o.kind == L.EventKind.STEP_END)):
            for n in range(noc.n_nodes):
                with m.If(node_no == n):
                    m.d.sync += last_end[n].eq(o.time)
        top = Const((1 << tb) - 1, signed(tb + 2))

        def tree_min(values):
            """Minimum as a balanced tree of compares (depth log2 n, not n)."""
            while len(values) > 1:
                pairs = [values[i:i + 2] for i in range(0, len(values), 2)]
                values = [Mux(p[1] < p[0], p[1], p[0]) if len(p) == 2 else p[0] for p in pairs]
            return values[0]

        pe_node = [n < params.pe_nodes for n in range(noc.n_nodes)]
        floor = tree_min([Mux(pe_node[n], last_end[n], top) for n in range(noc.n_nodes)])
        out_floor = tree_min([Mux(pe_node[n] & (n >= params.pred_node), last_end[n], top)
                              for n in range(noc.n_nodes)])
        # The window's limit (the latest step a flit may carry) and the output nodes' floor as registers: one
        # cycle behind last_end, so the window is at most one cycle more conservative and the early-exit
        # decision at most one cycle later (last_end only grows during a run); the min over the nodes stays off
        # the paths into the input buffer's read enable and into the end of the run.
        limit = Signal(signed(tb + 18))
        out_floor_r = Signal(signed(tb + 2), init=-1)
        m.d.sync += [limit.eq(Mux(self.run.valid, self.run.payload.window - 1, floor + params.window)),
                     out_floor_r.eq(Mux(self.run.valid, -1, out_floor))]

        have_first, first = Signal(), Signal(tb)
        with m.If(self.run.valid):
            m.d.sync += have_first.eq(0)
        with m.Elif(self.spike.valid & self.counts & (~have_first | (o.time < first))):
            m.d.sync += [have_first.eq(1), first.eq(o.time)]
        abort = Signal()
        m.d.sync += abort.eq(0)
        m.d.comb += self.abort.eq(abort)
        decide = self.running & (params.early_exit != 0) & have_first & (out_floor_r >= first)
        with m.If(decide):
            m.d.comb += self.finish.eq(1)
            m.d.sync += abort.eq(1)

        # ---- input: configuration flits, or the run's flits under the window ----
        # The run's flits pass through a one-flit register (``held``), so the window's compare reads a register
        # and not the input buffer's block RAM output: the path from the buffer's read data back into its read
        # enable is cut, at the same one flit per cycle. The end of a run (early exit too) or a new run empties it.
        held, held_valid = Signal(self._flit_bits), Signal()
        fl = flit_layout(noc)(held)
        ev = ev_layout(fl.payload[:ev_layout.size])
        timed = (fl.kind == FlitKind.EVENT) & (ev.kind != L.EventKind.START)
        go = (params.window == 0) | ~timed | (ev.time <= limit)
        take = Signal()
        with m.If(self.cmd_cfg.valid):
            m.d.comb += [self.host_i.valid.eq(1), self.host_i.payload.as_value().eq(self.cmd_cfg.payload),
                         self.cmd_cfg.ready.eq(self.host_i.ready)]
        with m.Else():
            m.d.comb += [self.host_i.valid.eq(held_valid & go), self.host_i.payload.as_value().eq(held),
                         take.eq(self.host_i.valid & self.host_i.ready)]
        m.d.comb += self.words.ready.eq(~held_valid | take)
        with m.If(self.run.valid | self.finish):
            m.d.sync += held_valid.eq(0)
        with m.Elif(self.words.ready):
            m.d.sync += [held_valid.eq(self.words.valid), held.eq(self.words.payload)]
        return m
