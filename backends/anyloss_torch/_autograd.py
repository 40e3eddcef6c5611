"""How a torch loss call runs: one explicit choice among four paths (:func:`choose_path`).

Autograd of the plain composition records about twenty elementwise kernels and a
dozen 0-d ones for the metric, and replays them all backwards.  The core gives
closed forms instead (the counts' pullback, ``anyloss_core.soft_confusion_with_pullback``;
the metric's value and gradient on floats, :mod:`anyloss_torch._scalar_grad`), and
this module wires them into ``torch.autograd.Function`` where that is faster:

=========================  =============================================  ==============================================
path                       runs when (binary task; else plain autodiff)   why
=========================  =============================================  ==============================================
one node                   eager, grad needed, CPU or CUDA GPU, not       reading four counts is free on a CPU, and one
(``_LossFromCounts``)      distributed, approximation has                 wait on a GPU costs less than the kernels it
                           ``derivative``, weights and labels need no     saves (:func:`_reads_counts`); the metric's
                           grad, no torch.func transform; on a GPU not    dozen 0-d kernels and their backward nodes
                           while a CUDA graph is captured or a sync       dominate small batches.  The rescue gradient
                           debug mode is set                              is added by the counts' pullback, from their
                                                                          sigmoid.  A metric the float evaluator
                                                                          declines falls back to "analytic counts"
                                                                          (from its second call at once, for an
                                                                          operation the evaluator does not know)
analytic counts            as "one node", but ``distributed`` (counts     no read of the counts: the metric stays in
(``_SoftCounts``)          all-reduced next), on other devices, or on     autograd, the counts' backward is one fused
                           a GPU that must not wait (graph capture,       expression, which adds the rescue gradient
                           sync debug mode)                               (the gradient of a fifth output, the term, 0
                                                                          in value)
compiled-CPU checkpoint    under ``torch.compile``, CPU, grad needed      inductor fuses the composition itself, but its
                                                                          partitioner recomputes two ``exp`` per sample
                                                                          in the backward; saving the sigmoids and
                                                                          counts (``_save_sigmoids_and_counts``) helps;
                                                                          from 32 MiB arrays only sigmoid(z) is kept
                                                                          (``_checkpoint_context``: fresh pages)
plain autodiff             everything else: no grad needed, compiling     no backward to speed up, or a transform /
                           on an accelerator, eager weights or labels     compiler that must see the composition, or no
                           with grad, torch.func transforms, no           closed form; on an accelerator the
                           ``derivative``, multi-class / multi-label      partitioner's own choice (recompute) stands
=========================  =============================================  ==============================================

Under ``torch.compile`` a binary loss module's call does not reach this choice: it is made of regions that
dynamo does not trace into (:mod:`anyloss_torch._region`, fewer guards per call), inside which AOTAutograd
traces ``soft_loss(..., path=Path.AUTODIFF)``, or from 4096 logits on a CPU :func:`counts_and_term` inside
:func:`saving_checkpoint`.

Multi-class and multi-label counts take their own route, :func:`anyloss_torch._multiclass.class_counts`:
the core's closed-form backward for the softmax approximation (an ``autograd.Function`` over the
``(4, C)`` counts, so a distributed all-reduce still comes before the metric) in eager mode from
32,768 logits and under ``torch.compile``, plain autodiff otherwise.

The in-place updates of the core's temporaries come from :mod:`anyloss_torch._fast_paths`,
registered when this module is imported.
"""

from __future__ import annotations

import enum
import functools
import itertools
import weakref
from typing import Any

import array_api_compat.torch  # noqa: F401  (loaded now: the core's get_namespace then skips lru_cache'd lookups)
import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

import anyloss_core as al
from anyloss_core.adapters import fills_fresh_pages, prepared_for_rescue, rescue_term

from . import _fast_paths  # also registers torch's fast paths with the core
from ._distributed import all_reduce_counts, mean_weight_over_ranks
from ._first_order import RUNNING_COUNTS, first_order, has_tangent, keep_for_recompute
from ._multiclass import class_counts
from ._scalar_grad import UNSUPPORTED, evaluate

__all__ = ["Path", "choose_path", "counts_and_term", "global_counts", "rescue_loss_term", "running_loss",
           "saving_checkpoint", "soft_counts", "soft_loss"]


class _SoftCounts(torch.autograd.Function):
    """The four counts, stacked, and with ``rescue`` a fifth entry, the rescue term: 0 in value, its gradient
    the scale of the rescue gradient.  Backward = the core's pullback, which adds that gradient from the
    counts' own sigmoid (one node for counts and rescue: about twenty kernels fewer than a rescue term of its
    own, what a GPU step pays per kernel)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, counts: al.Confusion, pullback: Any, rescue: bool,
                recompute: tuple[Any, ...]) -> torch.Tensor:
        ctx.pullback, ctx.rescue, ctx.input_shape, ctx.input_dtype = pullback, rescue, input.shape, input.dtype
        keep_for_recompute(ctx, recompute[0], input, *recompute[1:])  # for a backward that records a graph
        parts = (*counts, torch.zeros_like(counts.tp)) if rescue else tuple(counts)
        return torch.stack(parts)

    @staticmethod
    @first_order()
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None, None, None]:
        parts = grad.unbind(0)
        if ctx.rescue:  # the rescue term's gradient, a 0-d tensor: no host read
            grad_input = ctx.pullback(al.Confusion(*parts[:4]), rescue_scale=parts[4])
        else:
            grad_input = ctx.pullback(al.Confusion(*parts))
        return grad_input.reshape(ctx.input_shape).to(ctx.input_dtype), None, None, None, None


class _LossFromCounts(torch.autograd.Function):
    """``1 - metric`` as a 0-d tensor; backward = pullback of ``-grad * d metric / d counts``, which adds
    ``grad`` times the rescue gradient of :mod:`anyloss_core._rescue` when the counts were made with ``rescue``."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, loss: torch.Tensor, metric_grad: al.Confusion, pullback: Any,
                recompute: tuple[Any, ...] | None) -> Any:
        ctx.pullback, ctx.metric_grad = pullback, metric_grad
        ctx.input_shape, ctx.input_dtype = input.shape, input.dtype
        # For a backward that records a graph: the plain composition, or (running counts: none) the input, which
        # the error mark on the gradient takes as its input (anyloss_torch._first_order).
        if recompute is not None:
            keep_for_recompute(ctx, recompute[0], input, *recompute[1:])
        else:
            ctx.save_for_backward(input)
        return loss

    @staticmethod
    @first_order(RUNNING_COUNTS)
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None, None, None]:
        tn, fn, fp, tp = ctx.metric_grad
        if _fast_paths.reads_are_free(grad):
            upstream = float(grad)
            grad_input = ctx.pullback(al.Confusion(-upstream * tn, -upstream * fn, -upstream * fp, -upstream * tp),
                                      rescue_scale=upstream)
        else:  # no second wait for the device: the upstream gradient scales the result, one kernel
            grad_input = ctx.pullback(al.Confusion(-tn, -fn, -fp, -tp)).mul_(grad)
        if grad_input.shape != ctx.input_shape:
            grad_input = grad_input.reshape(ctx.input_shape)
        if grad_input.dtype != ctx.input_dtype:
            grad_input = grad_input.to(ctx.input_dtype)
        return grad_input, None, None, None, None


class Path(enum.Enum):
    """The execution paths of a torch loss call (see the module docstring's table)."""

    ONE_NODE = "one node"
    ANALYTIC = "analytic counts"
    COMPILED_CPU = "compiled-CPU checkpoint"
    AUTODIFF = "plain autodiff"


def choose_path(input: torch.Tensor, weight: Any, approximation: Any, *, target: Any = None, task: str = "binary",
                distributed: bool = False, metric: Any = None) -> Path:
    """Which execution path a loss call takes: the one place where the conditions of the table are written.
    ``metric``: the resolved metric of a loss (a metric the float evaluator declined keeps off the one node)."""
    if task != "binary":
        return Path.AUTODIFF  # per-class counts: anyloss_torch._multiclass chooses for itself
    grad_needed = torch.is_grad_enabled() and input.requires_grad
    if not grad_needed:
        return Path.AUTODIFF  # no backward: the plain forward is cheapest
    if torch.compiler.is_compiling():
        # inductor fuses the plain composition itself; on a CPU it should save the sigmoids
        return Path.COMPILED_CPU if input.device.type == "cpu" else Path.AUTODIFF
    if _fast_paths.recording():
        # torch.jit.trace, make_fx, aot_function: a trace would keep counts read to the host as constants of this
        # batch (make_fx fails on the read)
        return Path.AUTODIFF
    if weight is not None and weight.requires_grad:
        return Path.AUTODIFF  # the pullback gives no gradient for the weights
    if isinstance(target, torch.Tensor) and target.requires_grad:
        return Path.AUTODIFF  # nor for soft labels that require one
    functorch = getattr(torch._C, "_functorch", None)
    if functorch is not None and functorch.is_functorch_wrapped_tensor(input):
        return Path.AUTODIFF  # torch.func transforms need the traceable composition
    if has_tangent(input, target, weight):
        return Path.AUTODIFF  # forward mode (a dual tensor, torch.autograd.forward_ad): the closed forms have no jvp
    if not hasattr(al.get_approximation(approximation), "derivative"):
        return Path.AUTODIFF
    if distributed or isinstance(input, FakeTensor) or metric is not None and _is_declined(metric):
        return Path.ANALYTIC  # counts all-reduced next; a fake tensor has no values; the float evaluator said no
    return Path.ONE_NODE if input.is_cpu or _reads_counts(input.device) else Path.ANALYTIC


def _reads_counts(device: torch.device) -> bool:
    """Whether the eager step may read the four counts to the host (the one-node path): on a CPU, where it is
    free, and on a CUDA GPU, where one wait per step costs less than the analytic path's kernels (H200, second
    GPU round of docs/performance.md: 2.94x-3.58x BCE against 4.75x-6.12x from n = 32 to 1e6) -- except while a
    CUDA graph is captured on the device (a read is an error there) or a sync debug mode is set
    (``torch.cuda.set_sync_debug_mode``: the user asked for no waits).  Other devices (unmeasured, and
    ``meta``, which has no values) keep the analytic path."""
    if device.type == "cpu":
        return True
    if device.type != "cuda":
        return False
    if torch.cuda.get_sync_debug_mode() != 0:
        return False
    if device.index is not None and device.index != torch.cuda.current_device():
        with torch.cuda.device(device):  # the capture is the device's current stream's, not the current device's
            return not torch.cuda.is_current_stream_capturing()
    return not torch.cuda.is_current_stream_capturing()


def _analytic_counts(input: torch.Tensor, target: Any, weight: Any, options: dict[str, Any],
                     rescue: float = 0.0) -> tuple[al.Confusion, Any]:
    """The counts through :class:`_SoftCounts` (backward: the core's pullback), and with ``rescue`` the rescue
    term, 0 in value, whose gradient that pullback adds (``0.0`` without)."""
    with torch.no_grad():  # computed outside autograd: _SoftCounts attaches the analytic backward
        counts, pullback = al.soft_confusion_with_pullback(target, input, sample_weight=weight, rescue=rescue,
                                                           **options)
    parts = _SoftCounts.apply(input, counts, pullback, bool(rescue),
                              (_plain_counts, target, weight, options, rescue)).unbind(0)
    return al.Confusion(*parts[:4]), (parts[4] if rescue else 0.0)


def _plain_counts(input: torch.Tensor, target: Any, weight: Any, options: dict[str, Any],
                  rescue: float) -> torch.Tensor:
    """:class:`_SoftCounts`'s output as the plain composition (:func:`counts_and_term`, stacked), for a backward
    pass that records a graph."""
    return torch.stack(counts_and_term(input, target, weight, options, rescue))


# The sigmoids (the core's ``sigmoid`` is torch's own) and the sums (``TorchFastPaths.dot`` for the counts,
# ``sum``): the ops this adapter's fast paths make the core emit, tested by
# tests/test_torch.py::test_torch_compile_backward_on_cpu_reuses_the_forward_sigmoids.
_SAVED_OPS = frozenset({torch.ops.aten.sigmoid.default, torch.ops.aten.dot.default, torch.ops.aten.sum.default})




def _save_sigmoids_and_counts(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    # Inductor's partitioner recomputes the elementwise ops of the forward in the
    # backward: it counts bytes moved, which is right on an accelerator.  On a CPU the
    # step is bound by exp instead, and recomputing A(sigmoid(z)) costs two exp per
    # sample where BCE's backward has one.  Saving both sigmoids' outputs leaves a
    # backward with no exp; the counts are saved too, else the backward would sum
    # them again in a second pass.
    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def _checkpoint_context(recompute_approximation: bool) -> Any:
    """The selective checkpoint contexts of one traced region: :func:`_save_sigmoids_and_counts`, except that
    with ``recompute_approximation`` the region's second sigmoid, the approximation A(sigmoid(z)), is recomputed.

    That is for arrays of ``FRESH_PAGES_BYTES`` (32 MiB) or more: a second saved array then costs
    its page faults every step, more than the one exp per sample of recomputing A (n =
    1e7 float32, one thread: 1.36x-1.37x BCE's step saving both, 1.07x-1.10x recomputing A),
    and the backward writes the gradient into the saved sigmoid(z), so the step maps one
    fresh array, as BCE's does.  Below it glibc reuses the freed blocks, and saving both
    is cheaper (n = 1e6: 1.17x-1.19x recomputing A, 1.05x-1.19x saving both).
    The core computes sigmoid(z) first, then A of it (``sigmoid_first``); the rescue
    term's sigmoid(z) comes later and is saved (the compiler merges it with the first).
    """
    sigmoids = itertools.count()  # a fresh count per traced region: the policy sees ops in program order

    def policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
        if op is torch.ops.aten.sigmoid.default and next(sigmoids) == 1 and recompute_approximation:
            return CheckpointPolicy.PREFER_RECOMPUTE
        return _save_sigmoids_and_counts(ctx, op, *args, **kwargs)

    return create_selective_checkpoint_contexts(policy)


def _recomputes_approximation(input: torch.Tensor, options: dict[str, Any]) -> bool:
    """Whether the compiled region should recompute A(sigmoid(z)) (see :func:`_checkpoint_context`): logits
    through a ``sigmoid_first`` approximation, with arrays of at least ``FRESH_PAGES_BYTES``.  (With dynamic
    shapes the comparison becomes a guard on the batch size: one graph below the threshold, one above.)"""
    if not (options["from_logits"] and getattr(al.get_approximation(options["approximation"]), "sigmoid_first",
                                                False)):
        return False
    # A branch, not bool(): under dynamic shapes the checkpoint's context must be a Python constant, and a
    # branch makes it one.
    if fills_fresh_pages(input.numel(), input.element_size()):
        return True
    return False


def counts_and_term(input: torch.Tensor, target: Any, weight: Any, options: dict[str, Any],
                    rescue: float = 0.0) -> tuple[Any, ...]:
    """The core's four soft counts, then the rescue term when ``rescue``: what the compiled-CPU checkpoint holds
    (:func:`saving_checkpoint`).

    The rescue term is traced with the counts: its sigmoid is the counts' (the compiler
    merges them), so the backward reads the saved one instead of computing ``exp`` again.
    """
    counts = tuple(al.soft_confusion(target, input, sample_weight=weight, **options))
    if not rescue:
        return counts
    # Traced: no values to watch, and checkpoint regions allow no side effects.
    y, z, w, xp = prepared_for_rescue(target, input, weight, rescue=rescue, from_logits=options["from_logits"],
                                      watch=False)
    return (*counts, rescue_term(y, z, w, rescue=rescue, from_logits=options["from_logits"], xp=xp))


def saving_checkpoint(counts_of: Any, input: torch.Tensor, options: dict[str, Any]) -> Any:
    """``counts_of(input)`` as ``torch.compile`` traces it on a CPU: inside a selective checkpoint that saves the
    sigmoids and the counts for the backward (A(sigmoid(z)) recomputed for large arrays,
    :func:`_checkpoint_context`).  ``options`` holds ``from_logits`` and ``approximation``."""
    return checkpoint(counts_of, input, use_reentrant=False,
                      context_fn=functools.partial(_checkpoint_context, _recomputes_approximation(input, options)))


def _compiled_soft_counts(input: torch.Tensor, target: Any, weight: Any, options: dict[str, Any],
                          rescue: float = 0.0) -> tuple[al.Confusion, Any]:
    """:func:`counts_and_term` inside the :func:`saving_checkpoint`: the counts, and the rescue term (``0.0``
    without ``rescue``)."""
    out = saving_checkpoint(lambda input: counts_and_term(input, target, weight, options, rescue), input, options)
    return al.Confusion(*out[:4]), (out[4] if rescue else 0.0)


def _counts_of_path(path: Path, input: torch.Tensor, target: Any, weight: Any,
                    options: dict[str, Any]) -> al.Confusion:
    """The binary soft counts along ``path`` (the one-node path's counts are the analytic ones)."""
    if path in (Path.ONE_NODE, Path.ANALYTIC):
        return _analytic_counts(input, target, weight, options)[0]
    if path is Path.COMPILED_CPU:
        return _compiled_soft_counts(input, target, weight, options)[0]
    return al.soft_confusion(target, input, sample_weight=weight, **options)


def soft_counts(input: torch.Tensor, target: Any, weight: Any, **options: Any) -> al.Confusion:
    """Soft counts of ``input`` against ``target`` (binary): the analytic backward where it applies."""
    path = choose_path(input, weight, options["approximation"], target=target)
    return _counts_of_path(path, input, target, weight, options)


def global_counts(input: torch.Tensor, target: Any, weight: Any, *, distributed: bool = False,
                  process_group: Any = None, task: str = "binary", num_classes: Any = None, ignore_index: Any = None,
                  **options: Any) -> al.Confusion:
    """The soft counts of the batch (the analytic backward where it applies), summed over ``process_group``
    when ``distributed``: the counts of the global batch."""
    if task == "binary":
        counts = soft_counts(input, target, weight, **options)
    else:  # per-class counts: the core's closed-form backward where it applies
        counts = class_counts(input, target, weight, task=task, num_classes=num_classes, ignore_index=ignore_index,
                              **options)
    if distributed:
        counts = all_reduce_counts(counts, process_group)
    return counts


def soft_loss(input: torch.Tensor, target: Any, weight: Any, metric: Any, *, distributed: bool = False,
              process_group: Any = None, task: str = "binary", average: str = "macro", num_classes: Any = None,
              ignore_index: Any = None, metric_params: Any = None, rescue: float = 0.0, path: Path | None = None,
              **options: Any) -> torch.Tensor:
    """``1 - metric(soft counts)``, plus the rescue term, along the path :func:`choose_path` picks.

    ``metric`` and ``metric_params`` are what :func:`anyloss_core.confusion_loss` takes (a
    name or a metric function, and its keyword parameters), for every task; for a binary
    task the cheap form is the resolved function (``LossConfig.metric_fn``) with no
    ``metric_params``.  ``options`` are those of :func:`anyloss_core.soft_confusion`.  With
    ``distributed=True`` the counts are summed over ``process_group`` first (see
    ``all_reduce_counts``).  ``rescue`` adds the core's rescue gradient (binary task;
    :mod:`anyloss_core._rescue`), a term of value 0 of this process's samples.  ``path`` overrides
    :func:`choose_path` (binary task): ``anyloss_torch._region`` traces plain autodiff.
    """
    params = metric_params or {}
    if task != "binary":
        counts = global_counts(input, target, weight, distributed=distributed, process_group=process_group,
                               task=task, num_classes=num_classes, ignore_index=ignore_index, **options)
        return al.confusion_loss(counts, metric, task=task, average=average, **params)
    metric_fn = al.get_metric(metric, **params) if params or not callable(metric) else metric
    if path is None:
        path = choose_path(input, weight, options["approximation"], target=target, distributed=distributed,
                           metric=metric_fn)
    if path is Path.COMPILED_CPU and rescue and not distributed:
        # The rescue term traced in the counts' region: the backward reads their saved sigmoid.
        counts, term = _compiled_soft_counts(input, target, weight, options, rescue=rescue)
        return al.confusion_loss(counts, metric_fn) + term
    pulled = path in (Path.ONE_NODE, Path.ANALYTIC)
    # The stuck-batch watch; the arrays for a rescue term of its own, except on the one-node and analytic paths,
    # whose pullback adds the rescue gradient from the counts' own sigmoid.
    rescue_inputs = prepared_for_rescue(target, input, weight, rescue=rescue, from_logits=options["from_logits"],
                                        scale=options["scale"], approximation=options["approximation"],
                                        arrays=not pulled)
    if path is Path.ONE_NODE:
        loss = _one_node_loss(input, target, weight, metric_fn, options, rescue)
        if loss is not None:  # the rescue gradient is in its backward
            return loss
        path = Path.ANALYTIC  # a metric the float evaluator declines: autograd of the metric
    if path is Path.ANALYTIC:
        counts, term = _pulled_counts(input, target, weight, options, rescue=rescue, distributed=distributed,
                                      process_group=process_group)
        loss = al.confusion_loss(counts, metric_fn)
        return loss + term if rescue else loss
    counts = _counts_of_path(path, input, target, weight, options)
    if distributed:
        counts = all_reduce_counts(counts, process_group)
    loss = al.confusion_loss(counts, metric_fn)
    if rescue_inputs is None:
        return loss
    return loss + _rescue_term(rescue_inputs, rescue=rescue, from_logits=options["from_logits"],
                               distributed=distributed, process_group=process_group)


def _pulled_counts(input: torch.Tensor, target: Any, weight: Any, options: dict[str, Any], *, rescue: float,
                   distributed: bool, process_group: Any) -> tuple[al.Confusion, Any]:
    """:func:`_analytic_counts`, summed over ``process_group`` when ``distributed`` (the rescue term's gradient
    then normalised by the ranks' mean weight, :func:`_share_of_mean_weight`)."""
    counts, term = _analytic_counts(input, target, weight, options, rescue)
    if distributed:
        counts = all_reduce_counts(counts, process_group)
        if rescue:
            term = term * _share_of_mean_weight(input, weight, term, process_group)
    return counts, term


def running_loss(config: Any, input: torch.Tensor, target: Any, weight: Any, state: torch.Tensor, *,
                 distributed: bool = False, process_group: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, new_state)`` of a loss of running counts (:mod:`anyloss_core._running`) for ``config``, with
    its rescue term.

    On the one-node path (binary, eager, CPU or CUDA GPU) the metric's value and gradient at the running
    counts are evaluated on floats and the loss is one node, as :func:`soft_loss` does; elsewhere the
    counts are a node of their own and the metric is differentiated by autograd.  Where the counts have
    the analytic backward, their pullback adds the rescue gradient (one node instead of a term of its own).
    """
    binary = config.task == "binary"
    if binary:  # the stuck-batch watch, once per call whichever path runs
        prepared_for_rescue(target, input, weight, rescue=config.rescue, from_logits=config.from_logits,
                            scale=config.scale, approximation=config.approximation, arrays=False)
    path = choose_path(input, weight, config.approximation, target=target, distributed=distributed,
                       metric=config.metric_fn) if binary else None
    options = {"from_logits": config.from_logits, "scale": config.scale, "approximation": config.approximation,
               "validate": config.validate}  # a binary task's (counts_options has the per-class ones too)
    if path is Path.ONE_NODE:
        result = _one_node_running_loss(config, input, target, weight, state, options)
        if result is not None:
            return result
        path = Path.ANALYTIC  # a metric the float evaluator declines: autograd of the metric
    term: Any = 0.0
    if path is Path.ANALYTIC:
        counts, term = _pulled_counts(input, target, weight, options, rescue=config.rescue, distributed=distributed,
                                      process_group=process_group)
    else:
        counts = global_counts(input, target, weight, distributed=distributed, process_group=process_group,
                               **config.counts_options)
        if binary:
            term = rescue_loss_term(input, target, weight, rescue=config.rescue, distributed=distributed,
                                    process_group=process_group, from_logits=config.from_logits,
                                    scale=config.scale, approximation=config.approximation, watch=False)
    loss, new_state = config.running_loss_from_counts(counts, state, stop_gradient=torch.Tensor.detach)
    return (loss if isinstance(term, float) else loss + term), new_state


def _one_node_running_loss(config: Any, input: torch.Tensor, target: Any, weight: Any, state: torch.Tensor,
                           options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`running_loss` as one node: the batch's counts and the new state without autograd, the metric at the
    running counts on floats (its gradient there is the loss's with respect to the batch's counts), the counts'
    pullback (with the rescue gradient) as backward.  ``None`` where the float evaluator declines the metric."""
    with torch.no_grad():
        counts, pullback = al.soft_confusion_with_pullback(target, input, sample_weight=weight, rescue=config.rescue,
                                                           **options)
        new_state, total = config.running_state(torch.stack(tuple(counts)), state)
        estimate = (new_state * total).tolist()  # one read of the four running counts
    loss = _loss_node(input, config.metric_fn, al.Confusion(*estimate), pullback, new_state.dtype)
    return None if loss is None else (loss, new_state)


def _local_weight(n: int, weight: Any, like: torch.Tensor) -> torch.Tensor:
    """This process's total weight over its ``n`` flattened samples (``n`` unweighted), as the counts weigh them,
    as a 0-d tensor of ``like``'s dtype and device.  A weight per example of an ``(batch, ...)`` input is spread
    over the example's elements (``anyloss_core._inputs``), so it counts once per element."""
    if weight is None:
        return torch.full((), float(n), dtype=like.dtype, device=like.device)
    total = torch.sum(weight.detach()).to(like.dtype)
    spread = n // max(weight.numel(), 1)
    return total if spread == 1 else total * spread


def _share_of_mean_weight(input: torch.Tensor, weight: Any, like: torch.Tensor, process_group: Any) -> torch.Tensor:
    """This process's total sample weight over the processes' mean (no gradient; 0 where the mean is 0).

    The pullback normalises the rescue slope by this process's total; DistributedDataParallel
    averages the gradients, which makes the global batch's gradient only when each process
    normalises by the mean total (see ``mean_weight_over_ranks``), so the rescue term's
    gradient is scaled by this share.
    """
    with torch.no_grad():
        local = _local_weight(input.numel(), weight, like)
        mean = mean_weight_over_ranks(local, process_group)
        return torch.where(mean > 0, local / mean, torch.zeros_like(mean))  # no gradient: 0/0 is never used


def _rescue_term(rescue_inputs: Any, *, rescue: float, from_logits: bool, distributed: bool,
                 process_group: Any) -> Any:
    y, z, w, xp = rescue_inputs
    total = mean_weight_over_ranks(_local_weight(z.shape[0], w, z), process_group) if distributed else None
    return rescue_term(y, z, w, rescue=rescue, from_logits=from_logits, xp=xp, total=total)


def rescue_loss_term(input: torch.Tensor, target: Any, weight: Any, *, rescue: float, distributed: bool = False,
                     process_group: Any = None, from_logits: bool, scale: float, approximation: Any,
                     watch: bool = True) -> Any:
    """The rescue term of a binary loss (0 in value; :mod:`anyloss_core._rescue`), normalised by the
    global batch's weight when ``distributed``; ``0.0`` when it does not apply.  ``watch=False`` skips the
    stuck-batch watch (for a caller that ran it)."""
    prepared = prepared_for_rescue(target, input, weight, rescue=rescue, from_logits=from_logits, scale=scale,
                                   approximation=approximation, watch=watch)
    if prepared is None:
        return 0.0
    return _rescue_term(prepared, rescue=rescue, from_logits=from_logits, distributed=distributed,
                        process_group=process_group)


def _one_node_loss(input: torch.Tensor, target: Any, weight: Any, metric_fn: Any, options: dict[str, Any],
                   rescue: float) -> torch.Tensor | None:
    """The loss as one autograd node (counts, metric and rescue gradient in its backward), or ``None`` when
    the metric cannot be evaluated on floats."""
    # The counts as Python floats: on a CPU each sum is read for free; on a GPU the sums are read in one copy,
    # one wait for the device (TorchFastPaths.floats).  Computed outside autograd (_LossFromCounts attaches the
    # analytic backward): from the detached input, which autograd does not record, rather than in a no_grad()
    # block (seven Python calls fewer per call).  Labels and weights that require grad never come here
    # (choose_path).
    counts, pullback = al.soft_confusion_with_pullback(target, input.detach(), sample_weight=weight, rescue=rescue,
                                                       counts_as_floats=True, **options)
    # The counts' dtype, which the loss has: at least float32 (anyloss_core's compute dtype).
    dtype = input.dtype if input.dtype in _COMPUTE_DTYPES else torch.promote_types(input.dtype, torch.float32)
    return _loss_node(input, metric_fn, counts, pullback, dtype,
                      recompute=(_plain_loss, target, weight, metric_fn, options, rescue))


def _plain_loss(input: torch.Tensor, target: Any, weight: Any, metric_fn: Any, options: dict[str, Any],
                rescue: float) -> torch.Tensor:
    """:func:`_one_node_loss`'s loss as the plain composition (autograd of the core's counts, the metric and the
    rescue term), for a backward pass that records a graph."""
    return soft_loss(input, target, weight, metric_fn, rescue=rescue, path=Path.AUTODIFF, **options)


#: Input dtypes that are their own compute dtype (no promotion to look up).
_COMPUTE_DTYPES = (torch.float32, torch.float64)


#: Metrics the float evaluator declined for an operation it does not know (a user's metric): their next calls
#: take the analytic path at once, rather than compute and read the counts for the one-node path, decline, and
#: compute them again (on a GPU one wait per step for nothing).  Keyed by the function, then by the parameters a
#: ``functools.partial`` binds (``get_metric`` binds them anew at each call).
_DECLINED: weakref.WeakKeyDictionary[Any, set[Any]] = weakref.WeakKeyDictionary()


def _declined_key(metric_fn: Any) -> tuple[Any, Any]:
    if isinstance(metric_fn, functools.partial):
        return metric_fn.func, (metric_fn.args, tuple(sorted(metric_fn.keywords.items())))
    return metric_fn, ()


def _is_declined(metric_fn: Any) -> bool:
    if not _DECLINED:  # the usual case: nothing declined (a look-up costs a weak reference)
        return False
    fn, params = _declined_key(metric_fn)
    try:
        return params in _DECLINED.get(fn, ())
    except TypeError:  # unhashable, or not weakly referenceable: never remembered
        return False


def _remember_declined(metric_fn: Any) -> None:
    fn, params = _declined_key(metric_fn)
    try:
        _DECLINED.setdefault(fn, set()).add(params)
    except TypeError:  # as above: the float evaluator is asked again at each call
        pass


def _loss_node(input: torch.Tensor, metric_fn: Any, values: al.Confusion, pullback: Any,
               dtype: torch.dtype, recompute: tuple[Any, ...] | None = None) -> torch.Tensor | None:
    """``1 - metric(values)`` as one :class:`_LossFromCounts` node of ``input``: the metric's value and gradient at
    the float counts ``values``, ``pullback`` for the rest of the chain; ``None`` when the float evaluator
    declines the metric.  ``recompute = (fn, *args)``: ``fn(input, *args)`` is the same loss as a plain
    composition, which a backward pass that records a graph differentiates (``anyloss_torch._first_order``);
    without it (running counts) such a backward's gradient raises when differentiated again."""
    result = evaluate(metric_fn, values)
    if isinstance(result, str):
        if result is UNSUPPORTED:  # at any counts; a value problem may pass at the next batch's
            _remember_declined(metric_fn)
        return None
    value, metric_grad = result
    loss = torch.scalar_tensor(1.0 - value, dtype=dtype, device=input.device)
    out: torch.Tensor = _LossFromCounts.apply(input, loss, metric_grad, pullback, recompute)
    return out
