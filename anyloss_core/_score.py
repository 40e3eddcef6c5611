"""The hard metric of thresholded predictions, for evaluation: ``score``, equal to scikit-learn's value."""

from __future__ import annotations

from typing import Any

from ._confusion import confusion
from ._metrics import Metric, check_metric_value, get_metric
from ._multiclass import average_metric, check_task, class_confusion
from ._namespace import get_namespace
from ._types import Array, Namespace

__all__ = ["score"]


def score(
    metric: str | Metric,
    y_true: Array,
    y_pred: Array,
    *,
    threshold: float = 0.5,
    from_logits: bool = False,
    sample_weight: Array | None = None,
    validate: bool = True,
    xp: Namespace | None = None,
    task: str = "binary",
    average: str = "macro",
    num_classes: int | None = None,
    ignore_index: int | None = None,
    **metric_params: Any,
) -> Array:
    """The hard metric of thresholded predictions, equal to scikit-learn's value.

    ``score("f1", y, p)`` equals ``sklearn.metrics.f1_score(y, p > 0.5)``; likewise
    accuracy, precision, recall, jaccard, balanced_accuracy and fbeta (``beta=``);
    "mcc" is ``(matthews_corrcoef + 1) / 2``.  ``y_pred`` may be probabilities,
    logits (``from_logits=True``) or 0/1 labels.

    With ``task="multiclass"`` (argmax of ``(n, C)`` scores, or class ids) or
    ``"multilabel"`` (``> threshold`` per label), f1, fbeta, precision, recall and
    jaccard equal scikit-learn's with the same ``average``, ``labels=range(C)`` and
    ``zero_division=0``; accuracy is ``accuracy_score`` and balanced_accuracy
    ``balanced_accuracy_score``.

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> float(al.score("f1", np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.3, 0.4])))
        0.6666666666666666
    """
    metric_fn = get_metric(metric, **metric_params)
    if task != "binary":
        check_task(task, average)
        class_counts = class_confusion(
            y_true, y_pred, task=task, num_classes=num_classes, ignore_index=ignore_index, threshold=threshold,
            from_logits=from_logits, sample_weight=sample_weight, validate=validate, xp=xp,
        )
        return average_metric(class_counts, metric, task=task, average=average, xp=xp, **metric_params)
    counts = confusion(
        y_true,
        y_pred,
        threshold=threshold,
        from_logits=from_logits,
        sample_weight=sample_weight,
        validate=validate,
        xp=xp,
    )
    xp = get_namespace(counts.tp, xp=xp)
    value = metric_fn(counts, xp)
    check_metric_value(metric, metric_fn, value, xp)
    return value
