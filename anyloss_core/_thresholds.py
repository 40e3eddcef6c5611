"""The decision threshold that maximises a metric, exactly, over every cut point.

A hard classifier ``y_score > t`` can only realise ``m + 1`` different confusion
matrices on ``m`` distinct scores: one per gap between adjacent distinct scores,
plus "all negative" and "all positive".  Sorting the scores once and taking
cumulative weighted counts gives all of them in O(n log n), and every metric of
the registry is elementwise, so it scores all cuts in one vectorised call.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ._inputs import _default_float, _flatten_weight, _has_nan, _shape
from ._metrics import Confusion, Metric, check_metric_value, get_metric
from ._namespace import device_of, get_namespace
from ._types import Array, Namespace

__all__ = ["Threshold", "best_threshold"]


class Threshold(NamedTuple):
    """The result of :func:`best_threshold`: a threshold and the metric it attains, as Python floats."""

    threshold: float
    score: float


def _drop_trailing_one(shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
    return shape[:-1] if len(shape) >= 2 and shape[-1] == 1 else shape


def _check(y_true: Array, y_score: Array, sample_weight: Array | None, xp: Namespace) -> tuple[Any, Any, Any, Any]:
    """Flat, checked ``(y, s, w)``: labels and weights in the count dtype, scores in their own float dtype."""
    y_true = y_true if hasattr(y_true, "shape") else xp.asarray(y_true)
    y_score = y_score if hasattr(y_score, "shape") else xp.asarray(y_score)
    if not xp.isdtype(y_true.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"y_true must hold 0/1 labels as bool, integer or float, got dtype {y_true.dtype}")
    if not xp.isdtype(y_score.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"y_score must hold real scores (probabilities or logits), got dtype {y_score.dtype}")
    true_shape, score_shape = _shape(y_true), _shape(y_score)
    a, b = _drop_trailing_one(true_shape), _drop_trailing_one(score_shape)
    if len(a) != 1 or len(b) != 1:
        raise ValueError(f"y_true and y_score must have shape (n,) or (n, 1), got {true_shape} and {score_shape}")
    if a != b:
        raise ValueError(
            f"y_true and y_score must have the same number of samples; got y_true {true_shape} "
            f"and y_score {score_shape}"
        )
    if a[0] == 0:
        raise ValueError(f"y_true and y_score are empty (shapes {true_shape} and {score_shape})")
    # Counts in the dtype al.confusion uses, so al.score reproduces the result.
    dtype = _default_float(xp)
    if xp.isdtype(y_score.dtype, "real floating"):
        dtype = xp.result_type(dtype, y_score.dtype)
    s = xp.reshape(y_score, (-1,))
    if not xp.isdtype(s.dtype, "real floating"):
        s = xp.astype(s, dtype)  # integer scores: midpoints need a floating dtype
    y = xp.astype(xp.reshape(y_true, (-1,)), dtype, copy=False)
    if not bool(xp.all((y == 0) | (y == 1))):
        if _has_nan(y, xp):
            raise ValueError("y_true contains NaN")
        raise ValueError("y_true must hold binary labels 0 and 1")
    if _has_nan(s, xp):
        raise ValueError("y_score contains NaN")
    if not bool(xp.all(xp.isfinite(s))):
        raise ValueError("y_score must be finite (it holds inf or -inf)")
    w = None
    if sample_weight is not None:
        sample_weight = sample_weight if hasattr(sample_weight, "shape") else xp.asarray(sample_weight)
        w = xp.astype(_flatten_weight(sample_weight, a, xp), dtype, copy=False)
        if not bool(xp.all(w >= 0)):
            if _has_nan(w, xp):
                raise ValueError("sample_weight contains NaN")
            raise ValueError("sample_weight must be non-negative")
    return y, s, w, dtype


def _below(x: Array, xp: Namespace) -> float:
    """The largest number of ``x``'s dtype below the 0-d array ``x``."""
    nextafter = getattr(xp, "nextafter", None)
    if nextafter is not None:
        return float(nextafter(x, xp.full_like(x, -float("inf"))))
    value = float(x)  # a namespace without nextafter: step down by one unit of its precision
    eps, tiny = float(xp.finfo(x.dtype).eps), float(xp.finfo(x.dtype).smallest_normal)
    return value - max(abs(value) * eps, tiny)


def _between(a: Array, b: Array) -> float:
    """A threshold ``t`` with ``b <= t < a`` in the dtype of the 0-d arrays ``a > b``: their midpoint.

    Computed in the scores' own dtype, so the threshold is exact in that dtype and
    every wider one; ``a / 2 + b / 2`` where ``a + b`` overflows.  When ``a`` and
    ``b`` are adjacent numbers the midpoint rounds to one of them, and ``b`` is used.
    """
    t, lo, hi = float((a + b) / 2), float(b), float(a)
    if not math.isfinite(t):
        t = float(a / 2 + b / 2)
    return t if lo <= t < hi else lo


def best_threshold(
    y_true: Array,
    y_score: Array,
    metric: str | Metric = "f1",
    *,
    sample_weight: Array | None = None,
    xp: Namespace | None = None,
    **metric_params: Any,
) -> Threshold:
    r"""The threshold ``t`` maximising ``metric`` of the predictions ``y_score > t``, exactly.

    Every cut point is scored: with the scores sorted in decreasing order
    :math:`s_{(1)} \ge \dots \ge s_{(n)}`, predicting the top :math:`k` positive gives

    .. math:: TP_k = \sum_{i \le k} w_{(i)} y_{(i)}, \quad FP_k = \sum_{i \le k} w_{(i)} (1 - y_{(i)}),
              \quad FN_k = P - TP_k, \quad TN_k = N - FP_k

    where :math:`P` and :math:`N` are the (weighted) numbers of positives and
    negatives.  Only cuts between *distinct* scores count (samples with equal
    scores always fall on the same side), plus :math:`k = 0` (all negative) and
    :math:`k = n` (all positive); the metric is evaluated on all of them at once,
    ``get_metric(metric)(Confusion(tn, fn, fp, tp), xp)`` on arrays, with the core's
    0/0 conventions.  Cost: one sort, O(n log n).

    Decision rule: positive when ``y_score > threshold``, as :func:`confusion` and
    :func:`score` decide.  The threshold returned for a cut between the distinct
    scores :math:`a > b` is their midpoint (computed in the scores' dtype; ``b``
    itself if no number of that dtype lies strictly between), so ``>`` and ``>=``
    agree on the given scores; for "all negative" it is the largest score, for
    "all positive" the largest number below the smallest score.  For probabilities
    inside (0, 1), ``al.score(metric, y_true, y_score, threshold=t)`` reproduces
    ``score`` (exactly for unweighted counts).  ``y_score`` may be probabilities,
    logits or any real scores: the threshold is in the same units.

    Ties: among cuts whose score equals the maximum, the one predicting the fewest
    positives, i.e. the **largest** threshold, is returned.

    Args:
        y_true: labels in {0, 1}, shape ``(n,)`` or ``(n, 1)``.
        y_score: real scores (probabilities, logits, ...), same number of samples; finite.
        metric: a metric name (as :func:`get_metric` accepts, with the ``f<beta>``
            aliases and registered names) or a callable ``fn(confusion, xp)``.
        sample_weight: optional non-negative weight per sample.
        xp: the array namespace; found from the arrays when ``None``.
        **metric_params: keyword parameters of the metric (``beta=`` for "fbeta").

    Returns:
        ``Threshold(threshold, score)`` of Python floats.

    Raises:
        ValueError: empty or mismatched inputs, labels outside {0, 1}, NaN or
            infinite ``y_score``, negative or NaN ``sample_weight``, an unknown metric.
        TypeError: a non-numeric dtype, or a parameter the metric does not take.

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> y = np.array([0, 0, 1, 1, 0, 1])
        >>> p = np.array([0.1, 0.4, 0.35, 0.8, 0.6, 0.7])
        >>> t, f1 = al.best_threshold(y, p, "f1")
        >>> round(t, 4), f1  # midway between 0.6 and 0.7: TP 2, FP 0, FN 1, F1 = 4 / 5
        (0.65, 0.8)
        >>> float(al.score("f1", y, p, threshold=t)) == f1
        True
        >>> t, recall = al.best_threshold(y, p, "recall")  # 0.225 and "all positive" tie
        >>> round(t, 4), recall  # the larger threshold wins
        (0.225, 1.0)
    """
    metric_fn = get_metric(metric, **metric_params)  # resolve first: a bad name fails before any work
    xp = get_namespace(y_true, y_score, sample_weight, xp=xp)
    y, s, w, dtype = _check(y_true, y_score, sample_weight, xp)
    n = s.shape[0]

    order = xp.argsort(s, descending=True, stable=True)
    s = xp.take(s, order)
    pos = xp.take(y if w is None else w * y, order)
    neg = xp.take(1.0 - y if w is None else w * (1.0 - y), order)
    device = device_of(s, xp)
    zero = xp.zeros((1,), dtype=dtype, device=device)
    # Counts after the top k samples, k = 0..n (k = 0: all predicted negative).
    tp = xp.concat([zero, xp.cumulative_sum(pos)])
    fp = xp.concat([zero, xp.cumulative_sum(neg)])
    counts = Confusion(tn=fp[-1] - fp, fn=tp[-1] - tp, fp=fp, tp=tp)

    values = metric_fn(counts, xp)
    check_metric_value(metric, metric_fn, values, xp)  # a user metric's values in [0, 1]
    values = xp.broadcast_to(xp.asarray(values, dtype=dtype, device=device), (n + 1,))  # a metric may return a constant
    # A cut inside a run of equal scores is not realisable by any threshold.
    edge = xp.ones((1,), dtype=xp.bool, device=device)
    valid = xp.concat([edge, s[:-1] != s[1:], edge])
    k = int(xp.argmax(xp.where(valid, values, xp.full_like(values, -float("inf")))))  # first: fewest positives
    if k == 0:
        threshold = float(s[0])
    elif k == n:
        threshold = _below(s[n - 1], xp)
    else:
        threshold = _between(s[k - 1], s[k])
    return Threshold(threshold, float(values[k]))
