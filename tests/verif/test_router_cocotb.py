"""The generated router Verilog under cocotb (Icarus): random traffic from all five ports with random
backpressure on all five outputs; every flit exactly once, at its XY port, in per-source order; saturation
(always valid, always or mostly not ready) ends."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from rtl.noc_layouts import NocConfig
from rtl.router import Router
from verif.noc_runner import build, run_test

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) not installed")


def run(cfg: NocConfig, x: int, y: int, *, seed: int, flits: int, idle: float, stall: float, name: str,
        sim: str = "icarus"):
    print(f"case seed {seed}")
    bdir = build(Router(cfg, x=x, y=y), "yoso_router", sim)
    spec = {**dataclasses.asdict(cfg), "x": x, "y": y}
    spec.pop("max_dests")
    run_test(bdir, "yoso_router", sim, module="verif.cocotb_router", testcase="test_traffic", name=name,
             env={"ROUTER": json.dumps(spec), "ROUTER_SEED": str(seed), "ROUTER_FLITS": str(flits),
                  "ROUTER_IDLE": str(idle), "ROUTER_STALL": str(stall)})


def test_random_traffic_backpressure(seed):
    run(NocConfig(width=3, height=3, payload_bits=16), 1, 1, seed=seed, flits=200, idle=0.3, stall=0.3,
        name="random")


def test_saturation_heavy_backpressure(seed):
    run(NocConfig(width=3, height=3, payload_bits=16), 1, 1, seed=seed + 1, flits=200, idle=0.0, stall=0.8,
        name="saturation")


def test_corner_router_shallow_fifo(seed):
    run(NocConfig(width=4, height=2, payload_bits=16, fifo_depth=2), 0, 0, seed=seed + 2, flits=200,
        idle=0.1, stall=0.5, name="corner")


@pytest.mark.slow
@pytest.mark.parametrize("k", range(20))
def test_many_seeds(k, seed):
    run(NocConfig(width=4, height=3, payload_bits=16, fifo_depth=2 + k % 3), k % 4, k % 3, seed=seed + 100 + k,
        flits=500, idle=(k % 4) / 5, stall=(k % 5) / 5, name=f"seed{k}")
