"""The four counts summed over a ``torch.distributed`` process group, with autograd."""

from __future__ import annotations

from typing import Any

import torch

import anyloss_core as al

__all__ = ["all_reduce_counts", "mean_weight_over_ranks"]


class _AllReduceSum(torch.autograd.Function):
    """``all_reduce(x, SUM)`` whose backward is ``all_reduce(grad, SUM)``.

    The adjoint of "every rank receives the sum of the ranks' tensors" is "every
    rank's tensor receives the sum of the ranks' incoming gradients".  Written here
    on the supported ``torch.distributed.all_reduce`` because
    ``torch.distributed.nn.functional.all_reduce`` is deprecated.  Both collectives
    are synchronous (no pending work object outlives the call), so nothing of ours
    is in flight when a rank tears its process group down.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        import torch.distributed as dist

        ctx.group = group
        summed = tensor.clone()  # all_reduce works in place: never on the caller's tensor
        dist.all_reduce(summed, op=dist.ReduceOp.SUM, group=group)
        return summed

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        import torch.distributed as dist

        if torch.is_grad_enabled():
            # A backward that records a graph (create_graph=True: second derivatives): the in-place collective
            # below has no autograd formula, and would be recorded as an identity; this node's own is right.
            return _AllReduceSum.apply(grad.contiguous(), ctx.group), None
        summed = grad.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM, group=ctx.group)
        return summed, None


def all_reduce_counts(counts: al.Confusion, process_group: Any = None) -> al.Confusion:
    """Sum the four counts over the processes of ``process_group``, with autograd.

    The backward of the all-reduce sums the incoming gradients over the ranks:
    each rank's local counts receive ``world_size`` times the gradient of the
    global loss, and DistributedDataParallel's averaging of the parameter
    gradients over ranks divides it out again, so a DDP step equals the
    single-process step on the global batch.  Multi-class counts (``(C,)`` each)
    travel in the same single all-reduce.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "distributed=True needs an initialized torch.distributed process group "
            "(torch.distributed.init_process_group, or launch with torchrun)"
        )
    stacked = torch.stack(tuple(counts))
    group = process_group if process_group is not None else dist.group.WORLD
    summed = _AllReduceSum.apply(stacked, group)
    return al.Confusion(*summed.unbind(0))


def mean_weight_over_ranks(local_total: torch.Tensor, process_group: Any = None) -> torch.Tensor:
    """The ranks' mean of ``local_total``, each rank's total sample weight (no gradient): the rescue term's
    normaliser.

    DistributedDataParallel averages the ranks' gradients, so a per-sample term that each
    rank normalises by ``global total / world_size`` gives exactly the single-process
    gradient of the global batch, also when the shards differ in size.
    """
    import torch.distributed as dist

    with torch.no_grad():
        total = local_total.detach().reshape(1).clone()  # all_reduce works in place
        group = process_group if process_group is not None else dist.group.WORLD
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total[0] / dist.get_world_size(group)
