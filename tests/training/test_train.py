"""End to end on scikit-learn digits: yoso train -> exported network -> golden model, plus the CLI's
report, plots, errors and deterministic resume."""

import json

import numpy as np
import pytest
import torch

import model
from model.datasets import load_dataset
from training.train import TrainConfig, train
from yoso.cli import main


def test_digits_train_export_golden(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "digits", "--arch", "64-100-10", "--epochs", "6", "--qat-epochs", "1",
               "--batch", "32", "--seed", "0", "--lr", "1e-2", "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["fixed_point_test_accuracy"] >= 0.95, report["history"]
    assert report["float_test_accuracy"] >= 0.93
    assert f"{report['fixed_point_test_accuracy']:.4f}" in printed
    assert len(report["history"]) == 7 and report["history"][-1]["phase"] == "qat"
    for key in ("loss", "train_accuracy", "val_accuracy", "dead_ratio", "mean_spike_time", "live_penalty"):
        assert key in report["history"][0]
    for name in ("network.npz", "checkpoint.pt", "curves.png", "spike_hist.png", "raster.png", "confusion.png"):
        assert (out / name).stat().st_size > 0, name
    # The golden model is the judge: recompute the fixed-point accuracy from the file.
    net = model.load(out / "network.npz")
    te = load_dataset("digits", "test")
    res = model.run(net, model.encode(te.images.reshape(len(te.images), -1), net.encoding, net.time_bits))
    assert float((res.prediction == te.labels).mean()) == report["fixed_point_test_accuracy"]
    # yoso infer reports the same accuracy.
    assert main(["infer", "--net", str(out / "network.npz"), "--dataset", "digits", "--json"]) == 0
    infer = json.loads(capsys.readouterr().out)
    assert infer["accuracy"] == pytest.approx(report["fixed_point_test_accuracy"])


@pytest.mark.parametrize("schedule", ["cosine", "exp"])
def test_resume_is_deterministic(tmp_path, schedule):
    """A run stopped after its first epoch (cosine: as if killed) or extended by an epoch (exp: a first run
    of 1 float epoch, resumed with 2) ends with exactly the weights of an uninterrupted run; augmentation
    and the live-neuron regulariser included."""
    base = dict(dataset="digits", arch="64-20-10", epochs=2, qat_epochs=1, train_limit=300, test_limit=100,
                progress=False, plots=False, seed=7, schedule=schedule, input_drop=0.1, jitter=1)
    full = train(TrainConfig(out=str(tmp_path / "a"), **base))
    first = {"stop_after": 1} if schedule == "cosine" else {"epochs": 1, "qat_epochs": 0}
    train(TrainConfig(out=str(tmp_path / "b"), **{**base, **first}))
    resumed = train(TrainConfig(out=str(tmp_path / "b"), resume=True, **base))
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["state"]
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["state"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert full["fixed_point_test_accuracy"] == resumed["fixed_point_test_accuracy"]
    a = np.load(tmp_path / "a" / "network.npz")["layer0.weight"]
    b = np.load(tmp_path / "b" / "network.npz")["layer0.weight"]
    assert np.array_equal(a, b)


@pytest.mark.parametrize("args,field", [
    (["--arch", "64-x-10"], "--arch"),
    (["--arch", "64-20-5"], "--arch"),  # digits has 10 classes
    (["--arch", "784-20-10"], "--arch"),  # digits images are 8x8
    (["--arch", "1x28x28-c4k3-10"], "--arch"),
    (["--arch", "64-20-10", "--epochs", "-1"], "--epochs"),
    (["--arch", "64-20-10", "--batch", "0"], "--batch"),
    (["--arch", "64-20-10", "--t-in-max", "300"], "--t-in-max"),
])
def test_bad_input_one_line_error_no_files(tmp_path, capsys, args, field):
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "digits", "--out", str(out), "--quiet", "--train-limit", "50", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and field in err
    assert not (out / "network.npz").exists() and not (out / "report.json").exists()


def test_no_validation_split(tmp_path):
    """--val-size 0 (and a training set too small for the default 10 %) trains without per-epoch curves."""
    for out, kw in (("a", {"val_size": 0, "train_limit": 200}), ("b", {"train_limit": 5})):
        r = train(TrainConfig(dataset="digits", arch="64-20-10", epochs=1, qat_epochs=1, out=str(tmp_path / out),
                              progress=False, plots=True, test_limit=50, **kw))
        assert r["val_samples"] == 0 and r["history"][0]["val_accuracy"] is None
        assert (tmp_path / out / "curves.png").stat().st_size > 0 and 0 <= r["fixed_point_test_accuracy"] <= 1
