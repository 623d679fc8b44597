"""Two DistributedDataParallel processes (torchrun, gloo) agree with a single process on the gradients."""

import json
import os
import subprocess
import sys

import pytest
import torch

import model
from training import ddp_check


def test_ddp_two_processes_match_single_process(tmp_path):
    out = tmp_path / "grads.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "training.ddp_check", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    got = torch.load(out, weights_only=True)
    for quantised in (False, True):
        net, x, y = ddp_check.setup(quantised)
        ref = ddp_check.grads(net, x, y, quantised=quantised)
        for k, g in enumerate(ref):
            d = got[f"{'qat' if quantised else 'float'}.{k}"]
            assert g.abs().max() > 0  # the comparison is not between two zero tensors
            torch.testing.assert_close(d, g, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_yoso_train_under_torchrun(tmp_path):
    """The real training job under torchrun: 2 processes, DDP, rank 0 exports a loadable network."""
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "yoso.cli",
           "train", "--dataset", "digits", "--arch", "64-30-10", "--epochs", "1", "--qat-epochs", "1",
           "--train-limit", "400", "--batch", "32", "--out", str(out), "--quiet", "--no-plots"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2
    assert report["history"][0]["train_samples"] == 400
    net = model.load(out / "network.npz")
    assert net.describe() == "1x8x8-30-10"
