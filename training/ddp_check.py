"""Gradients of one global batch under DistributedDataParallel, for the 2-process agreement test.

Run as ``torchrun --nproc_per_node 2 -m training.ddp_check OUT.pt`` (gloo, CPU). Every process builds the same
seeded network, takes its shard of the batch the way :func:`training.train.train` does (rows r, r + world,
...), runs forward and backward through DDP, and rank 0 saves the averaged gradients. :func:`grads` is the
single-process computation on the whole batch that they must match.
"""

from __future__ import annotations

import os
import sys

import torch

from model.datasets import load_dataset

from .net import SpikingNet
from .train import loss_fn

ARCH = "1x8x8-c4k3p1-p2-20-10"
BATCH = 32


def setup(quantised: bool = False):
    torch.manual_seed(0)
    d = load_dataset("digits", "train")
    net = SpikingNet(ARCH, input_shape=d.shape, seed=3)
    x = net.encode(d.images[:BATCH])
    net.calibrate(x)
    y = torch.from_numpy(d.labels[:BATCH])
    return net, (x.double() if quantised else x), y


def grads(net, x, y, module=None, quantised: bool = False) -> list[torch.Tensor]:
    module = module or net
    net.zero_grad()
    out = module(x, quantised=quantised, out_window=1000)
    loss_fn(out[-1].float(), y, 3.0).backward()
    return [p.grad.detach().clone() for p in net.parameters()]


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    result = {}
    for quantised in (False, True):
        net, x, y = setup(quantised)
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        g = grads(net, x[rank::world], y[rank::world], ddp, quantised)
        result.update({f"{'qat' if quantised else 'float'}.{k}": t for k, t in enumerate(g)})
    if rank == 0:
        tmp = argv[0] + ".tmp"
        torch.save(result, tmp)
        os.replace(tmp, argv[0])
    # Both ranks leave together, then exit without running C++ destructors: tearing gloo / DDP down at exit
    # sometimes aborted a rank ("terminate called without an active exception") on a loaded machine, even
    # after the barrier. The result file is complete (atomic rename) before the barrier.
    torch.distributed.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
