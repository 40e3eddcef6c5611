"""The public losses: 1 - metric(soft confusion), with the metric given or fixed (``f1_loss``, ...).

``score``, the hard metric for evaluation, is in :mod:`anyloss_core._score` (imported here too).
"""

from __future__ import annotations

import inspect
from typing import Any

from ._approximations import Approximation
from ._confusion import soft_confusion
from ._metrics import Confusion, Metric, check_metric_value, get_metric
from ._multiclass import average_metric, check_task
from ._namespace import get_namespace
from ._rescue import DEFAULT_RESCUE, check_rescue, rescue_for
from ._scale import DEFAULT_SCALE
from ._types import Array, Namespace

__all__ = [
    "with_metric",
    "anyloss",
    "confusion_loss",
    "accuracy_loss",
    "f1_loss",
    "fbeta_loss",
    "gmean_loss",
    "balanced_accuracy_loss",
    "score",
]


def confusion_loss(counts: Confusion, metric: str | Metric = "f1", *, xp: Namespace | None = None,
                   task: str = "binary", average: str = "macro", **metric_params: Any) -> Array:
    """``1 - metric(counts)``: the loss from (soft) confusion counts.

    The second half of :func:`anyloss`, for callers that combine counts first: the
    adapters sum the counts over data-parallel workers before this step, which
    makes the loss that of the global batch.

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> counts = al.Confusion(*np.array([5.0, 1.0, 2.0, 3.0]))  # tn, fn, fp, tp
        >>> float(al.confusion_loss(counts, "f1"))  # 1 - 6 / 9
        0.33333333333333337
    """
    if task != "binary":  # per-class counts, (C,) arrays
        return 1.0 - average_metric(counts, metric, task=task, average=average, xp=xp, **metric_params)
    metric_fn = get_metric(metric, **metric_params)
    xp = get_namespace(counts.tp, xp=xp)
    value = metric_fn(counts, xp)
    check_metric_value(metric, metric_fn, value, xp)  # a user metric's concrete value in [0, 1]
    return 1.0 - value


def anyloss(
    y_true: Array,
    y_pred: Array,
    metric: str | Metric = "f1",
    *,
    from_logits: bool = False,
    scale: float = DEFAULT_SCALE,
    approximation: str | Approximation = "anyloss",
    sample_weight: Array | None = None,
    validate: bool = True,
    xp: Namespace | None = None,
    task: str = "binary",
    average: str = "macro",
    num_classes: int | None = None,
    ignore_index: int | None = None,
    rescue: float = DEFAULT_RESCUE,
    **metric_params: Any,
) -> Array:
    r"""AnyLoss (eq. 5 of the paper): one minus a metric of the soft confusion matrix.

    .. math:: \mathcal{L} = 1 - f(TN, FN, FP, TP)

    where the counts are :func:`soft_confusion` of the approximated predictions
    :math:`\hat y_i = A(p_i) = \sigma(L (p_i - 1/2))` and :math:`f` is the metric:
    a registered name ("f1", "fbeta", "gmean", "balanced_accuracy", "mcc", ...), an
    F-beta alias ``f<beta>`` ("f2" is "fbeta" with ``beta=2.0``, "f0.5" with 0.5), or
    a callable ``f(confusion, xp)``.  Parameters of the metric pass by keyword
    (``beta=2.0`` for "fbeta", which needs it; "f2" takes no ``beta``).

    The loss is a mean-free batch statistic: it is not an average of per-sample
    terms, and ``sample_weight`` weights the counts (weighted TP, FP, ...) instead
    of multiplying the result.  Its value lies in [0, 1] for the built-in metrics
    and is finite for every finite input, including batches with no positives
    (see the 0/0 conventions in :mod:`anyloss_core._metrics`).  A user's metric
    must return values in [0, 1] too; when the value is concrete (eager, on a CPU)
    that is checked.

    With ``validate=True`` and concrete arrays, NaN in ``y_true``, in probabilities
    or in ``sample_weight`` raises ``ValueError`` ("y_pred contains NaN").  NaN
    *logits* (``from_logits=True``) are not looked for, as in the frameworks' own
    losses: they give a NaN loss, as they would with binary cross-entropy.

    Args:
        y_true: labels in {0, 1}, shape ``(n,)`` or ``(n, 1)``.
        y_pred: probabilities (default) or logits (``from_logits=True``), same length.
        metric: metric name or callable.
        from_logits: whether ``y_pred`` holds logits.
        scale: the paper's amplifying scale ``L`` (73 by default; see :func:`scale_range`);
            finite and > 0 for every task, also where the approximation ignores it.
        approximation: "anyloss" (the paper's A), "identity" (plain soft counts) or
            "sol-cosine" (Score-Oriented Loss), or an approximation object.
        sample_weight: optional non-negative per-sample weights.
        validate: check label and probability values when they are concrete.
        xp: array namespace (found from the arrays by default).
        task: "binary" (default), "multiclass" (``y_pred`` of shape ``(n, C)``, softmax) or
            "multilabel" (``(n, C)``, a sigmoid per label); see :mod:`anyloss_core._multiclass`.
        average: for multi-class and multi-label: "macro" (default), "micro", "weighted" or
            "none" (one loss per class).
        num_classes: checked against ``y_pred``'s second axis when given.
        ignore_index: a class id whose rows do not count (multi-class ids only).
        rescue: weight of the rescue gradient (binary task): samples on the wrong side
            of the threshold also get ``rescue`` times the gradient of binary
            cross-entropy, the loss's value unchanged, so confidently wrong samples,
            whose AnyLoss gradient vanishes, are still corrected (see
            :mod:`anyloss_core._rescue`).  0 is the paper's gradient exactly.
        **metric_params: keyword parameters of the metric.

    Returns:
        A 0-d array, in the inputs' floating dtype promoted to at least float32
        (``(C,)`` for ``average="none"``).

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> y, p = np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.3, 0.4])
        >>> round(float(al.anyloss(y, p, "f1")), 2)  # one of two positives found: F1 = 2/3
        0.33
        >>> round(float(al.anyloss(y, p, "fbeta", beta=2.0)), 2)  # F2 = 5 / (5 + 4) = 0.56
        0.44
        >>> round(float(al.anyloss(y, p, "f2")), 2)  # the same
        0.44
    """
    metric_fn = get_metric(metric, **metric_params)  # resolve first: a bad name fails before any work
    check_task(task, average)
    rescue = check_rescue(rescue)
    counts = soft_confusion(
        y_true,
        y_pred,
        from_logits=from_logits,
        scale=scale,
        approximation=approximation,
        sample_weight=sample_weight,
        validate=validate,
        xp=xp,
        task=task,
        num_classes=num_classes,
        ignore_index=ignore_index,
    )
    if task != "binary":  # the per-class metrics take the metric's name (accuracy, B-Acc are special there)
        return confusion_loss(counts, metric, xp=xp, task=task, average=average, **metric_params)
    xp = get_namespace(counts.tp, xp=xp)
    value = metric_fn(counts, xp)
    check_metric_value(metric, metric_fn, value, xp)  # named as given (confusion_loss sees the function)
    return 1.0 - value + rescue_for(y_true, y_pred, sample_weight, rescue=rescue, from_logits=from_logits,
                                    scale=scale, approximation=approximation, xp=xp)


def with_metric(loss_fn: Any, metric: str, *, doc: str | None = None, **defaults: Any) -> Any:
    """``loss_fn`` with its ``metric`` fixed: the named losses of the core and the adapters.

    ``with_metric(anyloss, "fbeta", beta=1.0)`` is ``fbeta_loss``: it calls
    ``loss_fn(*args, metric="fbeta", beta=1.0, **kwargs)``, a keyword overriding a
    default.  The wrapper's signature is ``loss_fn``'s without ``metric`` and with
    the defaults as keyword-only parameters, so ``help()`` and IDEs show the real
    arguments.

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> f2_loss = al.with_metric(al.anyloss, "fbeta", beta=2.0)
        >>> y, p = np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.3, 0.4])
        >>> float(f2_loss(y, p)) == float(al.anyloss(y, p, "fbeta", beta=2.0))
        True
    """

    def loss(*args: Any, **kwargs: Any) -> Any:
        return loss_fn(*args, metric=metric, **{**defaults, **kwargs})

    signature = inspect.signature(loss_fn)
    params = [p for p in signature.parameters.values() if p.name != "metric" and p.kind != p.VAR_KEYWORD]
    keyword_only = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in defaults.items()]
    position = next((i for i, p in enumerate(params) if p.kind == p.KEYWORD_ONLY), len(params))
    loss.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params[:position] + keyword_only + params[position:]
    )
    loss.__name__ = loss.__qualname__ = f"{metric}_loss"
    loss.__module__ = getattr(loss_fn, "__module__", __name__)
    loss.__doc__ = doc or f"``{loss_fn.__name__}(..., metric={metric!r})``: see :func:`{loss_fn.__name__}`."
    return loss


def _named_loss(metric: str, formula: str, y: str, p: str, value: str) -> Any:
    """``with_metric(anyloss, metric)`` with a docstring: the formula, and an example with its value."""
    return with_metric(anyloss, metric, doc=rf"""{formula} of the soft counts; see :func:`anyloss`.

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> round(float(al.{metric}_loss(np.array({y}), np.array({p}))), 4)
        {value}
    """)


accuracy_loss = _named_loss("accuracy", r"Accuracy loss :math:`1 - (TP + TN) / n`", "[0, 1, 1]", "[0.2, 0.7, 0.4]",
                            "0.3331")
f1_loss = _named_loss("f1", r"F1 loss :math:`1 - 2 TP / (2 TP + FP + FN)`", "[0, 1, 1]", "[0.2, 0.7, 0.9]", "0.0")
gmean_loss = _named_loss("gmean", r"G-mean loss :math:`1 - \sqrt{TPR \cdot TNR}`", "[0, 0, 1, 1]",
                         "[0.2, 0.7, 0.9, 0.8]", "0.2929")
balanced_accuracy_loss = _named_loss("balanced_accuracy", r"Balanced-accuracy loss :math:`1 - (TPR + TNR) / 2`",
                                     "[0, 0, 1, 1]", "[0.2, 0.7, 0.9, 0.8]", "0.25")

fbeta_loss = with_metric(
    anyloss,
    "fbeta",
    beta=1.0,
    doc=r"""F-beta loss :math:`1 - (1+\beta^2) TP / ((1+\beta^2) TP + FP + \beta^2 FN)`; see :func:`anyloss`.

    ``beta`` is 1.0 (F1) unless given; ``anyloss(metric="fbeta")`` needs it, or an
    alias: ``anyloss(y, p, "f2")``.

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> y, p = np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.3, 0.4])
        >>> round(float(al.fbeta_loss(y, p, beta=0.5)), 2)  # F0.5 = 1.25 / (1.25 + 0.25) = 0.83
        0.17
    """,
)


from ._score import score  # noqa: E402  (its old import path)
