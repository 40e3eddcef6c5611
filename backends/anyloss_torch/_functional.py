"""The functional form: ``anyloss_torch.anyloss(input, target, ...)``."""

from __future__ import annotations

from typing import Any

import torch

from anyloss_core.adapters import DEFAULT_RESCUE, DEFAULT_SCALE, LossConfig, with_metric

from .interop import config_loss

__all__ = ["anyloss", "accuracy_loss", "f1_loss", "fbeta_loss", "gmean_loss", "balanced_accuracy_loss"]


_BATCH_STATISTIC = (
    "AnyLoss is one statistic of the whole batch (1 - metric of the batch's soft confusion counts), "
    "not a mean of per-sample losses"
)


def check_torch_options(*, task: str, ignore_index: Any, reduction: Any, pos_weight: Any, weight: Any = None) -> None:
    """Reject, with the alternative named, the arguments of torch's own losses that have no meaning here.

    ``weight`` is the constructor's (``BCEWithLogitsLoss(weight=...)``); the call's
    per-sample ``weight`` is supported and not checked here.
    """
    if reduction != "mean":
        if reduction == "none":
            raise ValueError(
                f"reduction='none' is not supported: {_BATCH_STATISTIC}, so there is no per-sample loss to return; "
                "reduction='mean' (the default) is accepted and changes nothing. For one loss per class use "
                "average='none' with task='multiclass' or 'multilabel'"
            )
        if reduction == "sum":
            raise ValueError(
                f"reduction='sum' is not supported: {_BATCH_STATISTIC}, so there is nothing to sum; "
                "reduction='mean' (the default) is accepted and changes nothing. To weight samples pass "
                "per-sample weights at call time (weight=...)"
            )
        raise ValueError(f"reduction must be 'mean', got {reduction!r}: {_BATCH_STATISTIC}")
    if weight is not None:
        raise TypeError(
            "weight= at construction is not supported (BCEWithLogitsLoss's fixed per-element rescaling has no "
            "counterpart in a batch statistic): per-sample weights are given at call time, "
            "loss_fn(input, target, weight=w) with w of shape (n,), and they weight the soft confusion counts"
        )
    if pos_weight is not None:
        raise TypeError(
            "pos_weight is not supported: AnyLoss weights confusion counts, not per-sample log-losses. "
            "To favour recall use F-beta with beta > 1 (FBetaLoss(beta=2.0), or metric='fbeta', beta=2.0); "
            "to make positives count pos_weight times, as BCE's pos_weight does, pass per-sample weights at "
            "call time: weight=1 + (pos_weight - 1) * target"
        )
    if ignore_index is not None and task != "multiclass":
        how = ("loss_fn(input, target.where(keep, 0), weight=keep.float()) with keep = target != ignore_index"
               if task == "binary" else "weight=keep.float() with keep an (n,) boolean mask of the rows that count")
        raise ValueError(
            f"ignore_index applies only to task='multiclass' (class-id targets), got task={task!r}; "
            f"to leave rows out, give them zero weight at call time: {how}"
        )


def _as_tensor(name: str, value: Any, device: torch.device) -> torch.Tensor:
    try:
        return torch.as_tensor(value, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"{name} must be a tensor or array-like of numbers, got {type(value).__name__} ({error})"
        ) from None


def as_tensors_like(input: torch.Tensor, target: Any, weight: Any = None) -> tuple[Any, Any]:
    """``target`` and ``weight`` as tensors on ``input``'s device (NumPy labels are common); ``None`` stays.

    ``input`` itself must be a tensor, as for torch's own losses: it is what the
    gradient flows to, and a list or NumPy array would have none.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(
            f"input must be a torch.Tensor, got {type(input).__name__}; convert with torch.as_tensor(input)"
        )
    if target is not None and not isinstance(target, torch.Tensor):
        target = _as_tensor("target", target, input.device)
    if weight is not None and not isinstance(weight, torch.Tensor):
        weight = _as_tensor("weight", weight, input.device)
    return target, weight


def anyloss(
    input: torch.Tensor,
    target: torch.Tensor,
    metric: Any = "f1",
    *,
    weight: torch.Tensor | None = None,
    from_logits: bool = True,
    scale: float = DEFAULT_SCALE,
    approximation: Any = "anyloss",
    validate: bool = True,
    distributed: bool = False,
    process_group: Any = None,
    task: str = "binary",
    average: str = "macro",
    num_classes: int | None = None,
    ignore_index: int | None = None,
    rescue: float = DEFAULT_RESCUE,
    reduction: str = "mean",
    pos_weight: None = None,
    **metric_params: Any,
) -> torch.Tensor:
    r"""AnyLoss of ``input`` (logits by default) against ``target``: ``1 - metric(soft counts)``.

    See :func:`anyloss_core.anyloss` for the formula.  Differences are only the
    torch conventions: ``(input, target)`` order, logits by default
    (``from_logits=True``, as ``BCEWithLogitsLoss``), ``weight`` for per-sample
    weights that weight the soft counts.

    ``distributed=True`` sums the counts over ``process_group`` (all ranks by
    default) with a differentiable all-reduce of four numbers, so the loss is that
    of the global batch; see the distributed-training docs.

    ``task="multiclass"`` takes ``(n, C)`` logits (softmax) and class ids ``(n,)``
    or one-hot targets, as ``nn.CrossEntropyLoss``; ``task="multilabel"`` takes
    ``(n, C)`` logits (a sigmoid per label) and multi-hot targets; ``average``,
    ``num_classes`` and ``ignore_index`` as in :func:`anyloss_core.anyloss`
    (``ignore_index`` with ``task="multiclass"`` only).

    The loss is one statistic of the whole batch, so ``reduction`` accepts only
    ``"mean"`` (a no-op, for code written for ``binary_cross_entropy_with_logits``);
    ``"none"`` and ``"sum"`` raise ``ValueError``.  ``pos_weight`` raises
    ``TypeError``: use F-beta with ``beta > 1`` or per-sample weights
    ``weight = 1 + (pos_weight - 1) * target``.  ``input`` must be a tensor;
    ``target`` and ``weight`` may also be NumPy arrays or lists.

    ``rescue`` (0.1) gives samples on the wrong side of the threshold a small
    binary-cross-entropy gradient without changing the loss's value, so a network
    whose logits start large still trains; ``rescue=0`` is the paper's gradient
    exactly (see :mod:`anyloss_core._rescue`).

    Value checks (labels in {0, 1}) run only for CPU tensors outside
    ``torch.compile`` / ``vmap``: on an accelerator they would cost a host sync.

    Examples:
        >>> import torch, anyloss_torch
        >>> logits = torch.tensor([-2.0, 1.5, -0.5, 3.0], requires_grad=True)
        >>> loss = anyloss_torch.anyloss(logits, torch.tensor([0, 1, 1, 1]), "gmean")
        >>> loss.backward()
        >>> round(loss.item(), 2), bool(torch.isfinite(logits.grad).all())
        (0.18, True)
    """
    check_torch_options(task=task, ignore_index=ignore_index, reduction=reduction, pos_weight=pos_weight)
    # Named, not locals(): dynamo before torch 2.12 cannot trace locals() (a fullgraph compile failed).
    config = LossConfig.from_arguments({
        "metric": metric, "metric_params": metric_params, "from_logits": from_logits, "scale": scale,
        "approximation": approximation, "validate": validate, "task": task, "average": average,
        "num_classes": num_classes, "ignore_index": ignore_index, "rescue": rescue})
    target, weight = as_tensors_like(input, target, weight)
    # The traced path under torch.compile.  Regions would cut this call's guards (657 lines to 343 at n = 32) and
    # its compiled time (1.28x-1.30x BCE to 1.21x-1.22x, benchmarks/compiled_functional.py), but a float
    # argument that changes between calls (a swept beta) then compiles once per value, fixed inside the region,
    # and fullgraph=True fails at dynamo's limit of 8; the traced path compiles it once, as a symbolic float.
    return config_loss(config, input, target, weight, distributed=distributed, process_group=process_group,
                       regions=False)


accuracy_loss = with_metric(anyloss, "accuracy")
f1_loss = with_metric(anyloss, "f1")
gmean_loss = with_metric(anyloss, "gmean")
balanced_accuracy_loss = with_metric(anyloss, "balanced_accuracy")
fbeta_loss = with_metric(anyloss, "fbeta", beta=1.0)
