"""Mesh plans: placement, sources and destinations, capacity errors with numbers, flit streams, the plan as
data; the one PE derivation."""

from __future__ import annotations

import numpy as np
import pytest

import model
from host.codec import PECodec, pack, unpack
from host.plan import ConvTile, MappingError, MeshPlan, conv_fanout, conv_reach, pe_config, plan_mesh
from rtl import layouts as L
from rtl.noc_layouts import FlitKind, flit_layout


def test_placement_sources_dests():
    net = model.random_network("20-10-9-3", seed=0, time_bits=4)
    mp = plan_mesh(net, 3, 3, neurons=4, lanes=2, window=1)
    assert [len(mp.layer_slices(n)) for n in range(3)] == [3, 3, 1]
    # row-major nodes, layer after layer
    assert [p.node for p in mp.slices] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2)]
    assert [p.sources for p in mp.slices] == [1, 1, 1, 3, 3, 3, 3]
    assert mp.slices[0].dests == ((0, 1, 0), (1, 1, 0), (2, 1, 0), (0, 0, 1))
    assert mp.slices[-1].dests == ((0, 0, 1),)
    assert [(p.lo, p.hi) for p in mp.layer_slices(0)] == [(0, 4), (4, 8), (8, 10)]
    # window 1, deepest layer 2: a source runs at most 1 + 2 steps ahead (one marker each) and holds at most
    # all its neurons' spikes; 2 other sources
    assert mp.pe.defer_depth == 2 * (3 + mp.pe.neurons) + 2
    with pytest.raises(MappingError, match="window"):
        plan_mesh(net, 3, 3, neurons=4, lanes=2, monitor=False, window=1)


def test_monitor_off_only_output_layer_reports():
    net = model.random_network("8-6-3", seed=0, time_bits=4)
    mp = plan_mesh(net, 2, 2, neurons=4, lanes=2, monitor=False)
    assert mp.n_reporting == 1
    assert all(h == 0 for p in mp.layer_slices(0) for _, _, h in p.dests)


def test_does_not_fit_names_numbers():
    net = model.random_network("784-100-10", seed=0)
    with pytest.raises(MappingError,
                       match=r"--mesh 2x1: the network needs 3 PEs of at most 64 neurons .* the mesh has 2"):
        plan_mesh(net, 2, 1, neurons=64, lanes=4)


def _conv_pool_net(pool_kernel=2, pool_stride=2, first=None):
    conv = model.Conv2d(in_shape=(1, 4, 4), weight=np.arange(1, 5, dtype=np.int64).reshape(1, 1, 2, 2),
                        threshold=np.array([3]), padding=1)      # output (1, 5, 5)
    pool = model.MaxPool2d(in_shape=(1, 5, 5), kernel=pool_kernel, stride=pool_stride)
    n_pool = int(np.prod(pool.out_shape))
    dense = model.Dense(weight=np.ones((n_pool, 2), dtype=np.int64), threshold=np.array([2, 3]))
    return model.Network.build(input_shape=(1, 4, 4), layers=(first or []) + [conv, pool, dense], time_bits=4)


def test_maxpool_fused_into_conv_pes(tmp_path):
    """conv2d -> maxpool2d: one layer of PEs whose columns are the conv neurons in window order (2x2 windows
    of 4 columns, POOL_SHIFT = 2), output indices the pooled ones; the conv neurons of the last row and column
    feed no window and are left out."""
    net = _conv_pool_net()
    mp = plan_mesh(net, 2, 2, neurons=8, lanes=2, conv_mode=False)
    assert mp.n_layers == 2 and mp.net_layers == (1, 2) and mp.pool_shifts == (2, 0)
    assert [mp.outputs(n) for n in range(2)] == [4, 2]
    dense = model.dense_equivalent(net.layers[0])[0]
    # window 1 (pooled (0, 0, 1)): conv neurons (y, x) = (0, 2), (0, 3), (1, 2), (1, 3)
    np.testing.assert_array_equal(mp.weights[0][:, 4:8], dense[:, [2, 3, 7, 8]])
    assert [(p.lo, p.hi, mp.out_range(p)) for p in mp.layer_slices(0)] == [(0, 8, (0, 2)), (8, 16, (2, 4))]
    ws = mp.codec.pe.layer_cfg_words(mp.weights[0][:, 8:16], mp.thresholds[0][8:16], neuron_base=2, pool_shift=2)
    words = [unpack(L.cfg_layout(mp.pe), w) for w in ws[:len(ws) - mp.codec.pe.stream_body(ws)]]
    regs = {int(w.row): int(w.data) for w in words if w.target == L.CfgTarget.REG}
    assert regs[L.Reg.POOL_SHIFT.value] == 2 and regs[L.Reg.NEURON_BASE.value] == 2
    assert mp.by_net_layer(["a", "b"]) == (None, "a", "b")
    mp.save(tmp_path / "plan.npz")
    loaded = MeshPlan.load(tmp_path / "plan.npz")
    assert loaded.pool_shifts == mp.pool_shifts and loaded.net_layers == mp.net_layers


def test_maxpool_mapping_errors():
    with pytest.raises(MappingError, match=r"layers\[1\]: maxpool2d kernel 2 with stride 1: overlapping windows"):
        plan_mesh(_conv_pool_net(2, 1), 2, 2)
    with pytest.raises(MappingError, match=r"layers\[1\]: a 3x3 pooling window needs 16 neurons in one PE, the PE "
                                           r"has 8"):
        plan_mesh(_conv_pool_net(3, 3), 2, 2, neurons=8, lanes=2)
    with pytest.raises(MappingError, match=r"layers\[0\]: a conv-mode PE needs at least 8 neurons \(one 2x2 window "
                                           r"of one channel in 2 lanes\), the PE has 4"):
        plan_mesh(_conv_pool_net(), 2, 2, neurons=4, lanes=2)
    pool_first = model.Network.build(
        input_shape=(1, 4, 4), time_bits=4,
        layers=[model.MaxPool2d(in_shape=(1, 4, 4), kernel=2, stride=2),
                model.Dense(weight=np.ones((4, 2), dtype=np.int64), threshold=np.array([2, 3]))])
    with pytest.raises(MappingError, match=r"layers\[0\]: maxpool2d runs on the mesh only right after a conv2d "
                                           r"layer .*not after the input"):
        plan_mesh(pool_first, 2, 2)
    with pytest.raises(MappingError, match=r"--mesh 1x1: the network needs 2 PEs .*layers 0-1 \(conv2d \+ "
                                           r"maxpool2d\): 16 neurons -> 1, layer 2: 2 neurons -> 1"):
        plan_mesh(_conv_pool_net(), 1, 1, conv_mode=False)
    with pytest.raises(MappingError, match=r"--mesh 1x1: the network needs 5 PEs of at most 8 neurons \(layers 0-1 "
                                           r"\(conv2d \+ maxpool2d\): 25 neurons in conv mode -> 4, layer 2: 2 "
                                           r"neurons -> 1\), the mesh has 1"):
        plan_mesh(_conv_pool_net(), 1, 1, neurons=8, lanes=2)


def test_conv_pool_reference_shape_maps():
    """1x28x28-c16k5-p2-10 (the trainer's conv network): the conv layer's 9,216 neurons (dense expansion,
    7.2 M weights) on 144 PEs of 64 whose outputs are 2,304 pooled windows; the output PE's defer FIFO is sized
    by what each source can send (16 pooled spikes, not 64), which keeps it under the PE limit."""
    rng = np.random.default_rng(0)
    net = model.Network.build(input_shape=(1, 28, 28), layers=[
        model.Conv2d(in_shape=(1, 28, 28), weight=rng.integers(-8, 8, (16, 1, 5, 5)), threshold=np.full(16, 99)),
        model.MaxPool2d(in_shape=(16, 24, 24), kernel=2, stride=2),
        model.Dense(weight=rng.integers(-8, 8, (2304, 10)), threshold=np.full(10, 99))])
    with pytest.raises(MappingError, match=r"the network needs 145 PEs of at most 64 neurons"):
        plan_mesh(net, 12, 12, conv_mode=False)
    mp = plan_mesh(net, 13, 12, neurons=64, lanes=4, conv_mode=False)
    assert [len(mp.layer_slices(n)) for n in range(2)] == [144, 1] and mp.outputs(0) == 2304
    assert mp.weights[0].shape == (784, 9216) and mp.pe.fan_in == 2304
    assert mp.pe.defer_depth == 143 * (1 + 16) + 2


def test_image_flits_protocol():
    net = model.random_network("4-3", seed=0, time_bits=3)
    mp = plan_mesh(net, 1, 1, neurons=4, lanes=2)
    times = np.array([2, net.no_spike, 0, 2])
    fl, ev = flit_layout(mp.noc), L.event_layout(mp.pe)
    events = []
    for w in mp.image_flits(times):
        f = unpack(fl, w)
        assert (f["x"], f["y"], f["host"], f["kind"]) == (0, 0, 0, FlitKind.EVENT)
        e = unpack(ev, f["payload"])
        events.append((L.EventKind(e["kind"]).name, e["index"], e["time"]))
    want = [("START", 0, 0), ("SPIKE", 2, 0), ("STEP_END", 0, 0), ("STEP_END", 0, 1), ("SPIKE", 0, 2),
            ("SPIKE", 3, 2), ("STEP_END", 0, 2)] + [("STEP_END", 0, t) for t in range(3, net.t_end + 1)]
    assert events == want


def test_image_flits_interleave_first_layer_pes():
    # Two first-layer PEs: each event goes to both in turn (so both work while the host port is blocked on one),
    # and each PE still receives its own events in order.
    net = model.random_network("4-6-2", seed=0, time_bits=3)
    mp = plan_mesh(net, 2, 2, neurons=4, lanes=2)
    first = [p.node for p in mp.layer_slices(0)]
    assert len(first) == 2
    fl, ev = flit_layout(mp.noc), L.event_layout(mp.pe)
    groups = dict(mp.image_steps(np.array([0, net.no_spike, 0, 1])))
    got = []
    for w in groups[0]:
        f = unpack(fl, w)
        e = unpack(ev, f["payload"])
        got.append(((f["x"], f["y"]), L.EventKind(e["kind"]).name, e["index"]))
    want = [(n, k, i) for k, i in (("SPIKE", 0), ("SPIKE", 2), ("STEP_END", 0)) for n in first]
    assert got == want


@pytest.mark.parametrize("window", [0, -1, 1.5, True])
def test_window_must_be_positive(window):
    net = model.random_network("6-4", seed=0)
    with pytest.raises(MappingError, match=r"window: must be None or an integer >= 1"):
        plan_mesh(net, 1, 1, neurons=4, lanes=2, window=window)


def test_even_split():
    """A layer takes ceil(n / neurons) PEs with equal shares rounded up to whole lanes; the PE is sized for the
    largest share."""
    net = model.random_network("20-100-10", seed=0)
    mp = plan_mesh(net, 2, 2, neurons=64, lanes=4)
    assert [(p.layer, p.lo, p.hi) for p in mp.slices] == [(0, 0, 52), (0, 52, 100), (1, 0, 10)]
    assert mp.pe.neurons == 52
    mp = plan_mesh(net, 4, 1, neurons=40, lanes=4)
    assert [(p.lo, p.hi) for p in mp.layer_slices(0)] == [(0, 36), (36, 72), (72, 100)]


def test_plan_round_trips_as_data(tmp_path):
    """A saved plan loads equal in every field the simulator processes use (fifo_depth included) and gives the
    same flits."""
    net = model.random_network("6-7-3", seed=3, time_bits=4)
    mp = plan_mesh(net, 2, 2, neurons=4, lanes=2, window=2, fifo_depth=3)
    mp.save(tmp_path / "plan.npz")
    back = MeshPlan.load(tmp_path / "plan.npz")
    assert (back.pe, back.noc, back.slices, back.t_end, back.window, back.monitor) == \
        (mp.pe, mp.noc, mp.slices, mp.t_end, mp.window, mp.monitor)
    assert back.noc.fifo_depth == 3
    assert back.config_flits() == mp.config_flits()
    times = np.array([0, 1, net.no_spike, 2, 3, 0])
    assert back.image_flits(times) == mp.image_flits(times)


def test_pe_config_fits_every_layer():
    net = model.random_network("50-30-10", seed=0, time_bits=6)
    cfg = pe_config(net, lanes=4)
    assert (cfg.fan_in, cfg.neurons, cfg.time_bits) == (50, 32, 6)


def _fmnist_conv_shape(rng):
    """A random network of the shape of networks/fmnist-conv.npz: 1x28x28-c16k5-p2-c32k5-p2-10."""
    return model.random_conv_network(rng, (1, 28, 28), [("conv", 16, 5, 1, 0), ("pool", 2, 2),
                                                         ("conv", 32, 5, 1, 0), ("pool", 2, 2), ("dense", 10)],
                                     time_bits=8)


def test_compact_and_balanced_reference_shape():
    """The same shape with compact weights on big PEs: every layer in conv mode on 4 + 1 + 1 PEs of 2,304 neurons x
    16 lanes, the weight SRAM sized to the largest slice (conv2: 400 rows x 2 words = 800, not 2,304 x 144); with
    balance on 4x4 the spare nodes go to conv2 (819,200 synapses against conv1's 230,400), 8 PEs instead of 1."""
    net = _fmnist_conv_shape(np.random.default_rng(0))
    mp = plan_mesh(net, 3, 2, neurons=2304, lanes=16, compact_weights=True)
    assert [len(mp.layer_slices(n)) for n in range(3)] == [4, 1, 1] and all(g is not None for g in mp.convs)
    assert (mp.pe.weight_words, mp.pe.words, mp.pe.fan_in) == (800, 144, 2304)
    assert mp.conv(2) == {"in_shape": [512, 1, 1], "kernel": [1, 1], "stride": 1, "padding": 0, "pool": 1}
    bal = plan_mesh(net, 4, 4, neurons=2304, lanes=16, compact_weights=True, balance=True)
    assert [len(bal.layer_slices(n)) for n in range(3)] == [4, 8, 1]
    with pytest.raises(MappingError, match="compact_weights: the network has no layer that runs in conv mode"):
        plan_mesh(model.random_network("6-5-3", seed=0), 2, 2, compact_weights=True)


def test_conv_mode_reference_shape(tmp_path):
    """1x28x28-c16k5-p2-c32k5-p2-10 in conv mode on PEs of 64 neurons x 4 lanes: conv1 on 144 PEs (all 16 channels
    = 4 words per position, 2 x 2 positions = one pooled window per channel), conv2 on 32 PEs (2 groups of 16
    channels x 16 tiles of one 2 x 2 window), the output layer on 1; the kernel slices hold 460,800 and 1,638,400
    weight bits against 57.8 M and 37.7 M for the dense expansion; a conv1 PE sends only to the conv2 PEs its
    outputs reach."""
    net = _fmnist_conv_shape(np.random.default_rng(0))
    with pytest.raises(MappingError, match=r"the network needs 177 PEs of at most 64 neurons \(layers 0-1 \(conv2d "
                                           r"\+ maxpool2d\): 9216 neurons in conv mode -> 144, layers 2-3 \(conv2d \+ "
                                           r"maxpool2d\): 2048 neurons in conv mode -> 32, layer 4: 10 neurons -> 1\), "
                                           r"the mesh has 176"):
        plan_mesh(net, 16, 11, window=1)
    mp = plan_mesh(net, 16, 12, window=1)
    assert [len(mp.layer_slices(n)) for n in range(3)] == [144, 32, 1]
    bits = mp.weight_bits()
    assert [(b["mode"], b["pes"], b["bits"], b["dense_bits"]) for b in bits] == [
        ("conv", 144, 144 * 25 * 16 * 8, 784 * 9216 * 8), ("conv", 32, 32 * 400 * 16 * 8, 2304 * 2048 * 8),
        ("dense", 1, 512 * 10 * 8, 512 * 10 * 8)]
    assert "in conv mode, 460,800 weight bits" in mp.describe()
    # conv1's 2,304 pooled outputs are its index space (16 channels = a power of two: no holes); conv2's 512
    # pooled outputs, no holes either
    assert mp.outputs(0) == 2304 and (mp.out_maps[0] >= 0).all() and sorted(mp.out_maps[0]) == list(range(2304))
    assert sorted(mp.out_maps[1]) == list(range(512))
    conv2 = mp.layer_slices(1)
    assert max(s.sources for s in conv2) < 144 and min(s.sources for s in conv2) >= 1
    assert max(len(s.dests) for s in mp.layer_slices(0)) < 33   # never all 32 conv2 PEs + host
    assert mp.layer_slices(2)[0].sources == 32
    assert mp.pe.conv and mp.pe.conv_inputs == 2304 and mp.pe.conv_kernel == 5
    mp.save(tmp_path / "plan.npz")
    back = MeshPlan.load(tmp_path / "plan.npz")
    assert back.convs == mp.convs and all((a == b).all() for a, b in zip(back.out_maps[:2], mp.out_maps[:2],
                                                                          strict=True))
    assert back.slices == mp.slices and back.describe() == mp.describe()


def test_conv_mode_config_words():
    """A conv-mode slice is configured with its registers (KH != 0, the tile, CH_WORDS, POOL_LOW), one threshold
    per neuron, the kernel slice (C * KH * KW rows x the tile's lanes) and the input map; a dense-mode slice of
    the same plan gets KH = 0."""
    net = _conv_pool_net()   # 1x4x4 -> conv 2x2, padding 1 -> 1x5x5 -> 2x2 pool -> 1x2x2 -> dense 2
    mp = plan_mesh(net, 2, 2, neurons=16, lanes=2)
    assert mp.convs[0] == {"in_shape": [1, 4, 4], "kernel": [2, 2], "stride": 1, "padding": 1, "pool": 2}
    assert [s.tile for s in mp.layer_slices(0)] == [(0, 1, 0, 0, 2, 4), (0, 1, 2, 0, 2, 4)]   # 2 lanes x 8 positions
    fl = flit_layout(mp.noc)
    codec = PECodec(mp.pe)

    def pe_words(node):
        """(the node's ordinary configuration words decoded, its weight stream words)."""
        got = [int(unpack(fl, w)["payload"]) for w in mp.config_flits()
               if unpack(fl, w)["kind"] == FlitKind.PE_CFG and (unpack(fl, w)["x"], unpack(fl, w)["y"]) == node]
        body = codec.stream_body(got)
        return [unpack(L.cfg_layout(mp.pe), w) for w in got[:len(got) - body]], got[len(got) - body:]

    words, stream = pe_words((1, 0))
    regs = {L.Reg(int(w.row)).name: int(w.data) for w in words if w.target == L.CfgTarget.REG}
    assert regs.pop("STREAM") == pack(L.stream_reg_layout(mp.pe), count=4, row_words=mp.pe.words)  # 4 kernel rows
    assert regs == {"ACTIVE": 16, "NEURON_BASE": 4, "SOURCES": 1, "T_END": net.t_end, "POOL_SHIFT": 2, "KH": 2,
                    "KW": 2, "STRIDE": 0, "PAD": 1, "TILE_Y0": 2, "TILE_X0": 0, "TILE_H": 2, "TILE_W": 4,
                    "CH_WORDS": 1, "POOL_LOW": 1}
    assert sum(w.target == L.CfgTarget.THRESHOLD for w in words) == 16
    assert sum(w.target == L.CfgTarget.WEIGHT for w in words) == 0   # the kernel goes as a weight stream:
    k = mp.pe.stream_weights                                         # 4 rows x one word of 2 lanes
    assert len(stream) == -(-4 * 2 // k)
    got = [int(v) for w in stream for v in L.stream_word_layout(mp.pe).from_bits(w)][:8]
    assert got == mp.conv_setup(mp.layer_slices(0)[1]).kernel.reshape(-1).tolist()
    assert sum(w.target == L.CfgTarget.INPUT_MAP for w in words) == 16
    dense, _ = pe_words((0, 1))
    assert {int(w.data) for w in dense if w.target == L.CfgTarget.REG and int(w.row) == L.Reg.KH.value} == {0}
    # pooled outputs: tile 0 holds pooled (0, 0), (0, 1) as indices 0, 1 (channel 0 in lane 0, lane 1 padding)
    np.testing.assert_array_equal(mp.out_maps[0], [0, -1, 1, -1, 2, -1, 3, -1])
    assert mp.outputs(0) == 8 and mp.weights[1].shape == (8, 2) and not mp.weights[1][1::2].any()


def test_conv_mode_host_sends_only_reached_tiles():
    """The host sends an input spike only to the first-layer conv-mode PEs whose tiles it reaches (STEP_END to
    all); a corner pixel of a 5x5 kernel, no padding, reaches one tile."""
    net = _fmnist_conv_shape(np.random.default_rng(1))
    mp = plan_mesh(net, 16, 12, window=1)
    times = np.full(784, net.no_spike)
    times[0] = 3
    fc = mp.codec
    got = [fc.decode(w) for w in mp.image_steps(times)[4][1]]
    spikes = [f for f in got if f.event.kind == L.EventKind.SPIKE]
    assert len(spikes) == 1 and spikes[0].event.index == 0
    assert sum(f.event.kind == L.EventKind.STEP_END for f in got) == 144


@pytest.mark.parametrize("shape,k,stride,padding", [((2, 7, 7), 3, 1, 1), ((1, 9, 8), 5, 2, 2), ((3, 6, 6), 2, 2, 0),
                                                    ((1, 5, 5), 1, 1, 1)])
def test_conv_reach_and_fanout_match_the_dense_expansion(shape, k, stride, padding):
    """conv_fanout (SOPs per input spike) and conv_reach (does an input reach a tile) against the structure of
    model.conv_as_dense with nonzero weights."""
    oc = 2
    conv = model.Conv2d(in_shape=shape, weight=np.ones((oc, shape[0], k, k), dtype=np.int64),
                        threshold=np.ones(oc, dtype=np.int64), stride=stride, padding=padding)
    dense = model.conv_as_dense(conv) != 0   # (inputs, OC * OH * OW)
    np.testing.assert_array_equal(conv_fanout(conv), dense.sum(1))
    _, oh, ow = conv.out_shape
    for tile in [ConvTile(0, oc, 0, 0, oh, ow), ConvTile(0, 1, 1, 0, max(1, oh - 2), 2),
                 ConvTile(1, 2, oh - 1, ow - 1, 1, 1)]:
        cols = np.zeros((oc, oh, ow), dtype=bool)
        cols[:, tile.y0:tile.y0 + tile.h, tile.x0:tile.x0 + tile.w] = True
        np.testing.assert_array_equal(conv_reach(conv, tile), dense[:, cols.reshape(-1)].any(1))


def test_balance_dense_layers():
    """balance for a network of dense layers: 784-100-10 on 3x2 takes 2 + 1 PEs of 52 neurons, balanced 5 + 1 of
    20 (every node; the output layer keeps its one PE), the same plan as neurons=20; a 1x1 mesh is unchanged."""
    net = model.random_network("784-100-10", seed=0)
    plain = plan_mesh(net, 3, 2, lanes=4)
    bal = plan_mesh(net, 3, 2, lanes=4, balance=True)
    assert [len(plain.layer_slices(n)) for n in range(2)] == [2, 1] and plain.pe.neurons == 52
    assert [len(bal.layer_slices(n)) for n in range(2)] == [5, 1] and bal.pe.neurons == 20
    assert bal.describe() == plan_mesh(net, 3, 2, neurons=20, lanes=4).describe()
    one = model.random_network("6-5", seed=0)
    assert plan_mesh(one, 1, 1, lanes=2, balance=True).describe() == plan_mesh(one, 1, 1, lanes=2).describe()
