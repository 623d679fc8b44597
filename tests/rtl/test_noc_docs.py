"""docs/noc.md shows the flit layouts the code builds (default PEConfig, 4 x 4 mesh)."""

from __future__ import annotations

from pathlib import Path

from rtl.config import PEConfig
from rtl.mesh import ni_value_bits, noc_config
from rtl.noc_layouts import flit_layout, layout_table, ni_cfg_layout

DOC = Path(__file__).resolve().parents[2] / "docs" / "noc.md"


def test_doc_tables_match_layouts():
    pe = PEConfig()
    noc = noc_config(pe, 4, 4)
    flit = flit_layout(noc)
    text = DOC.read_text()
    assert f"Flit (`flit_layout`, {flit.size} bits):\n\n{layout_table(flit)}\n" in text
    assert layout_table(ni_cfg_layout(noc, ni_value_bits(pe))) in text
