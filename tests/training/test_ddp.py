"""Two DistributedDataParallel processes (torchrun, gloo) agree with a single process on the gradients."""

import os
import subprocess
import sys

import torch

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
