"""A whole inference through the simulated UART (bit level, 4 clocks per bit) with the same host driver a
board uses: every layer's spike times and the prediction are compared with the golden model."""

import numpy as np
import pytest

import model
from fpga.boards import BOARDS, board_config
from fpga.driver import HostLink, LinkError, infer, infer_mesh, load_mesh, load_network
from fpga.sim import SimTransport
from fpga.top import LinkCore, UARTTop
from host.plan import StackPlan, plan_mesh


@pytest.mark.parametrize("seed,lanes,spram", [(11, 2, False), (13, 1, True)])
def test_uart_inference_matches_golden_model(seed, lanes, spram):
    """spram: the PE as ``yoso fpga --board icebreaker`` builds it (``fpga.boards.board_config``): the weight
    SRAM single-port in 16-bit rows of two weights (the iCE40UP5K's SPRAM), the request stage between LOAD and
    the memory interface, the smallest FIFOs, the grouped sweep (10 words in groups of 8) and no pooling
    hardware."""
    print(f"seed={seed}")
    net = model.random_network("10-6-4", seed=seed, time_bits=6)
    pl = StackPlan.of(net)
    pe = pl.pe_config(net, lanes=lanes)
    if spram:
        pe = board_config(pe, BOARDS["icebreaker"])
        assert pe.weight_spram and pe.request_stage and pe.sweep_groups == 2 and pe.fetch_stage and not pe.pooling
    assert pe.weight_pack == (2 if spram else 1)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(2, net.n_inputs))
    images[1, :4] = 0  # silent inputs
    x = model.encode(images, net.encoding, net.time_bits)
    ref = model.run(net, x)
    assert (ref.prediction >= 0).any(), "test network should decide for at least one image"

    link = HostLink(SimTransport(UARTTop(pe, divisor=4, in_depth=pl.max_spikes_in, out_depth=pl.max_spikes_out),
                                 timeout=200_000))
    load_network(link, net, pl, pe=pe)          # every weight, zeros between layer blocks included
    for b in range(len(x)):
        got = infer(link, net, x[b], pl)
        for n, want in enumerate(ref.times):
            np.testing.assert_array_equal(got.times[n], want[b].reshape(-1), err_msg=f"image {b}, layer {n}")
        assert got.prediction == ref.prediction[b]
        assert all(c > net.t_end for c in got.cycles)


def test_stream_link_two_layers_back_to_back():
    """The byte-stream core (used for latency runs) with zero rows skipped gives the same spike times."""
    seed = 12
    print(f"seed={seed}")
    net = model.random_network("12-8-5", seed=seed, time_bits=6)
    pl = StackPlan.of(net)
    pe = pl.pe_config(net, lanes=4)
    x = model.encode(np.random.default_rng(seed).integers(0, 256, size=(3, 12)), net.encoding, net.time_bits)
    ref = model.run(net, x)
    link = HostLink(SimTransport(LinkCore(pe, in_depth=pl.max_spikes_in, out_depth=pl.max_spikes_out),
                                 timeout=200_000))
    load_network(link, net, pl, pe=pe, skip_zero_rows=True)
    for b in range(len(x)):
        got = infer(link, net, x[b], pl)
        for n, want in enumerate(ref.times):
            np.testing.assert_array_equal(got.times[n], want[b].reshape(-1), err_msg=f"image {b}, layer {n}")
        assert got.prediction == ref.prediction[b]


def test_geometry_checks():
    net = model.random_network("10-6-4", seed=1, time_bits=6)
    pl = StackPlan.of(net)
    assert pl.row_base == (0, 10) and pl.neuron_base == (0, 6) and (pl.rows, pl.neurons) == (16, 10)
    pe = pl.pe_config(net, lanes=2)
    link = HostLink(SimTransport(LinkCore(pe, in_depth=4, out_depth=8)))
    with pytest.raises(ValueError, match=r"input buffer \(in_depth\): the network needs 10, the board has 4"):
        load_network(link, net, pl, pe=pe)
    with pytest.raises(ValueError, match=r"weights: neuron 1 is not a multiple of the board's cfg_weights \(2\)"):
        link.weights(0, 1, [1])


def test_timeout_is_a_link_error():
    class Dead:
        def write(self, data):
            return len(data)

        def read(self, n):
            return b""

    with pytest.raises(LinkError, match="no response"):
        HostLink(Dead()).info()


@pytest.mark.parametrize("seed", [21])
def test_uart_inference_on_mesh_matches_golden_model(seed):
    """The mesh behind the UART (2x1 nodes, one PE per layer): the mapper's flits go through the same driver;
    every layer's spike times (every PE reports to the host) and the prediction match the golden model."""
    print(f"seed={seed}")
    net = model.random_network("8-4-3", seed=seed, time_bits=5)
    mp = plan_mesh(net, 2, 1, neurons=4, lanes=2)
    x = model.encode(np.random.default_rng(seed).integers(0, 256, size=(1, net.n_inputs)), net.encoding,
                     net.time_bits)
    ref = model.run(net, x)
    in_depth = len(mp.image_flits(x[0]))
    top = UARTTop(mp.pe, divisor=4, in_depth=in_depth, out_depth=7, noc=mp.noc)
    link = HostLink(SimTransport(top, timeout=200_000))
    assert link.info().node_bits == mp.noc.x_bits + mp.noc.y_bits
    load_mesh(link, mp)
    got = infer_mesh(link, mp, x[0])
    for n, want in enumerate(ref.times):
        np.testing.assert_array_equal(got.times[n], want[0].reshape(-1), err_msg=f"layer {n}")
    assert got.prediction == ref.prediction[0]
    assert got.total_cycles > net.t_end
