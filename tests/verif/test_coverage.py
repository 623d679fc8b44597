"""Functional coverage (verif/coverage.py): bookkeeping and a small monitored router run (default suite);
``-m slow``: the sweep hits every named bin."""

from __future__ import annotations

import pytest

from rtl.noc_layouts import NocConfig
from verif import coverage as C


def test_bins_and_report():
    cov = C.Coverage()
    cov.hit("pe.v_eq_theta", "plain")
    cov.hit("pe.v_eq_theta", "plain", 2)
    assert cov.count("pe.v_eq_theta", "plain") == 3
    with pytest.raises(KeyError):
        cov.hit("pe.no_such_bin", "plain")
    doc, text = C.report(cov, None, 0)
    assert "pe.v_eq_theta/plain" not in doc["default_missed"]
    assert "pe.v_eq_theta/stalled" in doc["default_missed"]
    assert len(doc["bins"]) == sum(len(c) for _, c in C.BINS.values())
    assert "pe.v_eq_theta" in text


def test_router_run_is_observed():
    """A short router run under backpressure: contention and held outputs are seen from outside."""
    cov = C.Coverage()
    C.run_router(cov, NocConfig(width=3, height=2, payload_bits=16), 1, 1, seed=3, per_port=8)
    assert cov.count("router.output_held", "stalled") > 0
    assert sum(cov.count(f"router.contention_{p}", "stalled") for p in ("local", "north", "east", "south",
                                                                          "west")) > 0


@pytest.mark.slow
def test_sweep_hits_every_bin(tmp_path):
    cov = C.Coverage()
    C.sweep(cov, seeds=2, base=0, progress=lambda msg: None)
    assert not cov.missed(), cov.missed()
