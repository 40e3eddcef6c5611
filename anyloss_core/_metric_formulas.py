"""The metric formulas: functions of the four counts, written once for soft and hard counts alike.

A metric is a function ``(c: Confusion, xp) -> score`` with the score in
[0, 1], higher is better.  The same function scores hard (thresholded) counts for
evaluation and soft counts inside a loss, so the loss optimises exactly the
formula it is evaluated with.

Zero denominators ("0/0 conventions"), chosen to match scikit-learn's defaults
(``zero_division=0``) and to keep every value and gradient finite:

* precision, recall, specificity, F-beta, Jaccard: a ratio whose denominator
  is zero is 0 (its numerator is then zero too).
* balanced accuracy and G-mean average the per-class recalls of the classes
  *present* in ``y_true``, as ``sklearn.metrics.balanced_accuracy_score`` does:
  on a batch with no positives they equal the specificity, on a batch with no
  negatives the recall.
* MCC is 0 (rescaled: 0.5) when any marginal is zero, as
  ``sklearn.metrics.matthews_corrcoef``.
* accuracy of an empty total weight is 0.

Every division goes through :func:`ratio`, which divides by
``max(den, 2**-63)``: for a zero denominator that gives exactly 0 without a
branch on values (so it traces under ``jit``), and the derivative
``num / den**2`` stays below float32's largest number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ._fast_paths import clip
from ._types import Array, Namespace

__all__ = [
    "Confusion",
    "Metric",
    "ratio",
    "accuracy",
    "precision",
    "recall",
    "specificity",
    "fbeta",
    "f1",
    "jaccard",
    "balanced_accuracy",
    "gmean",
    "mcc",
    "youden",
]

# 2**-63: its square 2**-126 is float32's smallest normal number, so both a
# floored denominator and the derivative 1 / den**2 of a ratio stay finite in
# float32 and float64 alike (half precision never reaches here: counts are
# accumulated in float32 or wider).
_FLOOR = 2.0**-63


class Confusion(NamedTuple):
    """The four (soft or hard, possibly weighted) confusion counts, as 0-d arrays."""

    tn: Array
    fn: Array
    fp: Array
    tp: Array


Metric = Callable[..., Any]


def ratio(num: Array, den: Array, xp: Namespace) -> Array:
    """``num / den`` for non-negative counts, 0 where ``den`` is 0; finite derivative, 0 where ``den`` is 0.

    A zero denominator is a class absent from the batch (specificity without negatives): no prediction
    moves its counts, and the floored denominator's slope 1 / 2**-63 would otherwise reach each sample as a
    difference of two such terms where the counts are taken as differences of sums
    (``FastPaths.false_positives_by_difference``), absorbing everything else added to that sample's gradient.
    """
    return xp.where(den > 0, num / clip(den, _FLOOR, None, xp), num * 0.0)


def _sqrt(x: Array, xp: Namespace) -> Array:
    # sqrt'(0) is infinite: floor the argument so 0 * sqrt'(x) cannot be NaN.
    return xp.sqrt(clip(x, _FLOOR * _FLOOR, None, xp))


def _present(count: Array, xp: Namespace) -> Array:
    """1.0 where a class has support (``count > 0``), else 0.0; no gradient."""
    return xp.astype(count > 0, count.dtype)


def accuracy(c: Confusion, xp: Namespace) -> Array:
    r"""Accuracy :math:`(TP + TN) / (TP + TN + FP + FN)`."""
    return ratio(c.tp + c.tn, c.tp + c.tn + c.fp + c.fn, xp)


def precision(c: Confusion, xp: Namespace) -> Array:
    r"""Precision :math:`TP / (TP + FP)`; 0 when nothing is predicted positive."""
    return ratio(c.tp, c.tp + c.fp, xp)


def recall(c: Confusion, xp: Namespace) -> Array:
    r"""Recall (sensitivity, TPR) :math:`TP / (TP + FN)`; 0 when there are no positives."""
    return ratio(c.tp, c.tp + c.fn, xp)


def specificity(c: Confusion, xp: Namespace) -> Array:
    r"""Specificity (TNR) :math:`TN / (TN + FP)`; 0 when there are no negatives."""
    return ratio(c.tn, c.tn + c.fp, xp)


def fbeta(c: Confusion, xp: Namespace, *, beta: float = 1.0) -> Array:
    r"""F-beta :math:`(1 + \beta^2) TP / ((1 + \beta^2) TP + FP + \beta^2 FN)`.

    ``beta > 1`` weighs recall higher, ``beta < 1`` precision.  0 when the batch
    has no positives and none is predicted (scikit-learn's ``zero_division=0``).
    """
    b2 = float(beta) ** 2
    return ratio((1.0 + b2) * c.tp, (1.0 + b2) * c.tp + c.fp + b2 * c.fn, xp)


def f1(c: Confusion, xp: Namespace) -> Array:
    r"""F1 :math:`2 TP / (2 TP + FP + FN)`, the harmonic mean of precision and recall."""
    return fbeta(c, xp, beta=1.0)


def jaccard(c: Confusion, xp: Namespace) -> Array:
    r"""Jaccard index (IoU) :math:`TP / (TP + FP + FN)`."""
    return ratio(c.tp, c.tp + c.fp + c.fn, xp)


def balanced_accuracy(c: Confusion, xp: Namespace) -> Array:
    r"""Balanced accuracy :math:`(TPR + TNR) / 2`, over the classes present in ``y_true``."""
    has_pos, has_neg = _present(c.tp + c.fn, xp), _present(c.tn + c.fp, xp)
    total = has_pos * recall(c, xp) + has_neg * specificity(c, xp)
    return total / clip(has_pos + has_neg, 1.0, None, xp)


def gmean(c: Confusion, xp: Namespace) -> Array:
    r"""Geometric mean :math:`\sqrt{TPR \cdot TNR}`, over the classes present in ``y_true``."""
    has_pos, has_neg = _present(c.tp + c.fn, xp), _present(c.tn + c.fp, xp)
    tpr, tnr = recall(c, xp), specificity(c, xp)
    both = _sqrt(tpr * tnr, xp)
    return xp.where(has_pos * has_neg > 0, both, has_pos * tpr + has_neg * tnr)


def mcc(c: Confusion, xp: Namespace) -> Array:
    r"""Matthews correlation rescaled to [0, 1]: :math:`(MCC + 1) / 2`.

    .. math:: MCC = \frac{TP \cdot TN - FP \cdot FN}
                         {\sqrt{(TP + FP)(TP + FN)(TN + FP)(TN + FN)}}

    MCC is 0 (so the score 0.5) when a marginal is zero.  The counts are first
    divided by their total (MCC is scale-free), so the product of four counts
    cannot overflow float32 on large batches.
    """
    total = clip(c.tp + c.tn + c.fp + c.fn, _FLOOR, None, xp)
    tp, tn, fp, fn = c.tp / total, c.tn / total, c.fp / total, c.fn / total
    marginals = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    # 0 where a marginal is 0, with a zero derivative there (see ratio)
    corr = xp.where(marginals > 0, (tp * tn - fp * fn) / _sqrt(marginals, xp), marginals * 0.0)
    return (clip(corr, -1.0, 1.0, xp) + 1.0) / 2.0


def youden(c: Confusion, xp: Namespace) -> Array:
    r"""Youden's J (TSS, informedness) rescaled to [0, 1]: :math:`(TPR + TNR - 1 + 1) / 2`.

    Rescaled, J is balanced accuracy (with the same present-class convention), and
    equals ``(balanced_accuracy_score(adjusted=True) + 1) / 2``.
    """
    return balanced_accuracy(c, xp)
