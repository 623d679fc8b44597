"""Board-independent tops: the accelerator behind the protocol engine, with or without the UART.

The accelerator is either the mesh of rtl/mesh.py (``noc`` given; the host port carries the mapper's
flits, docs/noc.md) or **one PE that runs the network layer by layer**. With one PE all layers' weights stay
resident: layer ``l`` uses weight rows ``row_base[l] ..`` (its inputs are sent with that index offset) and
neurons ``neuron_base[l] ..``; weights between blocks of different layers are zero, so in a run of layer
``l`` only layer ``l``'s neurons can fire (see :class:`host.plan.StackPlan`). The host driver runs one RUN
per layer and feeds each layer's output spikes back as the next one's input.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rtl import layouts as L
from rtl.config import PEConfig
from rtl.fifo import StreamFIFO
from rtl.mesh import Mesh
from rtl.noc_layouts import NocConfig, flit_layout
from rtl.pe import PE

from .engine import ProtocolEngine
from .uart import UARTRx, UARTTx

__all__ = ["LinkCore", "UARTTop", "Throttle"]


class Throttle(wiring.Component):
    """A stream pass-through that refuses transfers on pseudo-random cycles (a 16-bit Galois LFSR): about a
    ``stall_16ths`` / 16 share of cycles pass nothing. Simulation aid for testing the board path under
    backpressure; 0 makes it a plain wire.

    Ports
    -----
    i : In(stream of ``shape``); o : Out(stream of ``shape``)
    """

    def __init__(self, shape, *, stall_16ths: int, seed: int = 0xACE1):
        if not 0 <= stall_16ths <= 15:
            raise ValueError(f"stall_16ths: {stall_16ths} is outside 0..15")
        self._stall, self._seed = stall_16ths, seed & 0xFFFF or 1
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        lfsr = Signal(16, init=self._seed)
        m.d.sync += lfsr.eq(Mux(lfsr[0], (lfsr >> 1) ^ 0xB400, lfsr >> 1))
        go = lfsr[:4] >= self._stall
        m.d.comb += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid & go),
                     self.i.ready.eq(self.o.ready & go)]
        return m


class LinkCore(wiring.Component):
    """Protocol engine + PE, with the host link as byte streams (for fast simulation).

    Ports
    -----
    rx : In(stream of unsigned(8)), bytes from the host
    tx : Out(stream of unsigned(8)), bytes to the host
    rx_error : In(1), receiver error (see :class:`fpga.engine.ProtocolEngine`)
    busy : Out(1), an inference is running

    ``host_stall_16ths`` (mesh, simulation aid): a :class:`Throttle` between the mesh's host output and the
    engine refuses flits on that many sixteenths of the cycles (host backpressure, as a slow host makes it).
    """

    def __init__(self, config: PEConfig, *, in_depth: int, out_depth: int, timeout: int = 1 << 20,
                 noc: NocConfig | None = None, host_stall_16ths: int = 0):
        self._config, self._noc, self._stall = config, noc, host_stall_16ths
        self.engine = ProtocolEngine(config, in_depth=in_depth, out_depth=out_depth, timeout=timeout, noc=noc)
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                          "rx_error": In(1), "busy": Out(1)})

    @property
    def config(self) -> PEConfig:
        return self._config

    @property
    def noc(self) -> NocConfig | None:
        return self._noc

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        if self._noc is not None:
            m.submodules.mesh = mesh = Mesh(self._config, self._noc)
            # A registered FIFO between the engine and the host port (as for one PE below); an early-exit abort
            # drops the flits it holds along with everything in the mesh.
            host_fifo = StreamFIFO(flit_layout(self._noc), depth=2)
            m.submodules.host_fifo = ResetInserter(engine.abort)(host_fifo)
            wiring.connect(m, engine.host_i, host_fifo.i)
            wiring.connect(m, host_fifo.o, mesh.host_i)
            if self._stall:
                m.submodules.host_throttle = throttle = Throttle(flit_layout(self._noc), stall_16ths=self._stall)
                wiring.connect(m, mesh.host_o, throttle.i)
                wiring.connect(m, throttle.o, engine.host_o)
            else:
                wiring.connect(m, mesh.host_o, engine.host_o)
            m.d.comb += mesh.abort.eq(engine.abort)
            wiring.connect(m, wiring.flipped(self.rx), engine.rx)
            wiring.connect(m, engine.tx, wiring.flipped(self.tx))
            m.d.comb += [engine.rx_error.eq(self.rx_error), self.busy.eq(engine.busy)]
            return m
        m.submodules.pe = pe = PE(self._config)
        # Registered FIFOs between the engine and the PE cut the combinational valid/ready and payload paths
        # from the engine's buffers into the PE's input logic (they set Fmax otherwise). The event FIFO also
        # reads through a register (SyncFIFOBuffered; 3 entries keep one event per cycle), so LOAD's event
        # decision does not start at its read multiplexer (the iCE40 critical path).
        m.submodules.cfg_fifo = cfg_fifo = StreamFIFO(L.cfg_layout(self._config), depth=2)
        m.submodules.i_fifo = i_fifo = StreamFIFO(L.event_layout(self._config), depth=3, buffered=True)
        wiring.connect(m, engine.cfg, cfg_fifo.i)
        wiring.connect(m, cfg_fifo.o, pe.cfg)
        wiring.connect(m, engine.i, i_fifo.i)
        wiring.connect(m, i_fifo.o, pe.i)
        wiring.connect(m, pe.o, engine.o)
        wiring.connect(m, wiring.flipped(self.rx), engine.rx)
        wiring.connect(m, engine.tx, wiring.flipped(self.tx))
        m.d.comb += [engine.rx_error.eq(self.rx_error), self.busy.eq(engine.busy)]
        return m


class UARTTop(wiring.Component):
    """:class:`LinkCore` behind an 8N1 UART of ``divisor`` clocks per bit.

    Ports
    -----
    rx : In(1), init 1, serial line from the host
    tx : Out(1), init 1, serial line to the host
    busy : Out(1), an inference is running
    """

    def __init__(self, config: PEConfig, *, divisor: int, in_depth: int, out_depth: int,
                 timeout: int | None = None, noc: NocConfig | None = None, host_stall_16ths: int = 0):
        self._config, self._divisor = config, divisor
        # Drop a partial frame after 64 byte times of silence.
        timeout = 64 * 10 * divisor if timeout is None else timeout
        self.core = LinkCore(config, in_depth=in_depth, out_depth=out_depth, timeout=timeout, noc=noc,
                             host_stall_16ths=host_stall_16ths)
        self.uart_rx = UARTRx(divisor=divisor)
        self.uart_tx = UARTTx(divisor=divisor)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1)})

    @property
    def config(self) -> PEConfig:
        return self._config

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.uart_rx = urx = self.uart_rx
        m.submodules.uart_tx = utx = self.uart_tx
        wiring.connect(m, urx.o, core.rx)
        wiring.connect(m, core.tx, utx.i)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx), self.busy.eq(core.busy),
                     core.rx_error.eq(urx.overrun | urx.frame_error),
                     # The engine latches an error into its own flag: keep the receiver's flags one-cycle pulses.
                     urx.clear.eq(1)]
        return m
