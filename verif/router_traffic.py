"""Random router traffic and its checker, shared by the Amaranth-simulator and cocotb router tests.

A flit's payload names its source port and sequence number (``port << SEQ_BITS | seq``), so the checker can
tell that every flit arrived exactly once, unchanged, at the port XY routing names, in per-source order.
"""

from __future__ import annotations

import random

from rtl.noc_layouts import FlitKind, NocConfig, Port
from rtl.router import route

__all__ = ["SEQ_BITS", "make_traffic", "check_delivery"]

SEQ_BITS = 12


def make_traffic(rng: random.Random, cfg: NocConfig, per_port: int) -> dict[Port, list[dict]]:
    """``per_port`` random flits per input port (random destination anywhere in the mesh; host-bound with
    probability 1/2 when the destination is (0, 0))."""
    traffic = {}
    for p in Port:
        flits = []
        for seq in range(per_port):
            dx, dy = rng.randrange(cfg.width), rng.randrange(cfg.height)
            host = int(dx == 0 and dy == 0 and rng.random() < 0.5)
            flits.append({"x": dx, "y": dy, "host": host, "src_x": 0, "src_y": 0, "kind": FlitKind.EVENT,
                          "payload": (int(p) << SEQ_BITS) | seq})
        traffic[p] = flits
    return traffic


def check_delivery(traffic: dict, received: dict, x: int, y: int) -> None:
    """``received[port]``: (x, y, host, payload) of each flit that left by ``port``, in order. Raises
    AssertionError on a lost, duplicated, corrupted, misrouted or reordered flit."""
    seen = {}
    for out, flits in received.items():
        out = Port(out)
        last_seq = {}
        for fx, fy, fh, payload in flits:
            src, seq = payload >> SEQ_BITS, payload & ((1 << SEQ_BITS) - 1)
            sent = traffic[Port(src)][seq]
            assert (fx, fy, fh) == (sent["x"], sent["y"], sent["host"]), f"flit {src}/{seq} corrupted"
            assert route(x, y, fx, fy, fh) == out, f"flit {src}/{seq} left by {out.name}"
            assert (src, seq) not in seen, f"flit {src}/{seq} duplicated"
            seen[(src, seq)] = out
            assert seq > last_seq.get(src, -1), f"flit {src}/{seq} overtook a flit of the same source"
            last_seq[src] = seq
    total = sum(len(f) for f in traffic.values())
    assert len(seen) == total, f"{total - len(seen)} of {total} flits lost"
