"""The functional form: ``anyloss_torch.anyloss(input, target, ...)``."""

from __future__ import annotations

from typing import Any

import torch

import anyloss_core as al

from ._autograd import soft_loss

__all__ = ["anyloss", "accuracy_loss", "f1_loss", "fbeta_loss", "gmean_loss", "balanced_accuracy_loss"]


def as_tensors_like(input: torch.Tensor, *others: Any) -> tuple[Any, ...]:
    """``others`` as tensors on ``input``'s device (NumPy labels are common); ``None`` stays."""
    return tuple(
        o if o is None or isinstance(o, torch.Tensor) else torch.as_tensor(o, device=input.device) for o in others
    )


def anyloss(
    input: torch.Tensor,
    target: torch.Tensor,
    metric: Any = "f1",
    *,
    weight: torch.Tensor | None = None,
    from_logits: bool = True,
    scale: float = 73.0,
    approximation: Any = "anyloss",
    validate: bool = True,
    distributed: bool = False,
    process_group: Any = None,
    task: str = "binary",
    average: str = "macro",
    num_classes: int | None = None,
    ignore_index: int | None = None,
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
    ``num_classes`` and ``ignore_index`` as in :func:`anyloss_core.anyloss`.

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
    target, weight = as_tensors_like(input, target, weight)
    return soft_loss(
        input,
        target,
        weight,
        al.get_metric(metric, **metric_params) if task == "binary" else metric,
        distributed=distributed,
        process_group=process_group,
        task=task,
        average=average,
        num_classes=num_classes,
        ignore_index=ignore_index,
        metric_params=metric_params,
        from_logits=from_logits,
        scale=scale,
        approximation=approximation,
        validate=validate,
    )


accuracy_loss = al.with_metric(anyloss, "accuracy")
f1_loss = al.with_metric(anyloss, "f1")
gmean_loss = al.with_metric(anyloss, "gmean")
balanced_accuracy_loss = al.with_metric(anyloss, "balanced_accuracy")
fbeta_loss = al.with_metric(anyloss, "fbeta", beta=1.0)
