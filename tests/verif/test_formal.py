"""The formal proofs (verif/formal/): harnesses elaborate (default suite, no solver), every property holds and
every mutant is caught (``-m slow``: SymbiYosys runs; about an hour on 2 shared cores)."""

from __future__ import annotations

import pytest
from amaranth.back import rtlil

from verif.formal import MUTANTS, PROPERTIES, Property, by_name, run_property
from verif.formal.__main__ import main
from verif.formal.load import LoadHarness
from verif.formal.router import RouterHarness


def test_harnesses_elaborate():
    """The two smallest harnesses convert to RTLIL with their checks (the rest in the slow test)."""
    for build in (by_name("fifo").build, lambda: LoadHarness(mutant="early_done")):
        text = rtlil.convert(build(), platform="formal")
        assert '\\FLAVOR "assert"' in text and '\\FLAVOR "assume"' in text


def test_names_unique_and_mutants_target_properties():
    names = [p.name for p in PROPERTIES]
    assert len(names) == len(set(names))
    assert {target for _, target, _, _ in MUTANTS} <= set(names)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        RouterHarness(mode="teleport")
    with pytest.raises(SystemExit):
        main(["--only", "no_such_property"])
    with pytest.raises(SystemExit):
        main(["--depth", "0"])


@pytest.mark.slow
@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.name)
def test_property_holds(prop):
    result = run_property(prop)
    print(result.line())
    assert result.status in ("proven", "bounded"), result.line() + " " + result.note


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m[0])
def test_mutant_is_caught(mutant):
    name, target, build, depth = mutant
    result = run_property(Property(name, f"mutant for {target}", build, depth, prove=False))
    print(result.line())
    assert result.status == "FAILED", f"mutant {name} not caught by {target}: {result.line()}"
