"""Multi-class soft counts with the core's closed-form backward (``soft_class_confusion_with_pullback``).

Autograd of the plain composition (softmax, one-hot, products, column sums) records
about ten ``(n, C)`` kernels and replays them backwards; the core's pullback is one
pass over the saved softmax, ``w P (M - sum_k P_k M_k)``.  :class:`_ClassCounts` is
that backward as a ``torch.autograd.Function`` whose output is the ``(4, C)`` counts
(tn, fn, fp, tp), not the loss: a distributed loss all-reduces them before the metric,
and the metric's few ``(C,)`` kernels stay in autograd.

=====================  ===========================================================  ================================
path                   runs when (multi-class)                                      else
=====================  ===========================================================  ================================
``_ClassCounts``       grad needed, from logits, softmax approximation, weights     the core's plain counts under
                       without grad, no ``torch.func`` transform; eager from        autograd (multi-label, ``"ovr"``,
                       :data:`EAGER_MIN_ELEMENTS` logits, ``torch.compile``         probabilities, small eager
                       always (measured faster)                                     batches, ...)
=====================  ===========================================================  ================================

Examples:
    >>> import torch
    >>> from anyloss_torch._multiclass import class_counts
    >>> z = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    >>> counts = class_counts(z, torch.tensor([0, 1]), None, task="multiclass", num_classes=2, from_logits=True,
    ...                       scale=73.0, approximation="anyloss", validate=True)
    >>> [round(float(v), 3) for v in counts.tp]  # the softmax probability of the true class
    [0.881, 0.731]
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as xp
import torch

import anyloss_core as al
from anyloss_core.adapters import ClassPullback, soft_class_confusion_with_pullback

from ._first_order import PER_CLASS_COUNTS, first_order, has_tangent, keep_anchor

__all__ = ["EAGER_MIN_ELEMENTS", "class_counts"]

#: Eager: below this many logits the plain composition is faster (the Function's fixed cost, about 0.17 ms on
#: one CPU thread; equal at n = 4096, C = 10; 0.87x the plain step at n = 16384).
EAGER_MIN_ELEMENTS = 1 << 15


def _class_sums(ids: torch.Tensor, values: torch.Tensor, classes: int) -> torch.Tensor:
    # A scatter-add of n values instead of column sums of (n, C) one-hot products.
    return torch.zeros(classes, dtype=values.dtype, device=values.device).index_add_(0, ids, values)


class _ClassCounts(torch.autograd.Function):
    """The per-class counts stacked ``(4, C)``; backward = the core's pullback from the saved softmax."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor, weight: Any, options: dict[str, Any]) -> Any:
        # Eager: TP and the support summed by class with index_add_.  Inductor fuses the column sums itself; its
        # scatter-add is a serial loop (measured slower).
        sums = None if torch.compiler.is_compiling() else _class_sums
        counts, pullback = soft_class_confusion_with_pullback(target, input, sample_weight=weight,
                                                              class_sums=sums, **options)
        ctx.save_for_backward(pullback.prob, pullback.target, pullback.weight)
        keep_anchor(ctx, input)  # for the error mark on a gradient differentiated again (anyloss_torch._first_order)
        ctx.input_dtype, ctx.in_range = input.dtype, pullback.in_range  # ids checked in range: no mask backwards
        return torch.stack(tuple(counts))

    @staticmethod
    @first_order(PER_CLASS_COUNTS)
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None, None]:
        prob, target, weight = ctx.saved_tensors
        grad_input = ClassPullback(prob, target, weight, xp, ctx.in_range)(al.Confusion(*grad.unbind(0)))
        return grad_input.to(ctx.input_dtype), None, None, None


def _closed_form_applies(input: torch.Tensor, target: Any, weight: Any, options: dict[str, Any]) -> bool:
    if options.get("task") != "multiclass" or not options.get("from_logits"):
        return False
    approximation = options.get("approximation")
    if not (approximation in (None, "anyloss", "softmax") or approximation == al.SharpenedSoftmax(1.0)):
        return False
    if not (torch.is_grad_enabled() and input.requires_grad) or not isinstance(target, torch.Tensor):
        return False  # no backward to replace (or labels that are not a tensor: the plain path converts them)
    if weight is not None and (not isinstance(weight, torch.Tensor) or weight.requires_grad):
        return False  # the Function gives no gradient for the weights
    if target.requires_grad:
        return False  # nor for one-hot labels that require one
    if torch.compiler.is_compiling():
        return True  # measured faster than inductor's own fusion of the plain composition
    if input.numel() < EAGER_MIN_ELEMENTS or has_tangent(input, target, weight):
        return False  # small: the plain composition measured faster; forward mode: the closed form has no jvp
    functorch = getattr(torch._C, "_functorch", None)
    return not (functorch is not None and functorch.is_functorch_wrapped_tensor(input))


#: Integer dtypes torch's index kernels refuse: uint8 / int8 / int16 on every release ("Expected dtype
#: int32/int64 for index"), int32 on releases before those that added it (the package allows torch 2.2).
#: One-hot labels of these dtypes are cast too, which only costs a copy.
_NARROW_IDS = (torch.uint8, torch.int8, torch.int16, torch.int32)


def class_counts(input: torch.Tensor, target: Any, weight: Any, **options: Any) -> al.Confusion:
    """The per-class soft counts of :func:`anyloss_core.soft_class_confusion` (``options`` are its keywords:
    ``task``, ``num_classes``, ``ignore_index``, ``from_logits``, ``scale``, ``approximation``,
    ``validate``), with the closed-form backward where it applies."""
    if _closed_form_applies(input, target, weight, options):
        if target.dtype in _NARROW_IDS:
            # as the int64 index that index_add_ and gather take (uint8, int8 and int16 ids failed there)
            target = target.to(torch.int64)
        return al.Confusion(*_ClassCounts.apply(input, target, weight, options).unbind(0))
    return al.soft_class_confusion(target, input, sample_weight=weight, **options)
