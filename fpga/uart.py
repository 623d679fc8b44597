"""8N1 UART receiver and transmitter with byte streams (the host link of the board tops).

One bit lasts ``divisor`` clock cycles (``divisor = f_clk / baud``, rounded; e.g. 12 MHz / 1 Mbaud = 12).
Frames are 8N1: a low start bit, eight data bits LSB first, a high stop bit; the line idles high.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTTx", "UARTRx", "MIN_DIVISOR", "divisor_for"]

#: The receiver samples mid-bit (``divisor // 2`` after the start edge) and needs a few cycles per bit.
MIN_DIVISOR = 4


def divisor_for(clk_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``; raises ValueError if the rate error exceeds 2 %."""
    if baud <= 0:
        raise ValueError(f"baud: must be positive, got {baud}")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud: {baud} needs {clk_hz / baud:.2f} clocks per bit at {clk_hz / 1e6:g} MHz, "
                         f"the UART needs at least {MIN_DIVISOR}")
    error = abs(clk_hz / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"baud: {baud} is {error:.1%} off at {clk_hz / 1e6:g} MHz (divisor {divisor}); "
                         "the limit is 2 %")
    return divisor


def _check_divisor(divisor) -> int:
    if isinstance(divisor, bool) or not isinstance(divisor, int):
        raise TypeError(f"divisor: expected an int, got {type(divisor).__name__}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor: {divisor} clocks per bit is below the minimum {MIN_DIVISOR}")
    return divisor


class UARTTx(wiring.Component):
    """Transmitter.

    Ports
    -----
    i : In(stream.Signature(unsigned(8)))
        Bytes to send; one is accepted whenever the transmitter is idle.
    tx : Out(1), init 1
        The serial line (idles high).
    """

    def __init__(self, *, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__({"i": In(stream.Signature(unsigned(8))), "tx": Out(1, init=1)})

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        shreg = Signal(10)   # stop bit, 8 data bits, start bit (LSB goes out first)
        bits = Signal(range(11))
        m.d.comb += self.i.ready.eq(bits == 0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shreg.eq((1 << 9) | (self.i.payload << 1)), bits.eq(10), timer.eq(0)]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [self.tx.eq(shreg[0]), shreg.eq(shreg >> 1), timer.eq(self._divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 1):
                    m.d.sync += bits.eq(bits - 1)
        return m


class UARTRx(wiring.Component):
    """Receiver. The input passes a two-flop synchroniser, then each bit is sampled in its middle.

    Ports
    -----
    rx : In(1), init 1
        The serial line.
    o : Out(stream.Signature(unsigned(8)))
        Received bytes. A byte that is not taken before the next one completes is lost and sets ``overrun``.
    overrun : Out(1)
        Sticky: a byte was lost (cleared by ``clear``).
    frame_error : Out(1)
        Sticky: a stop bit was low; the byte is dropped (cleared by ``clear``).
    clear : In(1)
        Clears the sticky flags.
    """

    def __init__(self, *, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(unsigned(8))),
                          "overrun": Out(1), "frame_error": Out(1), "clear": In(1)})

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self._divisor))
        shreg = Signal(8)
        bit = Signal(range(10))
        busy = Signal()

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.clear):
            m.d.sync += [self.overrun.eq(0), self.frame_error.eq(0)]

        with m.If(~busy):
            with m.If(~rx):
                # Start edge: sample the start bit again in its middle.
                m.d.sync += [busy.eq(1), bit.eq(0), timer.eq(self._divisor // 2 - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [timer.eq(self._divisor - 1), bit.eq(bit + 1)]
            with m.If(bit == 0):
                with m.If(rx):  # a glitch, not a start bit
                    m.d.sync += busy.eq(0)
            with m.Elif(bit <= 8):
                m.d.sync += shreg.eq(Cat(shreg[1:], rx))
            with m.Else():
                m.d.sync += busy.eq(0)
                with m.If(~rx):
                    m.d.sync += self.frame_error.eq(1)
                with m.Else():
                    m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
        return m
