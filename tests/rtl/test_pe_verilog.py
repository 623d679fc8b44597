"""Verilog of the PE: generated, lint-clean under ``verilator --lint-only -Wall`` with exactly the waivers
that docs/pe.md lists; impossible configs fail at elaboration with one message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rtl.config import PEConfig
from rtl.generate import LINT_WAIVERS, lint, verilog

DOC = Path(__file__).resolve().parents[2] / "docs" / "pe.md"


@pytest.mark.parametrize("cfg", [PEConfig(neurons=16, fan_in=40, lanes=4, time_bits=5),
                                 PEConfig(neurons=3, fan_in=9, lanes=1, weight_bits=4, threshold_bits=8)],
                         ids=["lanes4", "lanes1"])
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


def test_pe_rejects_non_config():
    from rtl.pe import PE

    with pytest.raises(TypeError, match="^config: expected a PEConfig, got dict$"):
        PE({})
