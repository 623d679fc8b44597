"""The framed protocol: CRC-8, and every status code of the engine through the simulated link."""

import numpy as np
import pytest

import model
from fpga.driver import BoardError, HostLink
from fpga.protocol import MAX_PAYLOAD, SYNC_RESP, Cmd, ProtocolLayout, Status, crc8, request, response
from fpga.sim import SimTransport
from fpga.top import LinkCore
from host.codec import PECodec
from host.plan import StackPlan


def test_crc8_check_value():
    # CRC-8/SMBUS catalogue check value.
    assert crc8(b"123456789") == 0xF4
    frame = request(Cmd.CFG, b"\x01\x02")
    assert frame[0] == 0xA5 and crc8(frame[1:-1]) == frame[-1]
    with pytest.raises(ValueError, match="MAX_PAYLOAD"):
        request(Cmd.CFG, bytes(MAX_PAYLOAD + 1))


def test_spike_packing_roundtrip():
    lay = ProtocolLayout(index_bits=10, time_bits=8, cfg_bits=50, weight_bits=8, in_depth=4, out_depth=4, cfg_weights=4)
    assert (lay.weight_word_bits, lay.weight_bytes) == (32, 4)   # a WEIGHTS entry is one word of 4 weights
    assert lay.spike_bytes == 3 and lay.cfg_bytes == 7
    assert lay.unpack_spike(lay.pack_spike(1000, 254)) == (1000, 254)
    assert ProtocolLayout.from_info(lay.info_payload()).__dict__ == lay.__dict__


@pytest.fixture(scope="module")
def link():
    net = model.random_network("6-4-3", seed=5, time_bits=5)
    pl = StackPlan.of(net)
    pe = pl.pe_config(net, lanes=1)
    return HostLink(SimTransport(LinkCore(pe, in_depth=6, out_depth=4), timeout=100_000)), pe


def raw(link, frame: bytes) -> tuple[int, int, bytes]:
    """Send a raw frame, return (cmd, status, payload) of the response (checking its CRC)."""
    port = link.port
    port.write(frame)
    head = port.read(5)
    assert head[0] == SYNC_RESP, head
    n = int.from_bytes(head[3:5], "little")
    rest = port.read(n + 1)
    assert crc8(head[1:] + rest[:-1]) == rest[-1]
    return head[1], head[2], rest[:-1]


def test_info(link):
    link, pe = link
    lay = link.info()
    assert (lay.index_bits, lay.time_bits, lay.weight_bits, lay.in_depth, lay.out_depth, lay.cfg_weights) == \
        (pe.index_bits, pe.time_bits, pe.weight_bits, 6, 4, pe.cfg_weights)


def test_error_statuses(link):
    link, pe = link
    lay = link.layout
    bad = bytearray(request(Cmd.INFO))
    bad[-1] ^= 0x01
    assert raw(link, bytes(bad))[:2] == (Cmd.INFO, Status.BAD_CRC)
    assert raw(link, request(0x7E))[:2] == (0x7E, Status.BAD_CMD)
    assert raw(link, request(Cmd.CFG, bytes(lay.cfg_bytes + 1)))[:2] == (Cmd.CFG, Status.BAD_LENGTH)
    assert raw(link, request(Cmd.INFO, b"\x00"))[:2] == (Cmd.INFO, Status.BAD_LENGTH)
    # LEN above MAX_PAYLOAD is answered right after the header.
    over = bytes([0xA5, Cmd.CFG]) + (MAX_PAYLOAD + 1).to_bytes(2, "little")
    assert raw(link, over)[:2] == (Cmd.CFG, Status.BAD_LENGTH)
    # Spike times must not decrease; a full input buffer is refused.
    with pytest.raises(BoardError, match="ORDER"):
        link.spikes([(0, 5), (1, 3)])
    with pytest.raises(BoardError, match="INPUT_FULL"):
        link.spikes([(k % 6, 1) for k in range(7)])
    # RUN: t_end out of range, or a buffered spike after t_end.
    with pytest.raises(BoardError, match="RANGE"):
        link.run(pe.max_t_end + 1)
    link.spikes([(0, 20)])
    with pytest.raises(BoardError, match="RANGE"):
        link.run(10)
    # The link still works after every error.
    assert link.info().in_depth == 6
    _, status, payload = raw(link, response(Cmd.INFO, 0)[:0] + request(Cmd.INFO))
    assert status == Status.OK and len(payload) == len(lay.info_payload())


def test_run_output_full(link):
    """RUN and RESULT: every weight of input 0 is 1 and every threshold 1, so all seven neurons fire at
    t = 21 on one buffered spike (input 0 at t = 20). The output buffer holds four: the status is OUTPUT_FULL,
    the first four are kept, and the prediction is the lowest index."""
    link, pe = link
    # A RUN empties the input buffer, whatever the tests before left there (pytest-xdist may run them on
    # another worker, or not at all).
    link.run(pe.max_t_end)
    link.spikes([(0, 20)])
    weight = np.zeros((pe.fan_in, pe.neurons), dtype=np.int64)
    weight[0] = 1
    link.cfg(PECodec(pe).layer_cfg_words(weight, np.ones(pe.neurons, dtype=np.int64), t_end=pe.max_t_end))
    res = link.run(pe.max_t_end)
    assert res.cycles > pe.max_t_end
    assert pe.neurons == 7
    assert list(res.spikes) == [(j, 21) for j in range(4)]
    assert res.prediction == 0 and res.overflow
    assert link.result() == res
