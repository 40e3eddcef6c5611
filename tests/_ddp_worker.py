"""Worker of the DistributedDataParallel parity test (spawned per rank; not collected by pytest)."""

from __future__ import annotations

import datetime
import gc

import numpy as np
import torch
import torch.distributed as dist

import anyloss_torch

STEPS, LR = 3, 0.5
# A rank that dies makes the others fail within this time instead of gloo's default 30 minutes.
TIMEOUT = datetime.timedelta(seconds=300)


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
        losses.append(loss.item())
    return losses


def single_process(metric: str):
    net = model()
    x, y = data()
    losses = train(net, x, y, anyloss_torch.AnyLoss(metric))
    return losses, [p.detach().numpy().copy() for p in net.parameters()]


def _train_shard(rank: int, world: int, metric: str) -> tuple[list[float], list[np.ndarray]]:
    x, y = data()
    shard = slice(rank * len(y) // world, (rank + 1) * len(y) // world)
    net = torch.nn.parallel.DistributedDataParallel(model())
    losses = train(net, x[shard], y[shard], anyloss_torch.AnyLoss(metric, distributed=True))
    return losses, [p.detach().numpy().copy() for p in net.module.parameters()]


def worker(rank: int, world: int, init_file: str, metric: str, out: str) -> None:
    # One thread per rank: 4 ranks with a thread per core each oversubscribe a small machine.
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=TIMEOUT)
    try:
        # The DDP wrapper (its reducer holds the group and pending work) is gone when this returns.
        losses, params = _train_shard(rank, world, metric)
        gc.collect()
        if rank == 0:
            np.savez(out, losses=np.array(losses), **{f"arr_{i}": p for i, p in enumerate(params)})
        # Teardown in step, the barrier the last thing before it: no rank closes its gloo pairs while a peer
        # still works (a rank that tore down early made its peer abort: "terminate called without an active
        # exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


#: Per rank: (logits' shape, weights: None, "each" (one per element), "row" (one per example), "zero").
RESCUE_CASES = {
    "unweighted, (n,) of unequal n": [((4,), None), ((12,), None)],
    "unweighted, (1, n) of unequal n": [((1, 4), None), ((1, 12), None)],
    "unweighted, (B, H) of unequal H": [((2, 3), None), ((2, 6), None)],
    "weighted, (n,) of unequal n": [((4,), "each"), ((12,), "each")],
    "a weight per row, (B, H) of unequal H": [((2, 3), "row"), ((2, 6), "row")],
    "one rank of weight zero": [((6,), "each"), ((6,), "zero")],
}


def rescue_case(case: int, rank: int):
    """The logits, labels and weights (or None) of ``rank`` in the ``case``-th of RESCUE_CASES, as NumPy."""
    shape, kind = list(RESCUE_CASES.values())[case][rank]
    rng = np.random.default_rng(100 * case + rank)
    z, y = rng.normal(0, 3, shape), rng.integers(0, 2, shape)
    weights = {None: None, "each": rng.uniform(0.5, 2.0, shape), "row": rng.uniform(0.5, 2.0, shape[0]),
               "zero": np.zeros(shape)}
    return z, y, weights[kind]


def rescue_worker(rank: int, world: int, init_file: str, out: str) -> None:
    """Each case's rescue gradient on this rank (rescue=0.1 minus rescue=0) of a distributed loss, saved to
    ``out`` with the rank appended."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=TIMEOUT)
    try:
        grads = {}
        for case in range(len(RESCUE_CASES)):
            z, y, w = rescue_case(case, rank)
            both = []
            for rescue in (0.1, 0.0):
                x = torch.tensor(z, requires_grad=True)
                anyloss_torch.anyloss(x, torch.tensor(y), "f1", weight=None if w is None else torch.tensor(w),
                                      rescue=rescue, distributed=True).backward()
                both.append(x.grad.numpy())
            grads[f"case{case}"] = both[0] - both[1]
        np.savez(f"{out}{rank}.npz", **grads)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def hessian_vector_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits near the threshold (a large curvature), labels and a direction, float64: 64 samples."""
    gen = torch.Generator().manual_seed(11)
    z = torch.randn(64, generator=gen, dtype=torch.float64) * 0.05
    y = (torch.rand(64, generator=gen) < 0.4).to(torch.float64)
    v = torch.randn(64, generator=gen, dtype=torch.float64)
    return z, y, v


def hessian_vector_product(z: torch.Tensor, y: torch.Tensor, v: torch.Tensor, *, distributed: bool) -> torch.Tensor:
    """H v of the F1 loss at ``z`` (rescue 0), by a backward that records a graph and a second one."""
    z = z.clone().requires_grad_()
    loss = anyloss_torch.F1Loss(rescue=0.0, distributed=distributed)(z, y)
    (grad,) = torch.autograd.grad(loss, z, create_graph=True)
    (hv,) = torch.autograd.grad(torch.sum(grad * v), z)
    return hv


def hessian_vector_worker(rank: int, world: int, init_file: str, out: str) -> None:
    """This rank's shard of H v of a distributed loss whose direction is the whole batch's, saved to ``out`` with
    the rank appended: each rank differentiates its own gradient, and the all-reduce's double backward carries
    the other ranks' share of the curvature."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=TIMEOUT)
    try:
        z, y, v = hessian_vector_data()
        shard = slice(rank * 64 // world, (rank + 1) * 64 // world)
        np.save(f"{out}{rank}.npy", hessian_vector_product(z[shard], y[shard], v[shard], distributed=True).numpy())
        dist.barrier()
    finally:
        dist.destroy_process_group()
