"""The PE's conv mode (docs/pe.md "Conv mode") in the Amaranth simulator: one conv2d layer (optionally with its
2x2 max-pooling) cut into tiles, each tile on one conv-mode PE fed the layer's whole input stream under random
input gaps and output backpressure; every output neuron of every tile (the conv times, or the pooled times)
equals model.run's, and padding lanes never fire."""

from __future__ import annotations

import numpy as np
import pytest

import model
from host.codec import PECodec
from host.plan import ConvTile, conv_map_entries, conv_setup
from rtl.config import PEConfig
from verif.pysim_pe import accept_cycles, run_streams


def _full(oc, rh, rw):
    return [ConvTile(0, oc, 0, 0, rh, rw)]


def _rows(oc, rh, rw):
    return [ConvTile(0, oc, 0, 0, rh // 2, rw), ConvTile(0, oc, rh // 2, 0, rh - rh // 2, rw)]


def _mixed(oc, rh, rw):
    """Channel groups of one and the rest, then the lower half in column blocks (windows of 2 stay whole)."""
    h, w = rh // 4 * 2, rw // 4 * 2
    return [ConvTile(0, 1, 0, 0, h, rw), ConvTile(1, oc, 0, 0, h, rw),
            ConvTile(0, oc, h, 0, rh - h, w), ConvTile(0, oc, h, w, rh - h, rw - w)]


def run_tiles(net, conv, tiles, lanes, inputs, *, pool=1, seed=0, idle=0.2, stall=0.2, **pe_options):
    """Spike times (images, neurons of the emitted layer) from running every tile on its own PE (built with
    ``pe_options`` on top of what the tile needs)."""
    out = np.full((len(inputs), int(np.prod(net.layers[1 if pool > 1 else 0].out_shape))), -1, dtype=np.int64)
    for tile in tiles:
        st = conv_setup(conv, tile, lanes, pool=pool, threshold_bits=net.threshold_bits)
        cfg = PEConfig(neurons=st.active, fan_in=st.kernel.shape[0], lanes=lanes, weight_bits=net.weight_bits,
                       time_bits=net.time_bits, threshold_bits=net.threshold_bits, conv_inputs=net.n_inputs,
                       conv_size=max(*conv.in_shape[1:], *conv.out_shape[1:]),
                       conv_kernel=max(*conv.weight.shape[2:], conv.padding), **pe_options)
        codec = PECodec(cfg)
        words = codec.conv_cfg_words(st.kernel, st.threshold, conv_map_entries(conv, np.arange(net.n_inputs)),
                                     neuron_base=0, sources=1, t_end=net.t_end, pool_shift=st.pool_shift,
                                     conv=st.regs, outputs=st.outputs)
        streams = [codec.input_events(t, net.t_end, rng=np.random.default_rng(seed)) for t in inputs]
        times, _ = run_streams(cfg, words, streams, n_out=st.outputs, t_end=net.t_end, seed=seed, idle=idle,
                               stall=stall)
        real = st.out_map >= 0
        for b, t in enumerate(times):
            assert (t[~real] == net.no_spike).all(), "a padding lane fired"
            assert (out[b, st.out_map[real]] == -1).all(), "two tiles emit the same neuron"
            out[b, st.out_map[real]] = t[real]
    return out


@pytest.mark.parametrize("in_shape,conv,pool,tiles,lanes", [
    ((1, 5, 5), (2, 3, 1, 0), 1, _full, 2),      # 3x3, no padding, one tile
    ((2, 6, 6), (3, 3, 1, 1), 1, _rows, 2),      # 2 input channels, padding 1, 3 channels in 2 lanes (a pad lane)
    ((1, 7, 7), (2, 3, 2, 1), 1, _full, 4),      # stride 2
    ((1, 6, 6), (3, 1, 2, 0), 1, _rows, 1),      # 1x1 kernel, stride 2, one lane
    ((2, 8, 8), (3, 5, 1, 2), 2, _mixed, 2),     # 5x5, padding 2, 2x2 pool, channel groups and column blocks
    ((1, 9, 9), (2, 4, 2, 2), 2, _rows, 2),      # even kernel, stride 2, padding 2, pooled (floor drops a row)
])
def test_conv_mode_bit_exact(in_shape, conv, pool, tiles, lanes, seed, random_conv_network):
    _check_tiles(in_shape, conv, pool, tiles, lanes, seed + in_shape[1] + conv[1], random_conv_network)


@pytest.mark.parametrize("in_shape,conv,pool,tiles,lanes", [
    ((1, 7, 7), (2, 3, 2, 1), 1, _full, 4),      # stride 2
    ((2, 8, 8), (3, 5, 1, 2), 2, _mixed, 2),     # 5x5, padding 2, 2x2 pool, channel groups and column blocks
])
def test_conv_mode_pending_fifo_bit_exact(in_shape, conv, pool, tiles, lanes, seed, random_conv_network):
    """The conv mode with LOAD's pending FIFO (3 entries, fewer than the pipeline holds), the grouped sweep, the
    request stage and STORE's window bits in LUT RAM, as board builds make PEs of many words
    (fpga.boards.board_config)."""
    _check_tiles(in_shape, conv, pool, tiles, lanes, seed + in_shape[1] + conv[1] + 100, random_conv_network,
                 pending_fifo=3, sweep_group=2, request_stage=True, pool_ram=True, fetch_stage=True)


def _check_tiles(in_shape, conv, pool, tiles, lanes, seed, random_conv_network, **pe_options):
    """One random conv layer (with its pool and a dense layer when pooled), its tiles on PEs built with
    ``pe_options``: every emitted neuron equals model.run's, and both firing and silent neurons occur."""
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    spec = [("conv", *conv)] + ([("pool", pool, pool), ("dense", 2)] if pool > 1 else [])
    net = random_conv_network(rng, in_shape, spec)
    layer = net.layers[0]
    inputs = rng.integers(0, net.t_end + 1, size=(2, net.n_inputs))
    inputs[rng.random(inputs.shape) < 0.3] = net.no_spike
    golden = model.run(net, inputs).times[1 if pool > 1 else 0].reshape(2, -1)
    oc, oh, ow = layer.out_shape
    got = run_tiles(net, layer, tiles(oc, oh // pool * pool, ow // pool * pool), lanes, inputs, pool=pool, seed=seed,
                    **pe_options)
    assert (got == golden).all(), f"seed {seed}: {np.argwhere(got != golden)[:5].tolist()} differ"
    assert (golden < net.no_spike).sum() > 0 and (golden == net.no_spike).sum() > 0  # both kinds occur


@pytest.mark.parametrize("options", [{}, {"pending_fifo": 8, "request_stage": True},
                                     {"pending_fifo": 8, "request_stage": True, "fetch_stage": True}],
                         ids=["bits", "fifo", "fifo-fetch"])
def test_conv_mode_cycle_model(options):
    """docs/pe.md "Cost of a SPIKE event": 1 cycle for the map entry, then one cycle per word of a tap inside the
    tile, per tap outside it in a tap row inside it, and per tap row outside it. 3x3 kernel, one channel in one
    lane (CH_WORDS = 1), the whole 6x6 output as the tile: an interior input (9 taps inside) costs 1 + 9 cycles,
    the corner input (1 tap inside, 2 outside in its row, 2 rows outside) 1 + 5. The same with LOAD's pending
    FIFO of 8 entries behind the request stage: its entries cover every token in flight; with the fetch stage
    (as board builds make big conv PEs) one cycle more per input spike."""
    from host.codec import pack
    from rtl import layouts as L

    conv = model.Conv2d(in_shape=(1, 8, 8), weight=np.ones((1, 1, 3, 3), dtype=np.int64),
                        threshold=np.array([30000]))
    st = conv_setup(conv, ConvTile(0, 1, 0, 0, 6, 6), 1, threshold_bits=16)
    cfg = PEConfig(neurons=36, fan_in=9, lanes=1, time_bits=4, conv_inputs=64, conv_size=8, conv_kernel=3,
                   **options)
    codec = PECodec(cfg)
    words = codec.conv_cfg_words(st.kernel, st.threshold, conv_map_entries(conv, np.arange(64)), neuron_base=0,
                                 sources=1, t_end=cfg.max_t_end, pool_shift=0, conv=st.regs, outputs=st.outputs)
    lay = L.event_layout(cfg)
    # interior inputs (2, 2) and (5, 5) alternate (disjoint footprints: no hazard wait), then corners (0, 0), (7, 7)
    spikes = [2 * 8 + 2, 5 * 8 + 5] * 3 + [0, 63] * 3
    events = [pack(lay, kind=L.EventKind.START)] + [pack(lay, kind=L.EventKind.SPIKE, index=i, time=0) for i in spikes]
    accepted = accept_cycles(cfg, words, events)
    gaps = list(np.diff(accepted))
    extra = int(cfg.fetch_stage)   # the next event is taken in a cycle of its own after the last tap
    assert gaps[2:6] == [1 + 9 + extra] * 4 and gaps[7:] == [1 + 5 + extra] * 5, gaps
