"""Board tops elaborate for every board; fit errors and CLI errors are one clear line; place and route per
board family (slow)."""

import json
import shutil
from pathlib import Path

import pytest

import model
from fpga.boards import BOARDS, BoardTop, FitError, estimate, memory_blocks
from host.plan import StackPlan
from yoso.cli import main as yoso


def small(tmp_path, arch="20-8-4", seed=2) -> tuple[Path, model.Network]:
    net = model.random_network(arch, seed=seed)
    path = tmp_path / "net.npz"
    model.save(net, path)
    return path, net


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_top_elaborates(board, tmp_path):
    _, net = small(tmp_path)
    pl = StackPlan.of(net)
    b = BOARDS[board]
    top = BoardTop(pl.pe_config(net, lanes=2), board=b, baud=1_000_000, in_depth=20, out_depth=8)
    plan = b.platform().prepare(top, name="yoso")
    files = plan.files
    assert "yoso.il" in files and "build_yoso.sh" in files
    assert top.divisor == round(b.clk_hz / 1e6)
    assert "top.core.pe" in files["yoso.il"] or "\\top" in files["yoso.il"]


def test_memory_blocks():
    ice, ecp = BOARDS["icebreaker"], BOARDS["ulx3s-85f"]
    assert memory_blocks(ice, 16, 256) == 1 and memory_blocks(ice, 32, 512) == 4 and memory_blocks(ice, 8, 513) == 2
    assert memory_blocks(ecp, 36, 512) == 1 and memory_blocks(ecp, 32, 84552) == 166


def test_fit_error_names_the_numbers():
    net = model.random_network("784-100-10", seed=0)
    pl = StackPlan.of(net)
    pe = pl.pe_config(net, lanes=4)
    with pytest.raises(FitError, match=r"does not fit iCE40UP5K: needs about \d+ block RAMs \(weights \d+: "
                                       r"884 rows x 112 neurons x 8 bits = 792064 bits\), the device has 30"):
        estimate(pe, BOARDS["icebreaker"], in_depth=784, out_depth=100)
    assert estimate(pe, BOARDS["ulx3s-85f"], in_depth=784, out_depth=100)["total_blocks"] <= 208


def test_cli_errors(tmp_path, capsys):
    big = tmp_path / "big.npz"
    model.save(model.random_network("784-100-10", seed=0), big)
    assert yoso(["fpga", "--board", "icebreaker", "--net", str(big)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not fit iCE40UP5K" in err and "the device has 30" in err
    path, _ = small(tmp_path)
    assert yoso(["fpga", "--board", "icebreaker", "--net", str(path), "--mesh", "2by2"]) == 2
    assert "--mesh: expected WxH" in capsys.readouterr().err
    # 20-8-4 with 4 neurons per PE needs 2 + 1 PEs.
    assert yoso(["fpga", "--board", "icebreaker", "--net", str(path), "--mesh", "2x1", "--neurons", "4"]) == 2
    err = capsys.readouterr().err
    assert "--mesh 2x1: the network needs 3 PEs" in err and "the mesh has 2" in err
    assert yoso(["fpga", "--board", "ulx3s-85f", "--net", str(big), "--mesh", "8x8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not fit LFE5U-85F" in err and "64 PEs x" in err
    assert yoso(["fpga", "--board", "icebreaker", "--net", str(path), "--lanes", "3"]) == 2
    assert "--lanes" in capsys.readouterr().err


@pytest.mark.parametrize("mesh", [[], ["--mesh", "2x2", "--neurons", "4"]])
def test_cli_verilog_only(tmp_path, mesh):
    path, _ = small(tmp_path)
    out = tmp_path / "top.v"
    assert yoso(["fpga", "--board", "ulx3s-85f", "--net", str(path), "--verilog-only", str(out), *mesh]) == 0
    text = out.read_text()
    assert "module yoso_top" in text and "input rx" in text.replace("wire ", "") and "output tx" in \
        text.replace("wire ", "").replace("reg ", "")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".top.v")]   # no temp file left


def _pnr(board, tmp_path, capsys, lanes):
    path, _ = small(tmp_path, arch="64-16-10", seed=3)
    build = tmp_path / "build"
    assert yoso(["fpga", "--board", board, "--net", str(path), "--lanes", str(lanes), "--build-dir", str(build),
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    print(json.dumps(rep, indent=1))
    assert rep["fmax_mhz"] > 10
    assert rep["cycles_per_image"] > 0 and rep["latency_at_fmax_us"] > 0
    for v in rep["resources"].values():
        assert 0 <= v["used"] <= v["available"]
    assert Path(rep["bitstream"]).is_file()
    return rep, path, build


@pytest.mark.slow
def test_place_and_route_ice40(tmp_path, capsys):
    rep, path, build = _pnr("icebreaker", tmp_path, capsys, lanes=1)
    assert rep["resources"]["BRAM (EBR 4 Kbit)"]["used"] > 0
    if shutil.which("iceprog"):
        # No board is attached to a CI machine: the programmer's failure is reported plainly.
        assert yoso(["fpga", "--board", "icebreaker", "--net", str(path), "--lanes", "1", "--no-latency",
                     "--build-dir", str(build), "--program"]) == 2
        assert "--program: no icebreaker board found" in capsys.readouterr().err


@pytest.mark.slow
def test_place_and_route_ecp5(tmp_path, capsys):
    rep, _, _ = _pnr("ulx3s-85f", tmp_path, capsys, lanes=4)
    assert rep["resources"]["BRAM (DP16KD 18 Kbit)"]["used"] > 0
