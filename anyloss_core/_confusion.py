"""Confusion counts: soft (for the loss, with an analytic pullback) and hard (for evaluation).

Both are the four weighted sums of eq. 6 of the paper, of near-labels (soft) or of
thresholded decisions (hard); the inputs are flattened, cast and checked first by
:mod:`anyloss_core._inputs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._approximations import Approximation, get_approximation
from ._fast_paths import fast_paths, row_count
from ._inputs import _default_float, _prepare
from ._metrics import Confusion
from ._multiclass import check_task, soft_class_confusion
from ._namespace import get_namespace, sigmoid
from ._rescue import _slope_and_factor, _unweighted_scale, check_rescue
from ._scale import DEFAULT_SCALE, check_scale
from ._types import Array, Namespace

__all__ = ["Pullback", "soft_confusion", "soft_confusion_with_pullback", "confusion", "check_scale"]

#: ``pullback(g)``: the gradient with respect to the flattened ``y_pred`` of a loss whose
#: gradient with respect to the four counts is ``g`` (a :class:`Confusion`).
Pullback = Callable[[Confusion], Array]


def _counts(y: Array, yh: Array, yh_c: Array | None, w: Array | None, xp: Namespace, *,
            as_floats: bool = False) -> Confusion:
    """The four sums of eq. 6, weights entering as weighted counts; with ``as_floats``, as Python floats (the
    sums read together, :meth:`FastPaths.floats`, the differences taken in float64: no 0-d array arithmetic,
    each op of which costs an eager framework a dispatch)."""
    fast = fast_paths(xp)
    if fast.counts_from_label_sums:
        # TP = w y . yh and FP = w (1 - y) . yh; FN and TN by differences from the label sums: no 1 - yh array
        # (yh_c is not read, and may be None: _decisions), at most two products instead of four.
        pos = y if w is None else w * y
        tp, positives = fast.dot(pos, yh, xp), xp.sum(pos)
        total = row_count(y, xp) if w is None else xp.sum(w)  # exact; summed only for a batch axis unknown yet
        if fast.false_positives_by_difference:  # FP = sum(w yh) - TP: a plain sum instead of a second product
            fp = xp.sum(yh if w is None else w * yh) - tp
        else:  # each sample's derivative of FP and TN exactly 0 for a positive, and FP exactly 0 without negatives
            fp = fast.dot_of_one_minus(y, yh, xp) if w is None else fast.dot(w - pos, yh, xp)
        if as_floats:
            tp, positives, fp, total = fast.floats((tp, positives, fp, total), xp)
        return Confusion(tn=(total - positives) - fp, fn=positives - tp, fp=fp, tp=tp)
    dot = fast.dot
    pos = y if w is None else w * y
    neg = 1.0 - y if w is None else w - pos
    counts = Confusion(tn=dot(neg, yh_c, xp), fn=dot(pos, yh_c, xp), fp=dot(neg, yh, xp), tp=dot(pos, yh, xp))
    return Confusion(*fast.floats(counts, xp)) if as_floats else counts


def _decisions(approx: Approximation, p: Array, *, complement: bool, from_logits: bool, scale: float,
               xp: Namespace) -> tuple[Array, Array | None]:
    """``(yh, 1 - yh)`` of the approximation; ``(yh, None)`` when the ``complement`` is not needed and the
    approximation can leave it out (``decision``): counts from the label sums read ``yh`` only,
    and an n-element ``1 - yh`` is a fresh allocation (eagerly, page faults: a third of a sigmoid pass)."""
    decision = getattr(approx, "decision", None)
    if complement or decision is None:
        return approx(p, from_logits=from_logits, scale=scale, xp=xp)
    return decision(p, from_logits=from_logits, scale=scale, xp=xp), None


def soft_confusion(
    y_true: Array,
    y_pred: Array,
    *,
    from_logits: bool = False,
    scale: float = DEFAULT_SCALE,
    approximation: str | Approximation = "anyloss",
    sample_weight: Array | None = None,
    validate: bool = True,
    xp: Namespace | None = None,
    task: str = "binary",
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> Confusion:
    r"""Soft confusion counts (eq. 6 of the paper), differentiable in ``y_pred``.

    .. math::
        TN = \sum_i w_i (1 - y_i)(1 - \hat y_i), \quad FN = \sum_i w_i y_i (1 - \hat y_i), \\
        FP = \sum_i w_i (1 - y_i) \hat y_i, \quad TP = \sum_i w_i y_i \hat y_i

    where :math:`\hat y_i = A(p_i)` is the approximation of the predicted
    probability (by default the paper's :math:`A(p) = \sigma(L (p - 1/2))` with
    ``L = scale``) and :math:`w_i` the sample weights (1 by default).  The four
    counts sum to ``n`` (or to the total weight).  Counts are accumulated in at
    least float32.

    Args:
        y_true: labels in {0, 1}, shape ``(n,)`` or ``(n, 1)``.
        y_pred: probabilities, or logits with ``from_logits=True``; same number of samples.
        from_logits: whether ``y_pred`` holds logits.
        scale: the amplifying scale ``L`` of the "anyloss" approximation.
        approximation: "anyloss", "identity", "sol-cosine", or an approximation object.
        sample_weight: optional non-negative weight per sample.
        validate: check label and probability values when they are concrete.
        xp: the array namespace; found from the arrays when ``None``.

    Returns:
        ``Confusion(tn, fn, fp, tp)`` of 0-d arrays.

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> c = al.soft_confusion(np.array([0, 1, 1]), np.array([0.2, 0.7, 0.9]))
        >>> [round(float(v), 4) for v in c]
        [1.0, 0.0, 0.0, 2.0]
    """
    scale = check_scale(scale)  # on every path, also where the approximation ignores it
    if task != "binary":  # per-class counts, see anyloss_core._multiclass
        check_task(task)
        return soft_class_confusion(
            y_true, y_pred, task=task, num_classes=num_classes, ignore_index=ignore_index, from_logits=from_logits,
            scale=scale, approximation=approximation, sample_weight=sample_weight, validate=validate, xp=xp,
        )
    counts = _binary_counts(y_true, y_pred, from_logits=from_logits, scale=scale, approximation=approximation,
                            sample_weight=sample_weight, validate=validate, xp=xp, pullback=False)
    return counts  # type: ignore[no-any-return]


def soft_confusion_with_pullback(y_true: Array, y_pred: Array, *, rescue: float = 0.0, counts_as_floats: bool = False,
                                 **options: Any) -> tuple[Confusion, Pullback] | None:
    r"""The soft counts and their pullback, for an analytic backward pass.

    Every count is a weighted sum of :math:`\hat y_i` or :math:`1 - \hat y_i`, so for
    a loss of the counts (eq. 8, 9 of the paper)

    .. math:: \frac{\partial \mathcal L}{\partial x_i} = w_i \big(y_i (g_{TP} - g_{FN})
              + (1 - y_i)(g_{FP} - g_{TN})\big) \frac{d \hat y_i}{d x_i}

    with :math:`g_{TP} = \partial \mathcal L / \partial TP` etc.  Returns
    ``(counts, pullback)`` where ``pullback(g: Confusion)`` gives that gradient
    with respect to the flattened ``y_pred`` (in the compute dtype), or ``None``
    when the approximation has no ``derivative`` (then use autodiff).  Keyword
    arguments: those of :func:`soft_confusion` for the binary task, and ``rescue``:
    when not 0, ``pullback(g, rescue_scale=s)`` also adds ``s`` times the rescue
    gradient of these arrays (:func:`anyloss_core.adapters.rescue_slope` with weight
    ``rescue``; ``s`` is 1 by default, a float or a 0-d array), computed from the counts' own
    :math:`\sigma(z)`: a loss of value ``1 - metric + rescue term`` gets its whole
    gradient from one pullback.  ``counts_as_floats=True`` gives the counts as Python
    floats (the sums read together, the differences taken in float64), for a caller that
    evaluates the metric on the host (eager torch: on a CPU the read is free, on a GPU one
    wait): no 0-d array arithmetic, each operation of which an eager framework dispatches.

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> counts, pullback = al.soft_confusion_with_pullback(np.array([0, 1]), np.array([0.2, 0.52]))
        >>> g = al.Confusion(tn=0.0, fn=0.0, fp=0.0, tp=1.0)  # the gradient of TP: y dA/dp
        >>> np.round(pullback(g), 4).tolist()  # dA/dp = 73 A (1 - A), A = sigmoid(73 (0.52 - 0.5))
        [0.0, 11.1652]
    """
    if rescue != 0.0:
        rescue = check_rescue(rescue)
    return _binary_counts(y_true, y_pred, pullback=True, rescue=rescue,  # type: ignore[no-any-return]
                          counts_as_floats=counts_as_floats, **options)


def _binary_counts(y_true: Array, y_pred: Array, *, from_logits: bool = False, scale: float = DEFAULT_SCALE,
                   approximation: str | Approximation = "anyloss", sample_weight: Array | None = None,
                   validate: bool = True, xp: Namespace | None = None, pullback: bool = False,
                   rescue: float = 0.0, counts_as_floats: bool = False) -> Any:
    """The binary soft counts; with ``pullback``, ``(counts, pullback)`` or ``None`` (no ``derivative``);
    ``rescue`` adds the rescue slope to the pullback (see :func:`soft_confusion_with_pullback`)."""
    scale = check_scale(scale)
    approx = get_approximation(approximation)
    if not pullback:
        y, p, w, xp = _prepare(y_true, y_pred, sample_weight, from_logits=from_logits, validate=validate, xp=xp)
        sums = fast_paths(xp).counts_from_label_sums  # then the counts read yh only
        return _counts(y, *_decisions(approx, p, complement=not sums, from_logits=from_logits, scale=scale, xp=xp),
                       w, xp)
    derivative = getattr(approx, "derivative", None)
    if derivative is None:
        return None
    y, p, w, xp = _prepare(y_true, y_pred, sample_weight, from_logits=from_logits, validate=validate, xp=xp)
    # The probability sigma(z) is computed once and kept for the backward pass
    # (a sigmoid costs about three multiplications on a CPU).
    prob = sigmoid(p, xp) if from_logits and getattr(approx, "sigmoid_first", False) else None
    scale_gradient = getattr(approx, "scale_gradient", None) if prob is not None else None
    factor_of = getattr(approx, "gradient_factor", None) \
        if scale_gradient is not None and _takes_factor(type(approx)) else None
    slope_factor: float | None = None if factor_of is None else factor_of(scale)
    # 1 - yh is needed by the four dot products of the counts, or by the derivative (scale_gradient reads yh only).
    complement = not fast_paths(xp).counts_from_label_sums or scale_gradient is None
    if prob is not None:
        yh, yh_c = _decisions(approx, prob, complement=complement, from_logits=False, scale=scale, xp=xp)
    else:
        yh, yh_c = _decisions(approx, p, complement=complement, from_logits=from_logits, scale=scale, xp=xp)
    counts = _counts(y, yh, yh_c, w, xp, as_floats=counts_as_floats)
    if scale_gradient is not None:
        yh_c = None  # scale_gradient reads yh only: one n-element array less kept for the backward pass

    def pull(g: Confusion, rescue_scale: Array | float = 1.0) -> Array:
        fast = fast_paths(xp)  # every step's input is a temporary of this function: it may be reused
        on_pos, on_neg = g.tp - g.fn, g.fp - g.tn
        # With Python floats (the one-node path), the amplifier's constant factor L is folded into them for free,
        # instead of a pass over the gradient.
        fold = False
        if slope_factor is not None and type(on_pos) is float and type(on_neg) is float:
            on_pos, on_neg, fold = on_pos * slope_factor, on_neg * slope_factor, True
        grad = fast.scaled_plus(y, on_pos - on_neg, on_neg, xp)  # y * on_pos + (1 - y) * on_neg
        if w is not None:
            grad = fast.multiply_temporary(grad, w, xp)
        if prob is None:
            grad = fast.multiply_temporary(
                grad, derivative(p, yh, yh_c, from_logits=from_logits, scale=scale, xp=xp), xp
            )
        else:
            if scale_gradient is not None:  # grad times the derivative without an n-element temporary
                if fold:
                    grad = scale_gradient(grad, yh, yh_c, scale=scale, xp=xp, factor=False)
                else:  # the signature an approximation of the user's may have, without factor=
                    grad = scale_gradient(grad, yh, yh_c, scale=scale, xp=xp)
            else:
                grad = fast.multiply_temporary(
                    grad, derivative(prob, yh, yh_c, from_logits=False, scale=scale, xp=xp), xp
                )
            grad = fast.times_sigmoid_slope(grad, prob, xp)  # dsigma/dz = sigma (1 - sigma)
        if not rescue:
            return grad
        # The rescue gradient from the sigmoid computed above: no second sigmoid, no second flattening; its
        # scale is applied by the addition.
        if prob is not None and w is None:  # the slope rescue / n * shrink(sigma(z) - y, 1/2), added in one pass
            factor = _unweighted_scale(rescue, y)
            if factor is None:  # n unknown until run time (a traced batch axis): a 0-d count, no array of ones
                count = fast.sample_count(y, xp)
                factor = rescue / xp.where(count > 0, count, xp.ones_like(count))
            return fast.add_scaled_shrunk_difference(grad, prob, y, 0.5, rescue_scale * factor, xp)
        slope, factor = _slope_and_factor(y, p, w, rescue=rescue, from_logits=from_logits, xp=xp, prob=prob)
        return fast.add_scaled_temporary(grad, slope, rescue_scale * factor, xp)

    return counts, pull


def _takes_factor(cls: type) -> bool:
    """Whether an approximation class's ``scale_gradient`` takes ``factor=`` for its ``gradient_factor``: the
    nearest class defining either defines both (a subclass of ``AnyLossApproximation`` that overrides
    ``scale_gradient`` alone has the signature without ``factor``)."""
    for klass in cls.__mro__:
        scales, factors = "scale_gradient" in vars(klass), "gradient_factor" in vars(klass)
        if scales or factors:
            return scales and factors
    return False


def confusion(
    y_true: Array,
    y_pred: Array,
    *,
    threshold: float = 0.5,
    from_logits: bool = False,
    sample_weight: Array | None = None,
    validate: bool = True,
    xp: Namespace | None = None,
) -> Confusion:
    """Hard confusion counts of thresholded predictions, for evaluation.

    A sample is predicted positive when its probability is above ``threshold``
    (``sigmoid(logit) > threshold`` with ``from_logits=True``); 0/1 labels of an
    integer or bool dtype may be passed as ``y_pred`` directly.  Counts are in the
    namespace's default floating dtype or wider (float64 for NumPy), so metrics
    computed from them equal scikit-learn's.

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> [int(v) for v in al.confusion(np.array([0, 1, 1, 0]), np.array([0.2, 0.7, 0.4, 0.6]))]
        [1, 1, 1, 1]
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}")
    xp = get_namespace(y_true, y_pred, sample_weight, xp=xp)
    pred_dtype = y_pred.dtype if hasattr(y_pred, "dtype") else xp.asarray(y_pred).dtype
    dtype = _default_float(xp)
    if xp.isdtype(pred_dtype, "real floating"):
        dtype = xp.result_type(dtype, pred_dtype)
    elif not xp.isdtype(pred_dtype, ("bool", "integral")):
        raise TypeError(f"y_pred must hold probabilities, logits or 0/1 labels, got dtype {pred_dtype}")
    elif from_logits:
        raise TypeError(f"from_logits=True needs floating logits, got y_pred of dtype {pred_dtype}")
    y, p, w, xp = _prepare(
        y_true, y_pred, sample_weight, from_logits=from_logits, validate=validate, xp=xp, dtype=dtype
    )
    prob = sigmoid(p, xp) if from_logits else p
    decided = xp.astype(prob > threshold, dtype)
    return _counts(y, decided, 1.0 - decided, w, xp)
