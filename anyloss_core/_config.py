"""A framework-free mixin holding a loss's configuration, shared by the adapters' classes.

The torch ``nn.Module`` and the Keras ``Loss`` classes are thin: they inherit this
mixin for argument checks, configuration (repr, ``get_config``, pickling) and the
call into the core, and add only what their framework needs.
"""

from __future__ import annotations

from typing import Any

from ._approximations import Approximation, get_approximation
from ._confusion import check_scale, soft_confusion
from ._losses import confusion_loss
from ._metrics import Confusion, Metric, get_metric
from ._multiclass import check_multiclass_approximation, check_task
from ._rescue import DEFAULT_RESCUE, check_rescue, rescue_for
from ._running import check_momentum, running_confusion_loss, running_counts_shape
from ._types import Array, Namespace

__all__ = ["LossConfigMixin"]


class LossConfigMixin:
    """Stores and checks ``metric``, ``from_logits``, ``scale``, ``approximation``, metric parameters."""

    #: Set by the named classes (``F1Loss``...): their metric is fixed.
    fixed_metric: str | None = None

    def _init_config(
        self,
        metric: str | Metric,
        *,
        from_logits: bool,
        scale: float,
        approximation: str | Approximation,
        validate: bool,
        metric_params: dict[str, Any],
        task: str = "binary",
        average: str = "macro",
        num_classes: int | None = None,
        ignore_index: int | None = None,
        momentum: float | None = None,
        rescue: float = DEFAULT_RESCUE,
    ) -> None:
        if not isinstance(from_logits, bool):
            raise TypeError(f"from_logits must be True or False, got {from_logits!r}")
        if not isinstance(validate, bool):
            raise TypeError(f"validate must be True or False, got {validate!r}")
        metric = self.fixed_metric or metric
        # Resolve now, so a typo fails when the loss is built rather than at the first step.
        check_task(task, average)
        self._metric_fn = get_metric(metric, **metric_params)
        if task == "multiclass":  # "softmax", "ovr" or a SharpenedSoftmax there
            check_multiclass_approximation(approximation)
        else:
            get_approximation(approximation)
        self.metric = metric
        self.metric_params = dict(metric_params)
        self.from_logits = from_logits
        self.scale = check_scale(scale)  # every task: the same check as the binary path
        self.approximation = approximation
        self.validate = validate
        for name, value in (("num_classes", num_classes), ("ignore_index", ignore_index)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be an integer or None, got {value!r}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.task, self.average, self.num_classes, self.ignore_index = task, average, num_classes, ignore_index
        self.momentum = check_momentum(momentum)
        self.rescue = check_rescue(rescue)
        if self.momentum is not None:
            running_counts_shape(task, num_classes)  # per-class state needs num_classes: say so now

    def config_dict(self) -> dict[str, Any]:
        """The constructor arguments, metric parameters flattened in (as they are passed)."""
        config: dict[str, Any] = {}
        if self.fixed_metric is None:
            config["metric"] = self.metric
        config.update(self.metric_params)
        config.update(
            from_logits=self.from_logits,
            scale=self.scale,
            approximation=self.approximation,
            validate=self.validate,
        )
        if self.task != "binary":  # binary configurations stay as they were
            config.update(task=self.task, average=self.average, num_classes=self.num_classes,
                          ignore_index=self.ignore_index)
        if self.momentum is not None:  # configurations without running counts stay as they were
            config["momentum"] = self.momentum
        if self.rescue != DEFAULT_RESCUE:
            config["rescue"] = self.rescue
        return config

    def config_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config_dict().items())

    def soft_counts(
        self, y_true: Array, y_pred: Array, sample_weight: Array | None = None, *, xp: Namespace | None = None
    ) -> Confusion:
        return soft_confusion(
            y_true,
            y_pred,
            from_logits=self.from_logits,
            scale=self.scale,
            approximation=self.approximation,
            sample_weight=sample_weight,
            validate=self.validate,
            xp=xp,
            task=self.task,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
        )

    def loss_from_counts(self, counts: Confusion, *, xp: Namespace | None = None) -> Array:
        if self.task != "binary":
            return confusion_loss(counts, self.metric, xp=xp, task=self.task, average=self.average,
                                  **self.metric_params)
        return confusion_loss(counts, self._metric_fn, xp=xp)


    def running_loss_from_counts(self, counts: Confusion, state: Array, *, stop_gradient: Any,
                                 xp: Namespace | None = None) -> tuple[Array, Array]:
        """``(loss, new_state)`` at running counts (``momentum`` set); see :mod:`anyloss_core._running`."""
        if self.momentum is None:
            raise ValueError("running counts need momentum= in (0, 1] when the loss is built")
        if self.task != "binary":
            return running_confusion_loss(counts, state, self.metric, momentum=self.momentum,
                                          stop_gradient=stop_gradient, xp=xp, task=self.task,
                                          average=self.average, **self.metric_params)
        return running_confusion_loss(counts, state, self._metric_fn, momentum=self.momentum,
                                      stop_gradient=stop_gradient, xp=xp)

    def rescue_gradient(self, y_true: Array, y_pred: Array, sample_weight: Array | None = None, *,
                        xp: Namespace | None = None) -> Array:
        """The rescue term to add to a binary loss (0 in value; see :mod:`anyloss_core._rescue`)."""
        if self.task != "binary":
            return 0.0
        return rescue_for(y_true, y_pred, sample_weight, rescue=self.rescue, from_logits=self.from_logits,
                          scale=self.scale, approximation=self.approximation, xp=xp)
