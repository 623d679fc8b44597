"""cocotb testbenches of the generated PE Verilog (verif/cocotb_pe.py): every scenario over several seeds,
bit-exact against model.run, random idle cycles on ``cfg``/``i`` and backpressure on ``o``.

Default: the simulator named by SIM (icarus unless set), 5 seeds per scenario. ``-m slow``: the
Verilator sweep, 100 seeds per scenario and config. Replay one case:
``verif.runner.run(CONFIGS[config], scenarios=[name], seeds="<seed>", name="replay")``.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from rtl.config import PEConfig
from verif import runner
from verif.scenarios import SCENARIOS

CONFIGS = {
    "lanes4": PEConfig(neurons=16, fan_in=48, lanes=4, time_bits=5, max_sources=4, defer_depth=6, fifo_depth=2),
    "lanes1": PEConfig(neurons=3, fan_in=9, lanes=1, weight_bits=4, time_bits=4, threshold_bits=8, max_sources=2),
    "wide": PEConfig(neurons=32, fan_in=64, lanes=8, time_bits=8, threshold_bits=16, max_sources=8),
}


def check(summary: dict):
    print(json.dumps(summary))
    bad = {k: v for k, v in summary.items() if not k.startswith("_") and v["mismatches"]}
    assert not bad, bad
    assert all(summary[s]["seeds"] > 0 for s in SCENARIOS)


@pytest.mark.parametrize("config", ["lanes4", "lanes1"])
def test_cocotb_scenarios(config):
    """5 seeds per scenario on the simulator named by SIM (default icarus)."""
    sim = runner.simulator()
    if sim == "icarus" and shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog (iverilog) not installed")
    print(f"replay: SIM={sim} config={config} seeds 0-4")
    check(runner.run(CONFIGS[config], scenarios=list(SCENARIOS), seeds="0-4", name=f"ci-{config}", sim=sim))


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_verilator_sweep(config):
    """>= 100 seeds per scenario (PE_SWEEP_SEEDS overrides, e.g. 0-999)."""
    seeds = os.environ.get("PE_SWEEP_SEEDS", "0-99")
    print(f"replay: SIM=verilator config={config} seeds {seeds}")
    summary = runner.run(CONFIGS[config], scenarios=list(SCENARIOS), seeds=seeds, name=f"sweep-{config}",
                         sim="verilator")
    check(summary)
    assert all(summary[s]["seeds"] >= 100 for s in SCENARIOS)
