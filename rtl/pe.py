"""The YOSO processing element: LOAD -> COMPUTE -> STORE joined by stream FIFOs, around a memory interface."""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import layouts as L
from .compute import Compute
from .config import PEConfig
from .fifo import StreamFIFO
from .load import Load
from .memory_interface import MemoryInterface
from .store import Store

__all__ = ["PE"]


class PE(wiring.Component):
    """One processing element (docs/pe.md): event-driven ReL-PSP neurons of one layer.

    Structure::

        i ──> LOAD ──req──> MEMORY INTERFACE ──resp──> FIFO ──> COMPUTE ──> FIFO ──> STORE ──> FIFO ──> o
               ^  (defer FIFO)   ^  weights / thresholds / state SRAMs      │         │
               └───── done ──────┼──────────────────────────────────────────┘  write  │
        cfg ─────────────────────┘ (registers, SRAM writes) <──────────────────────────┘

    Parameters
    ----------
    config : PEConfig

    Ports
    -----
    cfg : In(stream of layouts.cfg_layout), configuration words (register / weight / threshold writes)
    i : In(stream of layouts.event_layout), input events (START, SPIKE(index = input row, time), STEP_END)
    o : Out(stream of layouts.event_layout), output events (STEP_END(0), SPIKE(NEURON_BASE + j, t), STEP_END(t))

    Attributes
    ----------
    abort : Signal(1), not a port
        Driven by the mesh (early exit, docs/noc.md): while high, the inference in progress is dropped at the
        next clock edge (LOAD / COMPUTE / STORE, their FIFOs and the read pipeline return to reset); the
        registers and SRAM contents (the configuration) are kept. Left undriven it stays 0.
    """

    def __init__(self, config: PEConfig):
        if not isinstance(config, PEConfig):
            self._MustUse__silence = True  # a rejected instance is not an unused elaboratable
            raise TypeError(f"config: expected a PEConfig, got {type(config).__name__}")
        self._cfg = config
        self.abort = Signal()
        super().__init__({
            "cfg": In(stream.Signature(L.cfg_layout(config))),
            "i": In(stream.Signature(L.event_layout(config))),
            "o": Out(stream.Signature(L.event_layout(config))),
        })

    @property
    def config(self) -> PEConfig:
        return self._cfg

    def elaborate(self, platform):
        c = self._cfg
        m = Module()
        m.submodules.mem = mem = MemoryInterface(c)
        load, compute, store = Load(c), Compute(c), Store(c)
        fifo_compute = StreamFIFO(L.read_response_layout(c), depth=c.fifo_depth)
        fifo_store = StreamFIFO(L.compute_layout(c), depth=c.fifo_depth)
        fifo_out = StreamFIFO(L.event_layout(c), depth=c.fifo_depth)
        stages = {"request": StreamFIFO(L.read_request_layout(c), depth=2)} if c.request_stage else {}
        if c.input_stage:   # 3 entries: one event per cycle through the registered read
            stages["input"] = StreamFIFO(L.event_layout(c), depth=3, buffered=True)
        # Everything that holds inference state returns to reset on abort; the memory interface (registers,
        # SRAMs) only drops its read pipeline stage.
        for name, sub in (("load", load), ("compute", compute), ("store", store), ("fifo_compute", fifo_compute),
                          ("fifo_store", fifo_store), ("fifo_out", fifo_out),
                          *((f"fifo_{name}", f) for name, f in stages.items())):
            m.submodules[name] = ResetInserter({"sync": self.abort})(sub)
        m.d.comb += mem.abort.eq(self.abort)

        # For tests and debugging: the FIFOs of the last elaboration (their levels show backpressure).
        self.fifos = {"compute": fifo_compute, "store": fifo_store, "out": fifo_out, **stages}

        wiring.connect(m, wiring.flipped(self.cfg), mem.cfg)
        if c.input_stage:
            wiring.connect(m, wiring.flipped(self.i), stages["input"].i)
            wiring.connect(m, stages["input"].o, load.i)
        else:
            wiring.connect(m, wiring.flipped(self.i), load.i)
        if c.request_stage:
            wiring.connect(m, load.req, stages["request"].i)
            wiring.connect(m, stages["request"].o, mem.read_req)
        else:
            wiring.connect(m, load.req, mem.read_req)
        wiring.connect(m, mem.read_resp, fifo_compute.i)
        wiring.connect(m, fifo_compute.o, compute.i)
        wiring.connect(m, compute.o, fifo_store.i)
        wiring.connect(m, fifo_store.o, store.i)
        wiring.connect(m, store.write, mem.write_req)
        wiring.connect(m, store.o, fifo_out.i)
        wiring.connect(m, fifo_out.o, wiring.flipped(self.o))
        m.d.comb += [
            load.done.eq(store.done),
            load.done_word.eq(store.done_word),
            load.done_rising.eq(store.done_rising),
            load.sources.eq(mem.sources),
            load.t_end.eq(mem.t_end),
            load.active.eq(mem.active),
            compute.active.eq(load.n_active),
            store.neuron_base.eq(mem.neuron_base),
            store.pool_shift.eq(mem.pool_shift),
        ]
        if c.conv:
            m.d.comb += [mem.map_addr.eq(load.map_addr), mem.map_en.eq(load.map_en), load.map_data.eq(mem.map_data),
                         load.pool_shift.eq(mem.pool_shift), store.pool_low.eq(mem.pool_low)]
            m.d.comb += [getattr(load, name).eq(getattr(mem, name)) for name in L.conv_reg_widths(c)
                         if name != "pool_low"]
        return m
