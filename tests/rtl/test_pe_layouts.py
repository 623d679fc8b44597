"""docs/pe.md's layout tables are the ones generated from rtl/layouts.py."""

from __future__ import annotations

from pathlib import Path

from rtl import layouts as L
from rtl.config import PEConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "pe.md"


def test_doc_tables_match_structs():
    text = DOC.read_text()
    begin, end = text.index("<!-- layouts:begin -->\n"), text.index("<!-- layouts:end -->")
    assert text[begin + len("<!-- layouts:begin -->\n"):end] == L.markdown_tables(PEConfig())


def test_enum_values_documented():
    text = DOC.read_text()
    for enum in (L.EventKind, L.CfgTarget):
        for member in enum:
            assert f"{member.name}={member.value}" in text or f"`{member.name}` ({member.value})" in text


def test_event_fields_cover_payload():
    cfg = PEConfig(neurons=16, fan_in=100, lanes=4, time_bits=6)
    ev = L.event_layout(cfg)
    assert ev.size == 2 + cfg.index_bits + 6
    assert [name for name, _ in ev] == ["kind", "index", "time"]
