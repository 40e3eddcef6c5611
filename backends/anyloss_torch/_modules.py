"""``nn.Module`` losses: ``AnyLoss(metric=...)`` and the named classes."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from anyloss_core.adapters import DEFAULT_RESCUE, DEFAULT_SCALE, LossConfig, LossConfigAttributes, running_counts_shape

from ._autograd import running_loss
from ._functional import as_tensors_like, check_torch_options
from .interop import config_loss

__all__ = ["AnyLoss", "F1Loss", "FBetaLoss", "AccuracyLoss", "GMeanLoss", "BalancedAccuracyLoss"]


class AnyLoss(LossConfigAttributes, nn.Module):
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
        ignore_index: a class id whose rows do not count (``task="multiclass"`` with
            class-id targets only; other tasks raise ``ValueError`` here).
        momentum: ``None`` (default): the loss of the batch.  A number ``m`` in (0, 1]:
            running counts for mini-batches (SOX): the buffer ``running_counts`` (tn, fn,
            fp, tp as fractions; ``(num_classes, 4)`` per class, so ``num_classes`` is then
            required for multi-class / multi-label) becomes ``(1 - m) * running + m *
            batch`` at every call in training mode, and the loss is ``1 - metric`` at the
            running counts, with the gradient of the batch's counts weighted by the
            metric's slope there.  ``m = 1`` is the plain loss.  In ``eval()`` mode and
            under ``torch.no_grad()`` (a validation pass) the loss is the batch's and the
            buffer is left alone; ``reset_running_counts()``
            empties it; it is in ``state_dict`` and, with ``distributed=True``, the same
            on every rank (the counts are summed first).  See the training how-to.
        rescue: the weight of the rescue gradient (0.1): samples on the wrong side of the
            threshold also get ``rescue`` times binary cross-entropy's gradient, the loss's
            value unchanged, so confidently wrong samples (whose AnyLoss gradient vanishes)
            are still corrected; 0 is the paper's gradient exactly.  Binary task only.
        reduction: only ``"mean"`` (a no-op, accepted for code written for torch's
            losses): the loss is one statistic of the whole batch, not a mean of
            per-sample losses, so ``"none"`` and ``"sum"`` raise ``ValueError``.
        weight: not supported here (``TypeError``): per-sample weights are given at
            call time, ``loss_fn(input, target, weight=w)``.
        pos_weight: not supported (``TypeError``): use F-beta with ``beta > 1`` to
            favour recall, or per-sample weights ``1 + (pos_weight - 1) * target``.
        **metric_params: the metric's parameters, e.g. ``beta=2.0``.

    Examples:
        >>> import torch, anyloss_torch
        >>> loss_fn = anyloss_torch.AnyLoss("fbeta", beta=2.0)
        >>> loss_fn
        AnyLoss(metric='fbeta', beta=2.0, from_logits=True, scale=73.0, approximation='anyloss', validate=True)
        >>> round(loss_fn(torch.tensor([3.0, -3.0]), torch.tensor([1, 0])).item(), 4)
        0.0
    """

    #: As torch's losses have it; always "mean" (the only value accepted), so not part of the configuration.
    reduction = "mean"

    def __init__(
        self,
        metric: Any = "f1",
        *,
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
        momentum: float | None = None,
        rescue: float = DEFAULT_RESCUE,
        reduction: str = "mean",
        weight: None = None,
        pos_weight: None = None,
        **metric_params: Any,
    ) -> None:
        super().__init__()
        check_torch_options(task=task, ignore_index=ignore_index, reduction=reduction, pos_weight=pos_weight,
                            weight=weight)
        self.config = self._config_from(locals())
        self.distributed = bool(distributed)
        self.process_group = process_group
        self._register_running_counts()

    def _register_running_counts(self) -> None:
        # A buffer, as BatchNorm's running statistics: in state_dict, moved by .to(), not a parameter.
        shape = running_counts_shape(self.task, self.num_classes) if self.momentum is not None else None
        current = getattr(self, "running_counts", None)
        if shape is None:
            self.register_buffer("running_counts", None)
        elif current is None or tuple(current.shape) != shape:
            self.register_buffer("running_counts", torch.zeros(shape, dtype=torch.float32))

    def reset_running_counts(self) -> None:
        """Empty the running counts (zeros): the next training batch fills them, as at the start."""
        if self.running_counts is None:
            raise RuntimeError(f"{type(self).__name__} has no running counts: build it with momentum=...")
        self.running_counts.zero_()

    def forward(self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        target, weight = as_tensors_like(input, target, weight)
        config = self.config
        # config.momentum, not the property self.momentum: under torch.compile a property read through the
        # class hierarchy is a guard per base class at every call.
        if config.momentum is not None and self.training and torch.is_grad_enabled():
            return self._running_loss(input, target, weight)
        return config_loss(config, input, target, weight, distributed=self.distributed,
                           process_group=self.process_group)

    def _running_loss(self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        loss, state = running_loss(self.config, input, target, weight, self.running_counts,
                                   distributed=self.distributed, process_group=self.process_group)
        with torch.no_grad():
            self.running_counts.copy_(state)
        return loss

    def extra_repr(self) -> str:
        text = self.config.to_repr()
        return text + (", distributed=True" if self.distributed else "")

    # The configuration is state too: keep it in state_dict, so a checkpoint says
    # which loss it was trained with and loading restores it.
    def get_extra_state(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "distributed": self.distributed}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.config = LossConfig.from_dict(state["config"], fixed_metric=self.fixed_metric)
        self.distributed = bool(state.get("distributed", False))
        self._register_running_counts()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["process_group"] = None  # process groups are per process; not picklable
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "config" not in state:  # pickled before LossConfig: the settings were attributes
            state = {**state, "config": LossConfig.from_arguments(state, fixed_metric=type(self).fixed_metric)}
        super().__setstate__(state)


class _FixedMetricLoss(AnyLoss):
    """AnyLoss with the metric fixed by the subclass (``fixed_metric``).

    Each subclass gets an ``__init__`` whose signature is :class:`AnyLoss`'s without
    ``metric`` and ``**metric_params``, with the metric's own parameters
    (``metric_parameters``, e.g. FBetaLoss's ``beta``) first: one signature to keep, and
    ``help()`` / IDEs still list every keyword.  A wrong keyword is reported as
    ``F1Loss.__init__() got an unexpected keyword argument ...``, naming the class.
    """

    #: The metric's own parameters, first in the signature (positional or keyword).
    metric_parameters: tuple[inspect.Parameter, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            cls.__init__ = _fixed_metric_init(cls)  # type: ignore[method-assign]


def _fixed_metric_init(cls: type[_FixedMetricLoss]) -> Any:
    base = inspect.signature(AnyLoss.__init__)
    self_, _, *keywords_ = (p for p in base.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD)
    signature = base.replace(parameters=[self_, *cls.metric_parameters, *keywords_])

    def __init__(self: _FixedMetricLoss, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{cls.__qualname__}.__init__() {error}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments["self"]
        AnyLoss.__init__(self, cls.fixed_metric, **arguments)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__qualname__, __init__.__module__ = f"{cls.__qualname__}.__init__", cls.__module__
    return __init__


class F1Loss(_FixedMetricLoss):
    r"""F1 loss :math:`1 - 2TP / (2TP + FP + FN)`; see :class:`AnyLoss`.

    Examples:
        >>> import torch, anyloss_torch
        >>> anyloss_torch.F1Loss()
        F1Loss(from_logits=True, scale=73.0, approximation='anyloss', validate=True)
    """

    fixed_metric = "f1"


class FBetaLoss(_FixedMetricLoss):
    r"""F-beta loss :math:`1 - (1+\beta^2)TP / ((1+\beta^2)TP + FP + \beta^2 FN)`; see :class:`AnyLoss`.

    ``beta > 1`` weights recall above precision (FN count ``beta**2`` times as much as FP).

    Examples:
        >>> import anyloss_torch
        >>> anyloss_torch.FBetaLoss(2.0)
        FBetaLoss(beta=2.0, from_logits=True, scale=73.0, approximation='anyloss', validate=True)
    """

    fixed_metric = "fbeta"
    metric_parameters = (inspect.Parameter("beta", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=1.0,
                                           annotation="float"),)


class AccuracyLoss(_FixedMetricLoss):
    r"""Accuracy loss :math:`1 - (TP + TN) / n`; see :class:`AnyLoss`."""

    fixed_metric = "accuracy"


class GMeanLoss(_FixedMetricLoss):
    r"""G-mean loss :math:`1 - \sqrt{TPR \cdot TNR}`; see :class:`AnyLoss`."""

    fixed_metric = "gmean"


class BalancedAccuracyLoss(_FixedMetricLoss):
    r"""Balanced-accuracy loss :math:`1 - (TPR + TNR) / 2`; see :class:`AnyLoss`."""

    fixed_metric = "balanced_accuracy"
