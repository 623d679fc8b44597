"""`yoso infer` and `yoso netgen` end to end through the console entry point."""

from __future__ import annotations

import json

import numpy as np

import model
from yoso.cli import main


def test_netgen_infer_dump(tmp_path, capsys):
    net_path = tmp_path / "n.npz"
    assert main(["netgen", "--arch", "64-20-10", "--seed", "4", "--out", str(net_path)]) == 0
    dump = tmp_path / "d.npz"
    assert main(["infer", "--net", str(net_path), "--dataset", "digits", "--limit", "50", "--json",
                 "--dump-spikes", str(dump)]) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert report["samples"] == 50 and 0.0 <= report["accuracy"] <= 1.0
    with np.load(dump) as d:
        net = model.load(net_path)
        r = model.run(net, d["input"])
        for n in range(2):
            np.testing.assert_array_equal(d[f"layer{n}"], r.times[n])
        np.testing.assert_array_equal(d["prediction"], r.prediction)
        assert report["accuracy"] == float((d["prediction"] == d["label"]).mean())
        # The same dump fed back through --input-times reproduces every spike time.
        np.save(tmp_path / "in.npy", d["input"])
    dump2 = tmp_path / "d2.npz"
    assert main(["infer", "--net", str(net_path), "--input-times", str(tmp_path / "in.npy"),
                 "--dump-spikes", str(dump2)]) == 0
    with np.load(dump) as a, np.load(dump2) as b:
        for n in range(2):
            np.testing.assert_array_equal(a[f"layer{n}"], b[f"layer{n}"])


def test_errors_are_one_line_and_leave_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    out = tmp_path / "dump.npz"
    assert main(["infer", "--net", str(bad), "--dataset", "digits", "--dump-spikes", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("yoso infer: error:") and "not a readable .npz" in err and "\n" not in err
    assert not out.exists()

    net_path = tmp_path / "n.npz"
    main(["netgen", "--arch", "64-10", "--out", str(net_path)])
    np.save(tmp_path / "t.npy", np.full((2, 64), 300))
    assert main(["infer", "--net", str(net_path), "--input-times", str(tmp_path / "t.npy"),
                 "--dump-spikes", str(out)]) == 2
    assert "input 0 is 300; allowed 0..t_end=254 or NO_SPIKE=255" in capsys.readouterr().err
    assert not out.exists()
    assert main(["infer", "--net", str(net_path), "--dataset", "fashion-mnist", "--limit", "1"]) == 2
    assert "do not fit the network input" in capsys.readouterr().err
