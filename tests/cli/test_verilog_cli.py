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


def test_mesh_verilog_with_lint(tmp_path, capsys):
    out = tmp_path / "mesh.v"
    assert main(["verilog", "--mesh", "2x2", "--neurons", "4", "--fan-in", "8", "--lanes", "2", "--time-bits", "4",
                 "--threshold-bits", "8", "--lint", "--json", "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["lint"] == "clean" and info["top"] == "yoso_mesh" and info["mapping"] is None
    assert info["noc"]["width"] == 2 and info["noc"]["height"] == 2 and info["config"]["lanes"] == 2
    names = [p["name"] for p in info["ports"]]
    assert names == ["clk", "rst", "host_i__payload", "host_i__valid", "host_i__ready", "host_o__payload",
                     "host_o__valid", "host_o__ready", "abort"]
    text = out.read_text()
    assert "module yoso_mesh(" in text and text.count("\nmodule ") > 4   # routers, NIs, PEs below the top


def test_mesh_verilog_from_network(tmp_path, capsys):
    net = model.random_network("30-12-5", seed=0, time_bits=6)
    model.save(net, tmp_path / "net.npz")
    out = tmp_path / "mesh.v"
    assert main(["verilog", "--mesh", "2x1", "--net", str(tmp_path / "net.npz"), "--neurons", "12", "--json",
                 "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["time_bits"] == 6 and info["config"]["fan_in"] >= 30 and info["config"]["neurons"] >= 12
    assert "layer 0: 30->12 on 1 PE(s)" in info["mapping"] and out.exists()


@pytest.mark.parametrize("args, message", [
    (["--mesh", "2by2"], "--mesh: expected WxH such as 2x2, got '2by2'"),
    (["--mesh", "0x2"], "--mesh: width and height must be in 1..64, got 0x2"),
    (["--mesh", "65x1"], "--mesh: width and height must be in 1..64, got 65x1"),
    (["--mesh", "1x1", "--net", "{net}"], "--mesh 1x1: the network needs 2 PEs of at most 64 neurons (layer 0: 12 "
                                          "neurons -> 1, layer 1: 5 neurons -> 1), the mesh has 1"),
    (["--mesh", "2x1", "--net", "{tmp}/missing.npz"], "--net: {tmp}/missing.npz: no such file"),
    (["--mesh", "2x1", "--net", "{tmp}/garbage.npz"], "--net: {tmp}/garbage.npz: not a readable .npz network file "
                                                      "(File is not a zip file)"),
    (["--mesh", "2x1", "--net", "{net}", "--fan-in", "64"], "--fan-in: with --mesh --net the mapping sizes the PEs "
                                                             "(host/plan.py); leave it out"),
    (["--mesh", "2x1", "--net", "{net}", "--window", "0"], "--window: must be >= 1, got 0"),
    (["--mesh", "2x1", "--window", "2"], "--window: only with --mesh --net (it sizes the mapped PEs' defer FIFOs)"),
    (["--window", "2"], "--window: only with --mesh --net"),
    (["--mesh", "2x1", "--lanes", "3"], "--lanes: 3 is not a power of two (allowed 1, 2, 4, ..., 64)"),
])
def test_mesh_bad_input(tmp_path, capsys, args, message):
    model.save(model.random_network("30-12-5", seed=0), tmp_path / "net.npz")
    (tmp_path / "garbage.npz").write_text("garbage")
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "mesh.v"
    fill = {"net": str(tmp_path / "net.npz"), "tmp": str(tmp_path)}
    assert main(["verilog", *[a.format(**fill) for a in args], "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"yoso verilog: error: {message.format(**fill)}"
    assert sorted(tmp_path.iterdir()) == before   # no output, no temporary file
