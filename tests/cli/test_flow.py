"""``yoso flow``: train -> export -> golden model -> RTL mesh (Icarus) -> Verilog, one summary."""

import json

import model
from yoso.cli import main


def test_flow_digits_end_to_end(tmp_path, capsys):
    out = tmp_path / "flow"
    rc = main(["flow", "--dataset", "digits", "--arch", "64-12-10", "--epochs", "5", "--qat-epochs", "1",
               "--lr", "5e-3", "--out", str(out), "--mesh", "2x1", "--rtl-images", "2", "--quiet", "--no-plots"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    summary = json.loads((out / "flow.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert summary["fixed_point_test_accuracy"] == report["fixed_point_test_accuracy"] > 0.5
    rtl = summary["rtl"]
    assert rtl["images"] == 2 and rtl["mismatches"] == 0 and rtl["protocol_errors"] == 0
    assert rtl["spikes_compared"] == 2 * (12 + 10) and rtl["predictions_equal_golden"]
    assert rtl["cycles_per_image"] > 0
    text = (out / "yoso_mesh.v").read_text()
    assert "module yoso_mesh" in text and summary["verilog"]["lines"] == text.count("\n")
    assert "bit-exact" in printed and f"{report['fixed_point_test_accuracy']:.4f}" in printed
    model.load(out / "network.npz")  # the exported file is a valid network
