"""A serial-port-like transport onto a simulated top (Amaranth simulator), for the host driver.

``write(bytes)`` queues bytes for the top; ``read(n)`` advances the simulation until ``n`` bytes came back
or ``timeout`` cycles passed (then returns what it has, like pyserial). With a :class:`fpga.top.UARTTop`
the bytes travel bit by bit over the ``rx`` / ``tx`` lines (8N1, the top's divisor); with a
:class:`fpga.top.LinkCore` they go straight into its byte streams.
"""

from __future__ import annotations

from collections import deque

from amaranth.sim import Simulator

from .top import LinkCore, UARTTop

__all__ = ["SimTransport"]

_PERIOD = 1e-6  # simulated clock period in seconds (only a time base: results are counted in cycles)


async def _ticks(ctx, n: int):
    # A plain loop rather than ``tick().repeat(n)``: an async generator suspended inside ``repeat`` cannot be
    # closed when the simulator is garbage-collected mid-wait.
    for _ in range(n):
        await ctx.tick()


class SimTransport:
    """Simulated serial port.

    Parameters
    ----------
    top : UARTTop or LinkCore
    timeout : int
        Cycles ``read`` waits for missing bytes.
    """

    def __init__(self, top, *, timeout: int = 2_000_000):
        if not isinstance(top, UARTTop | LinkCore):
            raise TypeError(f"top: expected a UARTTop or LinkCore, got {type(top).__name__}")
        self.top, self.timeout = top, timeout
        self._to_dut: deque[int | tuple[int, ...]] = deque()
        self._from_dut: deque[int] = deque()
        self.cycles = 0
        self.sim = Simulator(top)
        self.sim.add_clock(_PERIOD)
        if isinstance(top, UARTTop):
            self.sim.add_testbench(self._uart_host_tx, background=True)
            self.sim.add_testbench(self._uart_host_rx, background=True)
        else:
            self.sim.add_testbench(self._stream_host, background=True)

    # ---- pyserial-like interface ----
    def write(self, data: bytes) -> int:
        self._to_dut.extend(data)
        return len(data)

    def read(self, n: int) -> bytes:
        waited = 0
        while len(self._from_dut) < n and waited < self.timeout:
            step = min(256, self.timeout - waited)
            self._advance(step)
            waited += step
        k = min(n, len(self._from_dut))
        return bytes(self._from_dut.popleft() for _ in range(k))

    def write_bits(self, bits) -> None:
        """Queue raw line levels, one bit time each (UART tops only; for malformed frames in tests)."""
        if not isinstance(self.top, UARTTop):
            raise TypeError("write_bits: needs a UARTTop")
        self._to_dut.append(tuple(int(b) for b in bits))

    def reset_input_buffer(self):
        self._from_dut.clear()

    def close(self):
        pass

    def advance(self, cycles: int):
        """Run the simulation for ``cycles`` clock cycles."""
        self._advance(cycles)

    def _advance(self, cycles: int):
        self.cycles += cycles
        self.sim.run_until(self.cycles * _PERIOD)

    # ---- host side of the link ----
    async def _uart_host_tx(self, ctx):
        rx, div = self.top.rx, self.top.divisor
        ctx.set(rx, 1)
        while True:
            if not self._to_dut:
                await _ticks(ctx, div)
                continue
            item = self._to_dut.popleft()
            bits = item if isinstance(item, tuple) else [0, *((item >> k) & 1 for k in range(8)), 1]
            for bit in bits:
                ctx.set(rx, bit)
                await _ticks(ctx, div)

    async def _uart_host_rx(self, ctx):
        tx, div = self.top.tx, self.top.divisor
        while True:
            await ctx.negedge(tx)
            await _ticks(ctx, div // 2)   # middle of the start bit
            byte = 0
            for k in range(8):
                await _ticks(ctx, div)
                byte |= ctx.get(tx) << k
            await _ticks(ctx, div)
            if ctx.get(tx) != 1:
                raise AssertionError("simulated UART: stop bit from the top is low")
            self._from_dut.append(byte)

    async def _stream_host(self, ctx):
        rx, tx = self.top.rx, self.top.tx
        ctx.set(tx.ready, 1)
        while True:
            if self._to_dut:
                ctx.set(rx.valid, 1)
                ctx.set(rx.payload, self._to_dut.popleft())
            else:
                ctx.set(rx.valid, 0)
            _, _, valid, payload = await ctx.tick().sample(tx.valid, tx.payload)
            if valid:
                self._from_dut.append(payload)
