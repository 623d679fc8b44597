"""cocotb testbench of one generated router (launched by tests/verif/test_router_cocotb.py).

Environment: ``ROUTER`` (JSON: width, height, payload_bits, fifo_depth, x, y), ``ROUTER_SEED``,
``ROUTER_FLITS`` (per input port), ``ROUTER_IDLE`` / ``ROUTER_STALL`` (probabilities of an idle cycle on an
input and of backpressure on an output). Every input sends random flits, every output applies random
backpressure; the checker (verif/router_traffic.py) wants each flit exactly once at its XY port, in
per-source order, and the run must end (no deadlock).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from host.codec import pack, unpack
from rtl.noc_layouts import PORT_NAMES, NocConfig, Port, flit_layout
from verif.router_traffic import check_delivery, make_traffic


async def run_traffic(dut, cfg: NocConfig, x: int, y: int, seed: int, per_port: int, idle: float, stall: float,
                      max_cycles: int = 200_000):
    rng = random.Random(seed)
    lay = flit_layout(cfg)
    traffic = make_traffic(rng, cfg, per_port)
    received = {p: [] for p in Port}
    total = per_port * len(Port)
    sent = {p: 0 for p in Port}
    valid = {p: 0 for p in Port}
    words = {p: [pack(lay, **f) for f in traffic[p]] for p in Port}
    sig = {p: {k: getattr(dut, f"{PORT_NAMES[p]}_{k}") for k in ("i__valid", "i__payload", "i__ready",
                                                                    "o__valid", "o__payload", "o__ready")}
           for p in Port}
    for p in Port:
        sig[p]["i__valid"].value = 0
        sig[p]["o__ready"].value = 0
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    cycles = 0
    while sum(len(v) for v in received.values()) < total:
        ready = {}
        for p in Port:
            s = sig[p]
            if sent[p] < per_port and (valid[p] or rng.random() >= idle):
                valid[p] = 1
                s["i__payload"].value = words[p][sent[p]]
            else:
                valid[p] = 0
            s["i__valid"].value = valid[p]
            ready[p] = int(rng.random() >= stall)
            s["o__ready"].value = ready[p]
        await RisingEdge(dut.clk)
        cycles += 1
        assert cycles < max_cycles, f"seed {seed}: {total - sum(map(len, received.values()))} flits missing " \
                                    f"after {max_cycles} cycles (deadlock?)"
        for p in Port:
            s = sig[p]
            if valid[p] and s["i__ready"].value:
                sent[p] += 1
                valid[p] = 0
            if ready[p] and s["o__valid"].value:
                f = unpack(lay, s["o__payload"].value.to_unsigned())
                received[p].append((int(f.x), int(f.y), int(f.host), int(f.payload)))
    for p in Port:
        sig[p]["i__valid"].value = 0
        sig[p]["o__ready"].value = 1
    for _ in range(20):  # a late duplicate would show up here
        await RisingEdge(dut.clk)
        for p in Port:
            if sig[p]["o__valid"].value:
                f = unpack(lay, sig[p]["o__payload"].value.to_unsigned())
                received[p].append((int(f.x), int(f.y), int(f.host), int(f.payload)))
    check_delivery(traffic, received, x, y)
    return cycles


@cocotb.test()
async def test_traffic(dut):
    spec = json.loads(os.environ["ROUTER"])
    x, y = spec.pop("x"), spec.pop("y")
    cfg = NocConfig(**spec)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    seed = int(os.environ["ROUTER_SEED"])
    cycles = await run_traffic(dut, cfg, x, y, seed, int(os.environ["ROUTER_FLITS"]),
                               float(os.environ["ROUTER_IDLE"]), float(os.environ["ROUTER_STALL"]))
    dut._log.info(f"seed {seed}: {5 * int(os.environ['ROUTER_FLITS'])} flits in {cycles} cycles")
