"""``yoso verilog``: writes Verilog (optionally linted), sizes the PE from a network file, and rejects bad
options with one line naming the option and the limit, leaving no output file."""

from __future__ import annotations

import json

import pytest

import model
from yoso.cli import main


def test_verilog_from_network_with_lint(tmp_path, capsys):
    net = model.random_network("30-12-5", seed=0, time_bits=6)
    model.save(net, tmp_path / "net.npz")
    out = tmp_path / "pe.v"
    assert main(["verilog", "--net", str(tmp_path / "net.npz"), "--lanes", "4", "--lint", "--json",
                 "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["lint"] == "clean" and info["lines"] > 1000
    assert info["config"]["fan_in"] == 30 and info["config"]["neurons"] == 12 and info["config"]["time_bits"] == 6
    assert "module yoso_pe(" in out.read_text()


@pytest.mark.parametrize("args, message", [
    (["--lanes", "3"], "--lanes: 3 is not a power of two (allowed 1, 2, 4, ..., 64)"),
    (["--fan-in", "0"], "--fan-in: 0 is outside the allowed range 1..1048576"),
    (["--neurons", "6", "--lanes", "4"], "--neurons: 6 is not a multiple of lanes=4"),
    (["--name", "1bad"], "--name: '1bad' is not a Verilog identifier"),
])
def test_bad_options(tmp_path, capsys, args, message):
    out = tmp_path / "pe.v"
    assert main(["verilog", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"yoso verilog: error: {message}"
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_network_needs_more_than_given(tmp_path, capsys):
    net = model.random_network("30-12-5", seed=0)
    model.save(net, tmp_path / "net.npz")
    assert main(["verilog", "--net", str(tmp_path / "net.npz"), "--neurons", "8", "--out",
                 str(tmp_path / "pe.v")]) == 2
    assert "--neurons: 8 is below the 12 that" in capsys.readouterr().err
    assert not (tmp_path / "pe.v").exists()
