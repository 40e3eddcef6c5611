"""The soft counts as one autograd node, with the core's analytic pullback as backward.

Autograd of the plain composition records about twenty elementwise kernels and
replays them backwards; the counts' gradient has a closed form instead
(:func:`anyloss_core.soft_confusion_with_pullback`): one fused expression per
sample.  This module only wires that into ``torch.autograd.Function``.
"""

from __future__ import annotations

from typing import Any

import torch

import anyloss_core as al

__all__ = ["soft_counts"]


class _SoftCounts(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: Any, weight: Any, options: dict[str, Any]) -> torch.Tensor:
        counts, pullback = al.soft_confusion_with_pullback(target, input, sample_weight=weight, **options)
        ctx.pullback, ctx.input_shape, ctx.input_dtype = pullback, input.shape, input.dtype
        return torch.stack(tuple(counts))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None, None]:
        grad_input = ctx.pullback(al.Confusion(*grad.unbind(0)))
        return grad_input.reshape(ctx.input_shape).to(ctx.input_dtype), None, None, None


def _analytic_applies(input: torch.Tensor, weight: Any, approximation: Any) -> bool:
    if not (torch.is_grad_enabled() and input.requires_grad):
        return False  # no backward: the plain forward is cheaper
    if weight is not None and weight.requires_grad:
        return False  # the pullback gives no gradient for the weights
    if torch.compiler.is_compiling():
        return False  # inductor fuses the plain composition itself
    functorch = getattr(torch._C, "_functorch", None)
    if functorch is not None and functorch.is_functorch_wrapped_tensor(input):
        return False  # torch.func transforms need the traceable composition
    return hasattr(al.get_approximation(approximation), "derivative")


def soft_counts(input: torch.Tensor, target: Any, weight: Any, **options: Any) -> al.Confusion:
    """Soft counts of ``input`` against ``target``: the analytic backward where it applies."""
    if _analytic_applies(input, weight, options["approximation"]):
        return al.Confusion(*_SoftCounts.apply(input, target, weight, options).unbind(0))
    return al.soft_confusion(target, input, sample_weight=weight, **options)
