"""UART transmitter -> receiver loopback at small divisors, bytes compared one by one."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from fpga.uart import MIN_DIVISOR, UARTRx, UARTTx, _check_divisor, divisor_for


def loopback(divisor: int, data: list[int]) -> list[int]:
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor=divisor)
    m.submodules.rx = rx = UARTRx(divisor=divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []

    async def send(ctx):
        for b in data:
            ctx.set(tx.i.valid, 1)
            ctx.set(tx.i.payload, b)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def receive(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            _, _, valid, payload = await ctx.tick().sample(rx.o.valid, rx.o.payload)
            if valid:
                got.append(payload)
        assert not ctx.get(rx.overrun) and not ctx.get(rx.frame_error)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(send, background=True)
    sim.add_testbench(receive)
    sim.run_until(1e-6 * (len(data) + 2) * 10 * divisor * 2)
    return got


@pytest.mark.parametrize("divisor", [4, 5, 7])
def test_loopback(divisor):
    seed = 100 + divisor
    print(f"seed={seed}")
    data = [int(b) for b in np.random.default_rng(seed).integers(0, 256, 24)] + [0x00, 0xFF, 0xA5, 0x5A]
    assert loopback(divisor, data) == data


def test_divisor_checks():
    assert divisor_for(12e6, 1_000_000) == 12
    assert divisor_for(25e6, 115200) == 217
    with pytest.raises(ValueError, match="at least 4"):
        divisor_for(12e6, 4_000_000)
    with pytest.raises(ValueError, match="off at"):
        divisor_for(12e6, 2_500_000)   # 4.8 clocks per bit -> divisor 5 is 4 % off
    with pytest.raises(ValueError, match="below the minimum"):
        _check_divisor(MIN_DIVISOR - 1)


def test_frame_error_is_reported_once():
    """A low stop bit is a framing error; in the UART top it becomes a one-cycle pulse that the engine
    latches, so the next request is answered LINK and the one after it works again."""
    from fpga.driver import BoardError, HostLink
    from fpga.protocol import Cmd, request
    from fpga.sim import SimTransport
    from fpga.top import UARTTop
    from rtl.config import PEConfig

    top = UARTTop(PEConfig(neurons=2, fan_in=4, lanes=1, time_bits=4), divisor=4, in_depth=4, out_depth=2)
    port = SimTransport(top, timeout=100_000)
    link = HostLink(port)
    assert link.info().in_depth == 4

    port.write_bits([0] * 10 + [1, 1])   # a 0x00 byte whose stop bit is low, then idle
    port.advance(100)           # let it pass (nothing comes back)
    with pytest.raises(BoardError, match="LINK"):
        link.transact(Cmd.INFO)
    assert link.info().in_depth == 4
    assert request(Cmd.INFO)[0] == 0xA5
