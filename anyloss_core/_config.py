"""A loss's configuration: one frozen, validated object that every adapter builds and uses.

:class:`LossConfig` holds the constructor arguments of a loss (the metric and its
parameters, ``from_logits``, ``scale``, ``approximation``, ``validate``, ``task``,
``average``, ``num_classes``, ``ignore_index``, ``momentum``, ``rescue``).  Building one
checks every argument, so a typo fails when the loss is built rather than at the first
step; the metric function is resolved once.  The torch ``nn.Module``, the Keras ``Loss``
and the JAX functions hold one (``self.config``) and call the core through it; its
:meth:`LossConfig.to_dict` is their ``get_config`` / repr / state.

A new keyword is one field here (with its check in ``__post_init__``) plus the
adapters' signatures.

Examples:
    >>> from anyloss_core.adapters import LossConfig
    >>> config = LossConfig("fbeta", {"beta": 2.0}, from_logits=True)
    >>> config.to_dict()
    {'metric': 'fbeta', 'beta': 2.0, 'from_logits': True, 'scale': 73.0, 'approximation': 'anyloss', 'validate': True}
    >>> LossConfig("f1", task="multiclas")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown task 'multiclas' (did you mean 'multiclass' or 'multilabel'?); choose one of ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._approximations import Approximation, get_approximation
from ._confusion import soft_confusion
from ._losses import confusion_loss
from ._metrics import Confusion, Metric, get_metric
from ._multiclass import check_multiclass_approximation, check_task
from ._rescue import DEFAULT_RESCUE, check_rescue, rescue_for
from ._running import check_momentum, running_confusion_loss, running_counts_shape, running_state
from ._scale import DEFAULT_SCALE, check_scale
from ._types import Array, Namespace

__all__ = ["LossConfig", "LossConfigAttributes"]


@dataclass(frozen=True)
class LossConfig:
    """The validated constructor arguments of a loss, and the calls into the core that use them.

    Fields are the loss's keywords (see :func:`anyloss_core.anyloss`); ``metric_params``
    holds the metric's own parameters (``{"beta": 2.0}``), and ``fixed_metric`` is set by
    the named classes (``F1Loss``...), whose metric is not a constructor argument and so
    stays out of :meth:`to_dict`.  ``scale``, ``momentum`` and ``rescue`` are stored as
    floats.  The resolved metric function is :attr:`metric_fn`.
    """

    metric: str | Metric = "f1"
    metric_params: Mapping[str, Any] = field(default_factory=dict)
    from_logits: bool = False
    scale: float = DEFAULT_SCALE
    approximation: str | Approximation = "anyloss"
    validate: bool = True
    task: str = "binary"
    average: str = "macro"
    num_classes: int | None = None
    ignore_index: int | None = None
    momentum: float | None = None
    rescue: float = DEFAULT_RESCUE
    fixed_metric: bool = False

    #: The keywords that :meth:`to_dict` writes only when they differ from a plain binary loss.
    _TASK_FIELDS: ClassVar[tuple[str, ...]] = ("task", "average", "num_classes", "ignore_index")

    def __post_init__(self) -> None:
        # The order of the checks is the order of the errors users see; keep it.
        if not isinstance(self.from_logits, bool):
            raise TypeError(f"from_logits must be True or False, got {self.from_logits!r}")
        if not isinstance(self.validate, bool):
            raise TypeError(f"validate must be True or False, got {self.validate!r}")
        check_task(self.task, self.average)
        # Resolved now, so a typo fails when the loss is built rather than at the first step.
        metric_fn = get_metric(self.metric, **self.metric_params)
        if self.task == "multiclass":  # "softmax", "ovr" or a SharpenedSoftmax there
            check_multiclass_approximation(self.approximation)
        else:
            get_approximation(self.approximation)
        scale = check_scale(self.scale)  # every task: the same check as the binary path
        for name in ("num_classes", "ignore_index"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be an integer or None, got {value!r}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
        momentum = check_momentum(self.momentum)
        rescue = check_rescue(self.rescue)
        if momentum is not None:
            running_counts_shape(self.task, self.num_classes)  # per-class state needs num_classes: say so now
        # A frozen dataclass: normalised values go in through object.__setattr__.
        for name, value in (("metric_params", dict(self.metric_params)), ("scale", scale), ("momentum", momentum),
                            ("rescue", rescue), ("_metric_fn", metric_fn)):
            object.__setattr__(self, name, value)

    @property
    def metric_fn(self) -> Metric:
        """The resolved metric function ``f(confusion, xp)`` (metric parameters bound)."""
        fn: Metric = self.__dict__["_metric_fn"]
        return fn

    @property
    def counts_options(self) -> dict[str, Any]:
        """The keywords of :func:`anyloss_core.soft_confusion` that this configuration sets."""
        return {"from_logits": self.from_logits, "scale": self.scale, "approximation": self.approximation,
                "validate": self.validate, "task": self.task, "num_classes": self.num_classes,
                "ignore_index": self.ignore_index}

    @property
    def loss_metric(self) -> str | Metric:
        """The metric as the loss functions take it: resolved (binary), or as given with
        :attr:`metric_params` (multi-class / multi-label, where the core averages per class)."""
        return self.metric_fn if self.task == "binary" else self.metric

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any], *, fixed_metric: str | None = None) -> LossConfig:
        """From a loss's own arguments (a constructor's or a function's ``locals()``): the fields it
        names, the others (``input``, ``distributed``, ``name``...) left out.

        So a loss passes its arguments on without listing them again, and a new field needs
        only the signatures.  ``fixed_metric`` (``"f1"`` for ``F1Loss``) replaces ``metric``.
        """
        options = {name: arguments[name] for name in _FIELDS if name in arguments}
        if fixed_metric is not None:
            options["metric"] = fixed_metric
        return cls(**options, fixed_metric=fixed_metric is not None)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], *, fixed_metric: str | None = None) -> LossConfig:
        """The inverse of :meth:`to_dict`: keywords that are not fields are the metric's parameters."""
        options = dict(config)
        arguments = {name: options.pop(name) for name in _FIELDS if name in options}
        return cls.from_arguments({**arguments, "metric_params": options}, fixed_metric=fixed_metric)

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments, metric parameters flattened in (as they are passed).

        Binary configurations leave out the task fields, and the defaults of ``momentum``
        (``None``) and ``rescue`` are left out, so configurations saved before those
        existed read the same.
        """
        config: dict[str, Any] = {}
        if not self.fixed_metric:
            config["metric"] = self.metric
        config.update(self.metric_params)
        config.update(from_logits=self.from_logits, scale=self.scale, approximation=self.approximation,
                      validate=self.validate)
        if self.task != "binary":
            config.update({name: getattr(self, name) for name in self._TASK_FIELDS})
        if self.momentum is not None:
            config["momentum"] = self.momentum
        if self.rescue != DEFAULT_RESCUE:
            config["rescue"] = self.rescue
        return config

    def to_repr(self) -> str:
        """``key=value, ...`` of :meth:`to_dict`: the body of the adapters' reprs."""
        return ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())

    def soft_counts(self, y_true: Array, y_pred: Array, sample_weight: Array | None = None, *,
                    xp: Namespace | None = None) -> Confusion:
        """:func:`anyloss_core.soft_confusion` with this configuration."""
        return soft_confusion(y_true, y_pred, sample_weight=sample_weight, xp=xp, **self.counts_options)

    def loss_from_counts(self, counts: Confusion, *, xp: Namespace | None = None) -> Array:
        """``1 - metric(counts)`` (averaged per class for multi-class / multi-label)."""
        if self.task != "binary":
            return confusion_loss(counts, self.metric, xp=xp, task=self.task, average=self.average,
                                  **self.metric_params)
        return confusion_loss(counts, self.metric_fn, xp=xp)

    def running_loss_from_counts(self, counts: Confusion, state: Array, *, stop_gradient: Callable[[Array], Array],
                                 xp: Namespace | None = None,
                                 momentum: float | None = None) -> tuple[Array, Array]:
        """``(loss, new_state)`` at running counts; see :mod:`anyloss_core._running`.

        ``momentum`` is this configuration's unless given (the JAX functions take it per call).
        """
        momentum = self.momentum if momentum is None else momentum
        if momentum is None:
            raise ValueError("running counts need momentum= in (0, 1] when the loss is built")
        if self.task != "binary":
            return running_confusion_loss(counts, state, self.metric, momentum=momentum,
                                          stop_gradient=stop_gradient, xp=xp, task=self.task,
                                          average=self.average, **self.metric_params)
        return running_confusion_loss(counts, state, self.metric_fn, momentum=momentum,
                                      stop_gradient=stop_gradient, xp=xp)

    def running_state(self, stacked: Array, state: Array, *, xp: Namespace | None = None) -> tuple[Array, Array]:
        """``(new_state, batch_total)`` with this configuration's momentum, no gradient: for an adapter that
        evaluates the metric at ``new_state * batch_total`` itself; see :func:`anyloss_core._running.running_state`."""
        if self.momentum is None:
            raise ValueError("running counts need momentum= in (0, 1] when the loss is built")
        return running_state(stacked, state, momentum=self.momentum, xp=xp)

    def rescue_gradient(self, y_true: Array, y_pred: Array, sample_weight: Array | None = None, *,
                        xp: Namespace | None = None) -> Array:
        """The rescue term to add to a binary loss (0 in value; see :mod:`anyloss_core._rescue`)."""
        if self.task != "binary":
            return 0.0
        return rescue_for(y_true, y_pred, sample_weight, rescue=self.rescue, from_logits=self.from_logits,
                          scale=self.scale, approximation=self.approximation, xp=xp)


#: The loss's keywords: every field but ``fixed_metric`` (a property of the named classes, not an argument).
_FIELDS = tuple(f.name for f in dataclasses.fields(LossConfig) if f.name != "fixed_metric")


class LossConfigAttributes:
    """Read-only attributes of an adapter's loss class, read from its ``self.config``.

    ``loss_fn.metric``, ``loss_fn.scale``, ``loss_fn.metric_params`` (a copy) ... for every
    field of :class:`LossConfig`; ``fixed_metric`` is the named classes' metric (``"f1"``
    for ``F1Loss``).
    """

    #: Set by the named classes (``F1Loss``...): their metric is fixed.
    fixed_metric: ClassVar[str | None] = None
    config: LossConfig

    def _config_from(self, arguments: Mapping[str, Any]) -> LossConfig:
        """:meth:`LossConfig.from_arguments` of a constructor's ``locals()``, with the class's fixed metric."""
        return LossConfig.from_arguments(arguments, fixed_metric=type(self).fixed_metric)


def _attribute(name: str) -> property:
    if name == "metric_params":
        return property(lambda self: dict(self.config.metric_params), doc="The metric's parameters (a copy).")
    return property(lambda self: getattr(self.config, name), doc=f"``config.{name}`` (read-only).")


for _name in _FIELDS:
    setattr(LossConfigAttributes, _name, _attribute(_name))
