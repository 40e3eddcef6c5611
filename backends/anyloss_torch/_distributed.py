"""The four counts summed over a ``torch.distributed`` process group, with autograd."""

from __future__ import annotations

from typing import Any

import torch

import anyloss_core as al

__all__ = ["all_reduce_counts"]


def all_reduce_counts(counts: al.Confusion, process_group: Any = None) -> al.Confusion:
    """Sum the four counts over the processes of ``process_group``, with autograd.

    The backward of a differentiable all-reduce sums the incoming gradients over
    the ranks: each rank's local counts receive ``world_size`` times the gradient
    of the global loss, and DistributedDataParallel's averaging of the parameter
    gradients over ranks divides it out again, so a DDP step equals the
    single-process step on the global batch.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "distributed=True needs an initialized torch.distributed process group "
            "(torch.distributed.init_process_group, or launch with torchrun)"
        )
    from torch.distributed.nn.functional import all_reduce

    stacked = torch.stack(tuple(counts))
    group = process_group if process_group is not None else dist.group.WORLD
    summed = all_reduce(stacked, op=dist.ReduceOp.SUM, group=group)
    return al.Confusion(*summed.unbind(0))
