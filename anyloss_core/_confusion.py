"""Confusion counts: soft (for the loss) and hard (for evaluation), with input checks.

Checks of *arguments* (names, scales, thresholds) run always; checks of *data
values* (labels in {0, 1}, probabilities in [0, 1], non-negative weights) run
only when ``validate=True`` and the values can be read without tracing or a
host-device synchronisation (see :func:`values_available`).  Shape and dtype
checks need no values and always run, also under ``jit``.
"""

from __future__ import annotations

import math
from typing import Any

from ._approximations import Approximation, get_approximation
from ._metrics import Confusion
from ._multiclass import check_task, soft_class_confusion
from ._namespace import (
    all_binary,
    all_in_unit_interval,
    all_non_negative,
    compute_dtype,
    dot,
    get_namespace,
    sigmoid,
    times_one_minus,
    values_available,
)
from ._scale import DEFAULT_SCALE, check_scale
from ._types import Array, Namespace

__all__ = ["soft_confusion", "soft_confusion_with_pullback", "confusion", "check_scale"]


def _drop_trailing_one(shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
    return shape[:-1] if len(shape) >= 2 and shape[-1] == 1 else shape


def _shape(x: Array) -> tuple[int | None, ...]:
    """The shape, ``None`` for a dimension unknown until run time (a symbolic batch axis)."""
    return tuple(None if d is None else int(d) for d in x.shape)


def _same(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> bool:
    """Equal shapes, an unknown dimension matching anything (checked again at run time)."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def _count(shape: tuple[int | None, ...]) -> int | None:
    return None if None in shape else math.prod(shape)  # type: ignore[arg-type]


def _flatten_pair(y_true: Array, y_pred: Array, xp: Namespace) -> tuple[Any, Any, tuple[int | None, ...]]:
    """Bring ``y_true`` and ``y_pred`` to one flat sample axis, never broadcasting.

    ``(n,)`` and ``(n, 1)`` are interchangeable; more generally a trailing axis of
    length 1 is dropped, and then the shapes must be equal (``(batch, h, w)`` and
    ``(batch, h, w, 1)`` for segmentation masks work too).
    """
    true_shape, pred_shape = _shape(y_true), _shape(y_pred)
    a, b = _drop_trailing_one(true_shape), _drop_trailing_one(pred_shape)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(
            f"y_true and y_pred need a sample axis, got shapes {true_shape} and {pred_shape}"
        )
    if not _same(a, b):
        raise ValueError(
            f"y_true and y_pred must have the same number of samples, with shapes (n,) or (n, 1); "
            f"got y_true {true_shape} and y_pred {pred_shape}"
        )
    if _count(a) == 0:
        raise ValueError(f"y_true and y_pred are empty (shapes {true_shape} and {pred_shape})")
    return xp.reshape(y_true, (-1,)), xp.reshape(y_pred, (-1,)), a


def _flatten_weight(sample_weight: Array, sample_shape: tuple[int | None, ...], xp: Namespace) -> Array:
    """Per-sample weights of shape ``sample_shape`` (or its leading axis) as ``(n,)``."""
    w_shape = _drop_trailing_one(_shape(sample_weight))
    if _same(w_shape, sample_shape):
        return xp.reshape(sample_weight, (-1,))
    inner = sample_shape[1:]
    if len(w_shape) == 1 and inner and None not in inner and _same(w_shape, sample_shape[:1]):
        # One weight per example of a (batch, ...) target, spread over its elements.
        per_element = xp.reshape(sample_weight, (-1,) + (1,) * len(inner))
        return xp.reshape(per_element * xp.ones((1, *inner), dtype=sample_weight.dtype), (-1,))
    raise ValueError(
        f"sample_weight must have one weight per sample: shape {sample_shape} or (n, 1), "
        f"got {_shape(sample_weight)}"
    )


def _has_nan(x: Array, xp: Namespace) -> bool:
    """Whether ``x`` holds a NaN: ``x != x`` (no ``isnan`` needed, which the Keras shim lacks)."""
    return bool(xp.any(x != x))


def _check_values(
    y: Array | None, p: Array, w: Array | None, from_logits: bool, xp: Namespace
) -> None:
    # One fused pass per array when the values are fine (see _namespace.all_binary); only a
    # failed check looks again, to report NaN as NaN rather than as a value out of
    # range.  ``y`` is None for boolean labels, which need no check.
    if y is not None and not all_binary(y, xp):
        if _has_nan(y, xp):
            raise ValueError("y_true contains NaN")
        raise ValueError("y_true must hold binary labels 0 and 1 (pass validate=False for soft labels)")
    if not from_logits and not all_in_unit_interval(p, xp):
        if _has_nan(p, xp):
            raise ValueError("y_pred contains NaN")
        raise ValueError(
            "y_pred has values outside [0, 1] but from_logits=False: pass probabilities, "
            "or from_logits=True for logits"
        )
    if w is not None and not all_non_negative(w, xp):
        if _has_nan(w, xp):
            raise ValueError("sample_weight contains NaN")
        raise ValueError("sample_weight must be non-negative")


def _prepare(
    y_true: Array,
    y_pred: Array,
    sample_weight: Array | None,
    *,
    from_logits: bool,
    validate: bool,
    xp: Namespace,
    dtype: Any = None,
) -> tuple[Any, Any, Any, Any]:
    """Checked, flattened ``(y, p, w)`` in the compute dtype, and that dtype."""
    xp = get_namespace(y_true, y_pred, sample_weight, xp=xp)
    if not isinstance(from_logits, bool):
        raise TypeError(f"from_logits must be True or False, got {from_logits!r}")
    y_true = xp.asarray(y_true) if not hasattr(y_true, "shape") else y_true
    y_pred = xp.asarray(y_pred) if not hasattr(y_pred, "shape") else y_pred
    if dtype is None:
        if not xp.isdtype(y_pred.dtype, "real floating"):
            raise TypeError(
                f"y_pred must be a floating array of probabilities or logits, got dtype {y_pred.dtype}"
            )
        dtype = compute_dtype(y_pred.dtype, xp)
    if not xp.isdtype(y_true.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"y_true must hold 0/1 labels as bool, integer or float, got dtype {y_true.dtype}")
    y, p, sample_shape = _flatten_pair(y_true, y_pred, xp)
    labels_bool = xp.isdtype(y.dtype, "bool")  # always 0/1: no value check needed
    w = None
    if sample_weight is not None:
        sample_weight = xp.asarray(sample_weight) if not hasattr(sample_weight, "shape") else sample_weight
        w = _flatten_weight(sample_weight, sample_shape, xp)
    # copy=False: the Array API default copies even an array already of that dtype.
    y, p = xp.astype(y, dtype, copy=False), xp.astype(p, dtype, copy=False)
    if w is not None:
        w = xp.astype(w, dtype, copy=False)
    if validate and (not labels_bool or not from_logits or w is not None) and values_available(p, xp) \
            and values_available(y, xp):
        _check_values(None if labels_bool else y, p, w, from_logits, xp)
    return y, p, w, xp


def _counts(y: Array, yh: Array, yh_c: Array, w: Array | None, xp: Namespace) -> Confusion:
    """The four sums of eq. 6, weights entering as weighted counts."""
    pos = y if w is None else w * y
    neg = 1.0 - y if w is None else w - pos
    return Confusion(
        tn=dot(neg, yh_c, xp),
        fn=dot(pos, yh_c, xp),
        fp=dot(neg, yh, xp),
        tp=dot(pos, yh, xp),
    )


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
    approx = get_approximation(approximation)
    y, p, w, xp = _prepare(
        y_true, y_pred, sample_weight, from_logits=from_logits, validate=validate, xp=xp
    )
    yh, yh_c = approx(p, from_logits=from_logits, scale=scale, xp=xp)
    return _counts(y, yh, yh_c, w, xp)


def soft_confusion_with_pullback(
    y_true: Array,
    y_pred: Array,
    *,
    from_logits: bool = False,
    scale: float = DEFAULT_SCALE,
    approximation: str | Approximation = "anyloss",
    sample_weight: Array | None = None,
    validate: bool = True,
    xp: Namespace | None = None,
) -> tuple[Confusion, Any] | None:
    r"""The soft counts and their pullback, for an analytic backward pass.

    Every count is a weighted sum of :math:`\hat y_i` or :math:`1 - \hat y_i`, so for
    a loss of the counts (eq. 8, 9 of the paper)

    .. math:: \frac{\partial \mathcal L}{\partial x_i} = w_i \big(y_i (g_{TP} - g_{FN})
              + (1 - y_i)(g_{FP} - g_{TN})\big) \frac{d \hat y_i}{d x_i}

    with :math:`g_{TP} = \partial \mathcal L / \partial TP` etc.  Returns
    ``(counts, pullback)`` where ``pullback(g: Confusion)`` gives that gradient
    with respect to the flattened ``y_pred`` (in the compute dtype), or ``None``
    when the approximation has no ``derivative`` (then use autodiff).  Arguments as
    :func:`soft_confusion`.
    """
    scale = check_scale(scale)
    approx = get_approximation(approximation)
    derivative = getattr(approx, "derivative", None)
    if derivative is None:
        return None
    y, p, w, xp = _prepare(y_true, y_pred, sample_weight, from_logits=from_logits, validate=validate, xp=xp)
    # The probability sigma(z) is computed once and kept for the backward pass
    # (a sigmoid costs about three multiplications on a CPU).
    prob = sigmoid(p, xp) if from_logits and getattr(approx, "sigmoid_first", False) else None
    if prob is not None:
        yh, yh_c = approx(prob, from_logits=False, scale=scale, xp=xp)
    else:
        yh, yh_c = approx(p, from_logits=from_logits, scale=scale, xp=xp)
    counts = _counts(y, yh, yh_c, w, xp)

    def pullback(g: Confusion) -> Array:
        on_pos, on_neg = g.tp - g.fn, g.fp - g.tn
        grad = y * (on_pos - on_neg)  # y * on_pos + (1 - y) * on_neg, updated in place
        grad += on_neg
        if w is not None:
            grad *= w
        if prob is None:
            grad *= derivative(p, yh, yh_c, from_logits=from_logits, scale=scale, xp=xp)
            return grad
        scale_gradient = getattr(approx, "scale_gradient", None)
        if scale_gradient is not None:  # in place: no n-element temporary
            grad = scale_gradient(grad, yh, yh_c, scale=scale, xp=xp)
        else:
            grad *= derivative(prob, yh, yh_c, from_logits=False, scale=scale, xp=xp)
        grad *= prob  # dsigma/dz = sigma (1 - sigma)
        return times_one_minus(grad, prob, xp)

    return counts, pullback


def _default_float(xp: Namespace) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes()["real floating"]
        except Exception:  # a namespace with a partial info object
            pass
    return xp.float32


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
