"""rtl/memory_interface.py: configuration writes land where the core reads them, the core wins the
single-ported weight/threshold SRAMs over ``cfg``, registers take their values, state writes read back."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from host.codec import PECodec, pack, unpack
from rtl import layouts as L
from rtl.config import PEConfig
from rtl.memory_interface import MemoryInterface
from verif.pysim_pe import stream_get, stream_put

CFG = PEConfig(neurons=8, fan_in=5, lanes=4, threshold_bits=12, time_bits=5, max_sources=3)


def _request(op, word, weight_addr=0, cfg=CFG):
    lay = L.read_request_layout(cfg)
    tok = L.token_layout(cfg)
    token = pack(tok, op=op, word=word)
    return token << lay["token"].offset | weight_addr << lay["weight_addr"].offset


def _read_all(cfg):
    """Read requests for every weight word (SPIKE) and every threshold word (SWEEP): (op, word, address)."""
    return ([(L.Op.SPIKE, k, r * cfg.words + k) for r in range(cfg.fan_in) for k in range(cfg.words)]
            + [(L.Op.SWEEP, k, 0) for k in range(cfg.words)])


def _check_read_back(cfg, reqs, got, weight, threshold):
    """The responses ``got`` to :func:`_read_all`'s ``reqs`` hold ``weight`` (fan_in x neurons) and ``threshold``
    (the first ``len(threshold)`` neurons)."""
    for (op, k, addr), r in zip(reqs, got, strict=True):
        assert r.token.op == op and r.token.word == k
        lanes = range(k * cfg.lanes, (k + 1) * cfg.lanes)
        if op == L.Op.SPIKE:
            row = addr // cfg.words
            assert [r.weights[j] for j in range(cfg.lanes)] == [int(weight[row, n]) for n in lanes], (row, k)
        else:
            assert [r.thresholds[n % cfg.lanes] for n in lanes if n < len(threshold)] == \
                [int(threshold[n]) for n in lanes if n < len(threshold)], k


# 4 lanes: a WEIGHT word writes a whole weight word; 8 lanes: two WEIGHT words of cfg_weights = 4 per word
CFG8 = PEConfig(neurons=16, fan_in=5, lanes=8, threshold_bits=12, time_bits=5, max_sources=3)


# the weight SRAM built single-port in 16-bit rows (iCE40 SPRAM): 1 lane x 8 bits (2 words per row), 1 lane x 4
# bits (4 per row), 2 lanes x 8 bits (one word per row)
SPRAM = [PEConfig(neurons=5, fan_in=7, lanes=1, threshold_bits=12, time_bits=5, max_sources=3, weight_spram=True),
         PEConfig(neurons=6, fan_in=5, lanes=1, weight_bits=4, threshold_bits=12, time_bits=5, max_sources=3,
                  weight_spram=True),
         PEConfig(neurons=8, fan_in=5, lanes=2, threshold_bits=12, time_bits=5, max_sources=3, weight_spram=True)]


@pytest.mark.parametrize("seed,CFG", [(0, CFG), (1, CFG), (2, CFG8), (3, SPRAM[0]), (4, SPRAM[1]), (5, SPRAM[2])])
def test_config_writes_read_back_under_stalls(seed, CFG):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    half = 1 << (CFG.weight_bits - 1)
    w = rng.integers(-half, half, size=(CFG.fan_in, CFG.neurons))
    th = rng.integers(1, 1 << 12, size=CFG.neurons)
    words = PECodec(CFG).layer_cfg_words(w, th, neuron_base=0, sources=3, t_end=17)
    kinds = [unpack(L.cfg_layout(CFG), x).target for x in words]
    # one WEIGHT word per cfg_weights = min(lanes, 4) weights, one THRESHOLD word per neuron
    assert kinds.count(L.CfgTarget.WEIGHT) == CFG.fan_in * CFG.neurons // CFG.cfg_weights
    assert kinds.count(L.CfgTarget.THRESHOLD) == CFG.neurons
    rng.shuffle(words[4:])  # any order of SRAM writes
    dut = MemoryInterface(CFG)
    resp_lay = L.read_response_layout(CFG)
    reqs = _read_all(CFG)
    got = []

    async def configure_then_read(ctx):
        for word in words:
            await stream_put(ctx, dut.cfg, word, rng=rng, idle=0.3)
        assert (ctx.get(dut.neuron_base), ctx.get(dut.sources), ctx.get(dut.t_end), ctx.get(dut.active)) == \
            (0, 3, 17, CFG.neurons)
        for op, k, addr in reqs:
            await stream_put(ctx, dut.read_req, _request(op, k, addr, CFG), rng=rng, idle=0.3)

    async def collect(ctx):
        for _ in reqs:
            got.append(resp_lay.from_bits(await stream_get(ctx, dut.read_resp, rng=rng, stall=0.5)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(configure_then_read)
    sim.add_testbench(collect)
    sim.run()
    _check_read_back(CFG, reqs, got, w, th)


@pytest.mark.parametrize("CFG", [CFG, SPRAM[0]])
def test_core_read_wins_over_cfg_write(CFG):
    """While the core reads the weight SRAM every cycle, a weight write waits; a threshold write does not."""
    dut = MemoryInterface(CFG)
    cfg_lay = L.cfg_layout(CFG)
    trace = []

    async def bench(ctx):
        ctx.set(dut.read_resp.ready, 1)
        ctx.set(dut.read_req.valid, 1)
        ctx.set(dut.read_req.payload.as_value(), _request(L.Op.SPIKE, 0, 0, CFG))
        ctx.set(dut.cfg.valid, 1)
        ctx.set(dut.cfg.payload.as_value(), pack(cfg_lay, target=L.CfgTarget.WEIGHT, row=0, neuron=0, data=5))
        for _ in range(3):
            await ctx.tick()
            trace.append(("weight", ctx.get(dut.cfg.ready)))
        ctx.set(dut.cfg.payload.as_value(), pack(cfg_lay, target=L.CfgTarget.THRESHOLD, neuron=1, data=9))
        await ctx.delay(1e-9)
        trace.append(("threshold", ctx.get(dut.cfg.ready)))
        ctx.set(dut.cfg.payload.as_value(), pack(cfg_lay, target=L.CfgTarget.WEIGHT, row=0, neuron=0, data=5))
        ctx.set(dut.read_req.valid, 0)  # core idle: the weight write goes through
        await ctx.delay(1e-9)
        trace.append(("weight-idle", ctx.get(dut.cfg.ready)))
        # The core stalls (response not taken): it does not read, so the port is free too.
        ctx.set(dut.read_req.valid, 1)
        ctx.set(dut.read_resp.ready, 0)
        await ctx.tick()
        await ctx.delay(1e-9)
        trace.append(("weight-stalled-core", ctx.get(dut.cfg.ready)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert trace == [("weight", 0)] * 3 + [("threshold", 1), ("weight-idle", 1), ("weight-stalled-core", 1)]


def test_state_write_reads_back():
    dut = MemoryInterface(CFG)
    st = L.state_word_layout(CFG)
    wr = L.write_request_layout(CFG)
    resp_lay = L.read_response_layout(CFG)
    value = 0x0123456789ABCDEF0123456789ABCDEF & ((1 << st.size) - 1)
    out = []

    async def bench(ctx):
        await stream_put(ctx, dut.write_req, 1 << wr["addr"].offset | value << wr["state"].offset)
        ctx.set(dut.read_resp.ready, 1)
        await stream_put(ctx, dut.read_req, _request(L.Op.SWEEP, 1))
        out.append(resp_lay.from_bits(await stream_get(ctx, dut.read_resp)))
        # CLEAR and MARK leave the state SRAM unread (its output holds the last word read).
        await stream_put(ctx, dut.write_req, 1 << wr["addr"].offset)
        for op in (L.Op.CLEAR, L.Op.MARK):
            await stream_put(ctx, dut.read_req, _request(op, 1))
            out.append(resp_lay.from_bits(await stream_get(ctx, dut.read_resp)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert [o.state.as_value().value for o in out] == [value] * 3


# the weight stream (cfg_stream): 4 lanes (6 weights of 8 bits per stream word), 8 lanes, 1 lane of 4-bit
# weights, 2 lanes; neurons and rows left unused so that the stream's rows are shorter than the SRAM's
STREAM = [PEConfig(neurons=12, fan_in=6, lanes=4, threshold_bits=12, time_bits=5, max_sources=3, cfg_stream=True),
          PEConfig(neurons=24, fan_in=4, lanes=8, threshold_bits=12, time_bits=5, max_sources=3, cfg_stream=True),
          PEConfig(neurons=5, fan_in=7, lanes=1, weight_bits=4, threshold_bits=12, time_bits=5, max_sources=3,
                   cfg_stream=True),
          PEConfig(neurons=6, fan_in=5, lanes=2, threshold_bits=12, time_bits=5, max_sources=3, cfg_stream=True)]


@pytest.mark.parametrize("seed,CFG", list(enumerate(STREAM)))
def test_weight_stream_fills_the_weight_sram_under_core_reads(seed, CFG):
    """A weight stream of a layer of fewer rows and neurons than the PE has: the weights land at row * words + word,
    the padding of its last stream word and the unused rows are not written, the core's weight reads (issued at
    random while the stream runs) win the port, and the words after the stream take effect after it."""
    print(f"seed={seed} config={CFG}")
    rng = np.random.default_rng(seed)
    n_in, n = CFG.fan_in - 1, CFG.neurons - CFG.lanes + 1
    half = 1 << (CFG.weight_bits - 1)
    w = rng.integers(-half, half, size=(n_in, n))
    th = rng.integers(1, 1 << 12, size=n)
    codec = PECodec(CFG)
    words = codec.layer_cfg_words(w, th, neuron_base=0, sources=3, t_end=17)
    body = codec.stream_body(words)
    assert len(words) - body == 5 + n + 1   # registers, thresholds, STREAM
    row_words = -(-n // CFG.lanes)
    assert body == -(-n_in * row_words * CFG.lanes // CFG.stream_weights)
    assert unpack(L.cfg_layout(CFG), words[-body - 1]).row == L.Reg.STREAM.value
    # after the stream: a register and a threshold, which wait until its last weight word is written; before
    # it, WEIGHT words that fill the unused row with 1s, which a write of the stream's padding would clear
    g = CFG.cfg_weights
    words = [codec.weight_word(n_in, j, [1] * g) for j in range(0, CFG.neurons, g)] + words
    words += [codec.reg(L.Reg.SOURCES, 2), codec.threshold(0, 77)]
    th[0] = 77
    dut = MemoryInterface(CFG)
    resp_lay = L.read_response_layout(CFG)
    reqs = _read_all(CFG)
    busy_reads = [(L.Op.SPIKE, 0, int(a)) for a in rng.integers(0, CFG.weight_words, size=40)]
    got, done = [], []

    async def configure(ctx):
        for word in words:
            await stream_put(ctx, dut.cfg, word, rng=rng, idle=0.2)
        done.append(True)

    async def core(ctx):
        for op, k, addr in busy_reads:   # while the stream runs (the responses are not checked)
            await stream_put(ctx, dut.read_req, _request(op, k, addr, CFG), rng=rng, idle=0.5)
        while not done:
            await ctx.tick()
        assert (ctx.get(dut.sources), ctx.get(dut.t_end), ctx.get(dut.active)) == (2, 17, n)
        for op, k, addr in reqs:
            await stream_put(ctx, dut.read_req, _request(op, k, addr, CFG), rng=rng, idle=0.3)

    async def collect(ctx):
        for _ in range(len(busy_reads)):
            await stream_get(ctx, dut.read_resp)
        for _ in reqs:
            got.append(resp_lay.from_bits(await stream_get(ctx, dut.read_resp, rng=rng, stall=0.3)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(configure)
    sim.add_testbench(core)
    sim.add_testbench(collect)
    sim.run()
    padded = np.zeros((CFG.fan_in, CFG.neurons), dtype=np.int64)
    padded[:n_in, :n] = w   # lanes past n in the last word written 0; the row n_in keeps its 1s
    padded[n_in] = 1
    _check_read_back(CFG, reqs, got, padded, th)


def test_weight_stream_refuses_what_the_pe_cannot_hold():
    codec = PECodec(STREAM[0])
    with pytest.raises(ValueError, match=r"weight stream: 19 words is outside the allowed range 1..18"):
        codec.weight_stream(np.zeros((19, 4)), 3)
    with pytest.raises(ValueError, match=r"weight stream: 4 words per row is outside 1..3"):
        codec.weight_stream(np.zeros((4, 4)), 4)
    with pytest.raises(ValueError, match=r"weight: values must lie in -128..127"):
        codec.weight_stream(np.full((2, 4), 128), 3)
    with pytest.raises(ValueError, match=r"no weight stream"):
        PECodec(CFG).weight_stream(np.zeros((2, 4)), 2)
