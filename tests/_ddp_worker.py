"""Worker of the DistributedDataParallel parity test (spawned per rank; not collected by pytest)."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

import anyloss_torch

STEPS, LR = 3, 0.5


def data(n: int = 32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = np.zeros(n, dtype=np.int64)
    y[:5] = 1  # every positive in the first shard: the other shards have none
    return torch.tensor(x), torch.tensor(y)


def model():
    torch.manual_seed(0)
    return torch.nn.Linear(5, 1)


def train(net, x, y, loss_fn):
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(net(x)[:, 0], y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def single_process(metric: str):
    net = model()
    x, y = data()
    losses = train(net, x, y, anyloss_torch.AnyLoss(metric))
    return losses, [p.detach().numpy().copy() for p in net.parameters()]


def worker(rank: int, world: int, init_file: str, metric: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, y = data()
        shard = slice(rank * len(y) // world, (rank + 1) * len(y) // world)
        net = torch.nn.parallel.DistributedDataParallel(model())
        losses = train(net, x[shard], y[shard], anyloss_torch.AnyLoss(metric, distributed=True))
        if rank == 0:
            arrays = {f"arr_{i}": p.detach().numpy() for i, p in enumerate(net.module.parameters())}
            np.savez(out, losses=np.array(losses), **arrays)
    finally:
        dist.destroy_process_group()
