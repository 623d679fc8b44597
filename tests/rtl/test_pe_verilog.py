"""Verilog of the PE and of the mesh: generated, lint-clean under ``verilator --lint-only -Wall`` with exactly
the waivers that docs/pe.md and docs/noc.md list; impossible configs fail at elaboration with one message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rtl.config import PEConfig
from rtl.generate import LINT_WAIVERS, MESH_LINT_WAIVERS, MESH_TOP, convert, lint, mesh_verilog, ports, verilog

DOC = Path(__file__).resolve().parents[2] / "docs" / "pe.md"
NOC_DOC = DOC.with_name("noc.md")


@pytest.mark.parametrize("cfg", [PEConfig(neurons=16, fan_in=40, lanes=4, time_bits=5),
                                 PEConfig(neurons=3, fan_in=9, lanes=1, weight_bits=4, threshold_bits=8),
                                 PEConfig(neurons=16, fan_in=50, lanes=2, conv_inputs=40, conv_size=7, conv_kernel=5)],
                         ids=["lanes4", "lanes1", "conv"])
def test_verilog_lint_clean(tmp_path, cfg):
    text = verilog(cfg)
    for port in ("clk", "rst", "cfg__payload", "cfg__valid", "cfg__ready", "i__payload", "i__valid", "i__ready",
                 "o__payload", "o__valid", "o__ready"):
        assert re.search(rf"\b(input|output)\b[^;]*\b{port}\b", text), port
    path = tmp_path / "yoso_pe.v"
    path.write_text(text)
    proc = lint(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Without the waivers -Wall does complain: the waivers are needed, not decoration.
    proc = lint(path, waivers=())
    assert proc.returncode != 0


def test_waivers_are_documented():
    text = DOC.read_text()
    for w in LINT_WAIVERS:
        assert f"`{w}`" in text, w
    noc = NOC_DOC.read_text()
    for w in set(MESH_LINT_WAIVERS) - set(LINT_WAIVERS):
        assert f"`{w}`" in noc, w


def test_mesh_verilog_lint_clean(tmp_path):
    from rtl.mesh import Mesh, noc_config

    pe = PEConfig(neurons=4, fan_in=8, lanes=2, time_bits=4, threshold_bits=8)
    noc = noc_config(pe, 2, 2)
    mesh = Mesh(pe, noc)
    got = ports(mesh)
    text = convert(mesh, name=MESH_TOP)
    assert text == mesh_verilog(pe, noc)
    flit = 2 * noc.x_bits + 2 * noc.y_bits + 1 + 2 + noc.payload_bits   # x, y, host, src_x, src_y, kind, payload
    assert got == [
        ("clk", "input", 1), ("rst", "input", 1),
        ("host_i__payload", "input", flit), ("host_i__valid", "input", 1), ("host_i__ready", "output", 1),
        ("host_o__payload", "output", flit), ("host_o__valid", "output", 1), ("host_o__ready", "input", 1),
        ("abort", "input", 1)]
    for name, direction, width in got:
        decl = rf"\b{direction}\b\s*" + (rf"\[{width - 1}:0\]\s*" if width > 1 else "") + rf"\b{name}\b"
        assert re.search(decl, text.replace("wire ", "").replace("reg ", "")), name
    assert f"module {MESH_TOP}(" in text
    path = tmp_path / "yoso_mesh.v"
    path.write_text(text)
    proc = lint(path, top=MESH_TOP, waivers=MESH_LINT_WAIVERS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The PE's waivers alone are not enough: the mesh's extra ones are needed.
    assert lint(path, top=MESH_TOP).returncode != 0


def test_pe_rejects_non_config():
    from rtl.pe import PE

    with pytest.raises(TypeError, match="^config: expected a PEConfig, got dict$"):
        PE({})
