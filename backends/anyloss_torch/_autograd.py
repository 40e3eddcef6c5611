"""Where the torch adapter beats autograd of the plain composition: one node per loss.

Autograd of the plain composition records about twenty elementwise kernels and a
dozen 0-d ones for the metric, and replays them all backwards.  The core gives
closed forms instead, and this module only wires them into
``torch.autograd.Function``:

* the counts' pullback (:func:`anyloss_core.soft_confusion_with_pullback`): the
  gradient with respect to the input is one fused expression per sample;
* on a CPU, the metric's value and gradient with respect to the four counts on
  Python floats (:func:`anyloss_core.metric_value_and_grad`): reading four numbers
  costs nothing there, and it replaces a dozen 0-d kernels and their backward
  nodes, which dominate small batches.  On an accelerator reading them would
  synchronize with the host every step, so there the metric stays in autograd.

Under ``torch.compile`` inductor fuses the plain composition itself, and the
only thing left to decide is what the backward recomputes: on a CPU a selective
checkpoint policy saves the sigmoids' outputs and the counts (see
``_save_sigmoids_and_counts``); on an accelerator the partitioner's own choice
(recompute, fewer bytes) stands.
"""

from __future__ import annotations

import functools
from typing import Any

import array_api_compat.torch  # noqa: F401  (loaded now: the core's get_namespace then skips lru_cache'd lookups)
import torch
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

import anyloss_core as al
from anyloss_core._rescue import prepared_for_rescue, rescue_slope, rescue_term

from ._distributed import all_reduce_counts, mean_weight_over_ranks

__all__ = ["global_counts", "rescue_loss_term", "soft_counts", "soft_loss"]


class _SoftCounts(torch.autograd.Function):
    """The four counts, stacked; backward = the core's pullback."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, counts: al.Confusion, pullback: Any) -> torch.Tensor:
        ctx.pullback, ctx.input_shape, ctx.input_dtype = pullback, input.shape, input.dtype
        return torch.stack(tuple(counts))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None]:
        grad_input = ctx.pullback(al.Confusion(*grad.unbind(0)))
        return grad_input.reshape(ctx.input_shape).to(ctx.input_dtype), None, None


class _LossFromCounts(torch.autograd.Function):
    """``1 - metric`` as a 0-d tensor; backward = pullback of ``-grad * d metric / d counts``, plus
    ``grad * rescue_slope`` (the rescue gradient of :mod:`anyloss_core._rescue`, a constant) when given."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, loss: torch.Tensor, metric_grad: al.Confusion, pullback: Any,
                rescue_slope: Any = None) -> Any:
        ctx.pullback, ctx.metric_grad, ctx.rescue_slope = pullback, metric_grad, rescue_slope
        ctx.input_shape, ctx.input_dtype = input.shape, input.dtype
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None, None, None]:
        upstream = float(grad)  # a CPU scalar: this path only runs on a CPU
        grad_counts = al.Confusion(*(-upstream * g for g in ctx.metric_grad))
        grad_input = ctx.pullback(grad_counts)
        if ctx.rescue_slope is not None:
            grad_input.add_(ctx.rescue_slope, alpha=upstream)  # the pullback's result is a fresh tensor
        return grad_input.reshape(ctx.input_shape).to(ctx.input_dtype), None, None, None, None


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


def _counts_and_pullback(input: torch.Tensor, target: Any, weight: Any, options: dict[str, Any]) -> Any:
    # Computed outside autograd: the Functions above attach the analytic backward.
    with torch.no_grad():
        return al.soft_confusion_with_pullback(target, input, sample_weight=weight, **options)


_SAVED_OPS = frozenset({torch.ops.aten.sigmoid.default, torch.ops.aten.dot.default, torch.ops.aten.sum.default})


def _save_sigmoids_and_counts(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    # Inductor's partitioner recomputes the elementwise ops of the forward in the
    # backward: it counts bytes moved, which is right on an accelerator.  On a CPU the
    # step is bound by exp instead, and recomputing A(sigmoid(z)) costs two exp per
    # sample where BCE's backward has one.  Saving both sigmoids' outputs leaves a
    # backward with no exp; the counts are saved too, else the backward would sum
    # them again in a second pass.
    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def _compiled_soft_counts(input: torch.Tensor, target: Any, weight: Any, options: dict[str, Any],
                          rescue: float = 0.0) -> tuple[al.Confusion, Any]:
    """The core's counts, and the rescue term when ``rescue``, as ``torch.compile`` traces them on a CPU:
    sigmoids and counts saved for the backward.

    The rescue term is traced inside the same region: its sigmoid is the counts' (the
    compiler merges them), so the backward reads the saved one instead of computing
    ``exp`` again.
    """

    def counts_of(input: torch.Tensor) -> tuple[Any, ...]:
        counts = tuple(al.soft_confusion(target, input, sample_weight=weight, **options))
        if not rescue:
            return counts
        # Traced: no values to watch, and checkpoint regions allow no side effects.
        y, z, w, xp = prepared_for_rescue(target, input, weight, rescue=rescue, from_logits=options["from_logits"],
                                          watch=False)
        return (*counts, rescue_term(y, z, w, rescue=rescue, from_logits=options["from_logits"], xp=xp))

    out = checkpoint(counts_of, input, use_reentrant=False,
                     context_fn=functools.partial(create_selective_checkpoint_contexts, _save_sigmoids_and_counts))
    return al.Confusion(*out[:4]), (out[4] if rescue else 0.0)


def _compiling_on_cpu(input: torch.Tensor) -> bool:
    return (torch.compiler.is_compiling() and input.device.type == "cpu" and torch.is_grad_enabled()
            and input.requires_grad)


def soft_counts(input: torch.Tensor, target: Any, weight: Any, **options: Any) -> al.Confusion:
    """Soft counts of ``input`` against ``target``: the analytic backward where it applies."""
    if _analytic_applies(input, weight, options["approximation"]):
        counts, pullback = _counts_and_pullback(input, target, weight, options)
        return al.Confusion(*_SoftCounts.apply(input, counts, pullback).unbind(0))
    if _compiling_on_cpu(input):
        return _compiled_soft_counts(input, target, weight, options)[0]
    return al.soft_confusion(target, input, sample_weight=weight, **options)


def global_counts(input: torch.Tensor, target: Any, weight: Any, *, distributed: bool = False,
                  process_group: Any = None, task: str = "binary", num_classes: Any = None, ignore_index: Any = None,
                  **options: Any) -> al.Confusion:
    """The soft counts of the batch (the analytic backward where it applies), summed over ``process_group``
    when ``distributed``: the counts of the global batch."""
    if task == "binary":
        counts = soft_counts(input, target, weight, **options)
    else:  # plain autograd of the core's per-class counts
        counts = al.soft_confusion(target, input, sample_weight=weight, task=task, num_classes=num_classes,
                                   ignore_index=ignore_index, **options)
    if distributed:
        counts = all_reduce_counts(counts, process_group)
    return counts


def soft_loss(input: torch.Tensor, target: Any, weight: Any, metric: Any, *, distributed: bool = False,
              process_group: Any = None, task: str = "binary", average: str = "macro", num_classes: Any = None,
              ignore_index: Any = None, metric_params: Any = None, rescue: float = 0.0,
              **options: Any) -> torch.Tensor:
    """``1 - metric(soft counts)``, with as few autograd nodes as the case allows.

    ``metric`` is a resolved metric function (binary) or the metric as given with
    ``metric_params`` (multi-class / multi-label, where the core averages per-class
    metrics); ``options`` are those of :func:`anyloss_core.soft_confusion`.  With
    ``distributed=True`` the counts are summed over ``process_group`` first (see
    ``all_reduce_counts``).  ``rescue`` adds the core's rescue gradient (binary task;
    :mod:`anyloss_core._rescue`), a term of value 0 of this process's samples.
    """
    if task == "binary" and rescue and not distributed and _compiling_on_cpu(input):
        counts, term = _compiled_soft_counts(input, target, weight, options, rescue=rescue)
        return al.confusion_loss(counts, metric) + term
    rescue_inputs = None
    if task == "binary":
        rescue_inputs = prepared_for_rescue(target, input, weight, rescue=rescue, from_logits=options["from_logits"],
                                            scale=options["scale"], approximation=options["approximation"])
    loss = _metric_loss(input, target, weight, metric, distributed=distributed, process_group=process_group,
                        task=task, average=average, num_classes=num_classes, ignore_index=ignore_index,
                        metric_params=metric_params, rescue_inputs=rescue_inputs, rescue=rescue, **options)
    if isinstance(loss, tuple):  # the one-node path took the rescue into its backward
        return loss[0]
    if rescue_inputs is None:
        return loss
    return loss + _rescue_term(rescue_inputs, rescue=rescue, from_logits=options["from_logits"],
                               distributed=distributed, process_group=process_group)


def _rescue_term(rescue_inputs: Any, *, rescue: float, from_logits: bool, distributed: bool,
                 process_group: Any) -> Any:
    y, z, w, xp = rescue_inputs
    total = mean_weight_over_ranks(z, w, process_group) if distributed else None
    return rescue_term(y, z, w, rescue=rescue, from_logits=from_logits, xp=xp, total=total)


def rescue_loss_term(input: torch.Tensor, target: Any, weight: Any, *, rescue: float, distributed: bool = False,
                     process_group: Any = None, from_logits: bool, scale: float, approximation: Any) -> Any:
    """The rescue term of a binary loss (0 in value; :mod:`anyloss_core._rescue`), normalised by the
    global batch's weight when ``distributed``; ``0.0`` when it does not apply."""
    prepared = prepared_for_rescue(target, input, weight, rescue=rescue, from_logits=from_logits, scale=scale,
                                   approximation=approximation)
    if prepared is None:
        return 0.0
    return _rescue_term(prepared, rescue=rescue, from_logits=from_logits, distributed=distributed,
                        process_group=process_group)


def _metric_loss(input: torch.Tensor, target: Any, weight: Any, metric: Any, *, distributed: bool,
                 process_group: Any, task: str, average: str, num_classes: Any, ignore_index: Any,
                 metric_params: Any, rescue_inputs: Any = None, rescue: float = 0.0,
                 **options: Any) -> Any:
    one_node = not distributed and input.device.type == "cpu" and task == "binary"
    if one_node and _analytic_applies(input, weight, options["approximation"]):
        counts, pullback = _counts_and_pullback(input, target, weight, options)
        stacked = torch.stack(tuple(counts))
        result = al.metric_value_and_grad(metric, al.Confusion(*stacked.tolist()))
        if result is not None:
            value, metric_grad = result
            loss = torch.tensor(1.0 - value, dtype=stacked.dtype, device=input.device)
            slope = None
            if rescue_inputs is not None:
                y, z, w, xp = rescue_inputs
                with torch.no_grad():
                    slope = rescue_slope(y, z, w, rescue=rescue, from_logits=options["from_logits"], xp=xp)
            return (_LossFromCounts.apply(input, loss, metric_grad, pullback, slope),)
        counts = al.Confusion(*_SoftCounts.apply(input, counts, pullback).unbind(0))
    else:
        counts = global_counts(input, target, weight, distributed=distributed, process_group=process_group,
                               task=task, num_classes=num_classes, ignore_index=ignore_index, **options)
    if task == "binary":
        return al.confusion_loss(counts, metric)
    return al.confusion_loss(counts, metric, task=task, average=average, **(metric_params or {}))
