"""``nn.Module`` losses: ``AnyLoss(metric=...)`` and the named classes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import anyloss_core as al

from ._autograd import soft_loss
from ._functional import as_tensors_like

__all__ = ["AnyLoss", "F1Loss", "FBetaLoss", "AccuracyLoss", "GMeanLoss", "BalancedAccuracyLoss"]


class AnyLoss(al.LossConfigMixin, nn.Module):
    r"""AnyLoss as an ``nn.Module``: ``1 - metric(soft confusion counts)``.

    Called as ``loss_fn(input, target, weight=None)`` with logits by default, like
    ``nn.BCEWithLogitsLoss``; returns a 0-d tensor (float32 for half-precision
    inputs: the counts are accumulated in float32).  ``weight`` holds per-sample
    weights, which weight the soft counts.  The configuration travels with
    pickling and with ``state_dict`` (as extra state).

    Args:
        metric: a metric name ("f1", "fbeta", "gmean", "balanced_accuracy", "mcc",
            ...) or a callable ``f(confusion, xp)``.
        from_logits: ``input`` holds logits (default) or probabilities.
        scale: the amplifying scale ``L`` (73, as in the paper).
        approximation: "anyloss", "identity", "sol-cosine", or an approximation object.
        validate: check label values (CPU tensors outside compile / vmap only).
        distributed: sum the counts over ``process_group`` so the loss is that of the
            global batch under ``DistributedDataParallel``.
        process_group: the group for ``distributed=True`` (default: all ranks).
        task: "binary" (default), "multiclass" (``(n, C)`` logits, class ids or one-hot
            targets, as ``nn.CrossEntropyLoss``) or "multilabel" (``(n, C)`` logits, multi-hot).
        average: per-class averaging for multi-class / multi-label: "macro" (default),
            "micro", "weighted" or "none" (a loss per class).
        num_classes: checked against the input's class axis when given.
        ignore_index: a class id whose rows do not count (class-id targets).
        **metric_params: the metric's parameters, e.g. ``beta=2.0``.

    Examples:
        >>> import torch, anyloss_torch
        >>> loss_fn = anyloss_torch.AnyLoss("fbeta", beta=2.0)
        >>> loss_fn
        AnyLoss(metric='fbeta', beta=2.0, from_logits=True, scale=73.0, approximation='anyloss', validate=True)
        >>> round(loss_fn(torch.tensor([3.0, -3.0]), torch.tensor([1, 0])).item(), 4)
        0.0
    """

    def __init__(
        self,
        metric: Any = "f1",
        *,
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
    ) -> None:
        super().__init__()
        self._init_config(
            metric,
            task=task,
            average=average,
            num_classes=num_classes,
            ignore_index=ignore_index,
            from_logits=from_logits,
            scale=scale,
            approximation=approximation,
            validate=validate,
            metric_params=metric_params,
        )
        self.distributed = bool(distributed)
        self.process_group = process_group

    def forward(self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        target, weight = as_tensors_like(input, target, weight)
        return soft_loss(
            input,
            target,
            weight,
            self._metric_fn if self.task == "binary" else self.metric,
            distributed=self.distributed,
            process_group=self.process_group,
            task=self.task,
            average=self.average,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            metric_params=self.metric_params,
            from_logits=self.from_logits,
            scale=self.scale,
            approximation=self.approximation,
            validate=self.validate,
        )

    def extra_repr(self) -> str:
        text = self.config_repr()
        return text + (", distributed=True" if self.distributed else "")

    # The configuration is state too: keep it in state_dict, so a checkpoint says
    # which loss it was trained with and loading restores it.
    def get_extra_state(self) -> dict[str, Any]:
        return {"config": self.config_dict(), "distributed": self.distributed}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        config = dict(state["config"])
        metric = config.pop("metric", self.fixed_metric)
        known = ("from_logits", "scale", "approximation", "validate", "task", "average", "num_classes",
                 "ignore_index")
        kwargs = {k: config.pop(k) for k in known if k in config}
        self._init_config(metric, metric_params=config, **kwargs)
        self.distributed = bool(state.get("distributed", False))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["process_group"] = None  # process groups are per process; not picklable
        return state


class F1Loss(AnyLoss):
    r"""F1 loss :math:`1 - 2TP / (2TP + FP + FN)`; see :class:`AnyLoss`.

    Examples:
        >>> import torch, anyloss_torch
        >>> anyloss_torch.F1Loss()
        F1Loss(from_logits=True, scale=73.0, approximation='anyloss', validate=True)
    """

    fixed_metric = "f1"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)


class FBetaLoss(AnyLoss):
    r"""F-beta loss :math:`1 - (1+\beta^2)TP / ((1+\beta^2)TP + FP + \beta^2 FN)`; see :class:`AnyLoss`."""

    fixed_metric = "fbeta"

    def __init__(self, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(beta=beta, **kwargs)


class AccuracyLoss(AnyLoss):
    r"""Accuracy loss :math:`1 - (TP + TN) / n`; see :class:`AnyLoss`."""

    fixed_metric = "accuracy"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)


class GMeanLoss(AnyLoss):
    r"""G-mean loss :math:`1 - \sqrt{TPR \cdot TNR}`; see :class:`AnyLoss`."""

    fixed_metric = "gmean"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)


class BalancedAccuracyLoss(AnyLoss):
    r"""Balanced-accuracy loss :math:`1 - (TPR + TNR) / 2`; see :class:`AnyLoss`."""

    fixed_metric = "balanced_accuracy"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
