"""The inputs of the counts: shapes brought to one sample axis, dtypes, and value checks.

Checks of *arguments* (names, scales, thresholds) run always; checks of *data
values* (labels in {0, 1}, probabilities in [0, 1], non-negative weights) run
only when ``validate=True`` and the values can be read without tracing or a
host-device synchronisation (see :func:`values_available`).  Shape and dtype
checks need no values and always run, also under ``jit``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

from ._fast_paths import fast_paths
from ._namespace import compute_dtype, device_of, get_namespace, promotion_settings, values_available
from ._types import Array, Namespace


def _drop_trailing_one(shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
    return shape[:-1] if len(shape) >= 2 and shape[-1] == 1 else shape


def _shape(x: Array) -> tuple[int | None, ...]:
    """The shape, ``None`` for a dimension unknown until run time: ``None`` itself, or a symbolic size that is not
    an integer (``torch.SymInt`` while a tracer runs; ``int()`` of one would fix the size the trace holds for)."""
    # type(d) is int first: numbers.Integral is an abstract class, whose isinstance costs a microsecond.
    return tuple(d if type(d) is int else int(d) if isinstance(d, numbers.Integral) else None for d in x.shape)


def _same(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> bool:
    """Equal shapes, an unknown dimension matching anything (checked again at run time)."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def _count(shape: tuple[int | None, ...]) -> int | None:
    return None if None in shape else math.prod(shape)  # type: ignore[arg-type]


def _sample_shape(y_true: Array, y_pred: Array) -> tuple[int | None, ...]:
    """The shape of the samples of ``y_true`` and ``y_pred``, which must match, never broadcasting.

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
    return a


def _flatten_weight(sample_weight: Array, sample_shape: tuple[int | None, ...], xp: Namespace) -> Array:
    """Per-sample weights of shape ``sample_shape`` (or its leading axis) as ``(n,)``."""
    w_shape = _drop_trailing_one(_shape(sample_weight))
    if _same(w_shape, sample_shape):
        return xp.reshape(sample_weight, (-1,))
    inner = sample_shape[1:]
    if len(w_shape) == 1 and inner and None not in inner and _same(w_shape, sample_shape[:1]):
        # One weight per example of a (batch, ...) target, spread over its elements.
        per_element = xp.reshape(sample_weight, (-1,) + (1,) * len(inner))
        ones = xp.ones((1, *inner), dtype=sample_weight.dtype, device=device_of(sample_weight, xp))
        return xp.reshape(per_element * ones, (-1,))
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
    # One pass per array when the values are fine (a fused one where the backend's fast
    # paths have it); only a failed check looks again, to report NaN as NaN rather than
    # as a value out of range.  ``y`` is None for boolean labels, which need no check.
    fast = fast_paths(xp)
    if y is not None and not fast.all_binary(y, xp):
        if _has_nan(y, xp):
            raise ValueError("y_true contains NaN")
        raise ValueError("y_true must hold binary labels 0 and 1 (pass validate=False for soft labels)")
    if not from_logits and not fast.all_in_unit_interval(p, xp):
        if _has_nan(p, xp):
            raise ValueError("y_pred contains NaN")
        raise ValueError(
            "y_pred has values outside [0, 1] but from_logits=False: pass probabilities, "
            "or from_logits=True for logits"
        )
    if w is not None and not fast.all_non_negative(w, xp):
        if _has_nan(w, xp):
            raise ValueError("sample_weight contains NaN")
        raise ValueError("sample_weight must be non-negative")


class _Checked(NamedTuple):
    """What the argument checks of :func:`_prepare` concluded from a call's signature."""

    xp: Namespace
    dtype: Any  # the compute dtype
    sample_shape: tuple[int | None, ...]
    labels_bool: bool  # boolean labels: always 0/1, no value check


#: The conclusions of :func:`_checked_signature`, by signature (:func:`_signature`).  An eager training loop calls
#: the loss with one or two signatures, and for a small batch these checks cost more than its arithmetic.  Only
#: concrete arrays are looked up (``values_available``): under tracing the checks run once per trace anyway, and
#: a tracer (``torch.compile``) must not see this dict, or its contents would become guards of the trace.
_CHECKED: dict[tuple[Any, ...], _Checked] = {}
#: Signatures kept at most; the table is emptied when it is full (a loop over many shapes pays the checks).
_CHECKED_SIZE = 64


def _signature(y_true: Array, y_pred: Array, sample_weight: Array | None, from_logits: bool, xp: Namespace | None,
               dtype: Any) -> tuple[Any, ...] | None:
    """What the shape and dtype checks depend on: the arrays' types, dtypes and shapes, the arguments, and the
    settings that change dtype promotion (:func:`promotion_settings`); ``None`` for an argument that is not an
    array yet (a list), whose conversion must run at every call."""
    if not (hasattr(y_true, "shape") and hasattr(y_pred, "shape")):
        return None
    weight: Any = None
    if sample_weight is not None:
        if not hasattr(sample_weight, "shape"):
            return None
        weight = (type(sample_weight), sample_weight.dtype, tuple(sample_weight.shape))
    return (type(y_true), y_true.dtype, tuple(y_true.shape), type(y_pred), y_pred.dtype, tuple(y_pred.shape),
            weight, from_logits, xp, dtype, promotion_settings())


def _checked_signature(y_true: Array, y_pred: Array, sample_weight: Array | None, *, from_logits: bool,
                       xp: Namespace, dtype: Any) -> _Checked:
    """The argument checks (each raising with what is wrong) for arrays ``y_true``, ``y_pred``, ``sample_weight``
    of namespace ``xp``, and what they conclude."""
    if dtype is None:
        if not xp.isdtype(y_pred.dtype, "real floating"):
            raise TypeError(
                f"y_pred must be a floating array of probabilities or logits, got dtype {y_pred.dtype}"
            )
        dtype = compute_dtype(y_pred.dtype, xp)
    if not xp.isdtype(y_true.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"y_true must hold 0/1 labels as bool, integer or float, got dtype {y_true.dtype}")
    sample_shape = _sample_shape(y_true, y_pred)
    if sample_weight is not None:
        _flatten_weight(sample_weight, sample_shape, xp)  # its shape check (the flattening is redone per call)
    return _Checked(xp, dtype, sample_shape, xp.isdtype(y_true.dtype, "bool"))


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
    """Checked, flattened ``(y, p, w)`` in the compute dtype, and that dtype.

    The argument checks run once per signature of concrete arrays (:data:`_CHECKED`); the value checks
    (``validate``) at every call.
    """
    if not isinstance(from_logits, bool):
        raise TypeError(f"from_logits must be True or False, got {from_logits!r}")
    # The signature of concrete arrays only: under tracing values_available is False first, and the signature
    # is not even built (fewer guards).
    key = _signature(y_true, y_pred, sample_weight, from_logits, xp, dtype) \
        if hasattr(y_pred, "shape") and values_available(y_pred, xp) else None
    try:
        checked = None if key is None else _CHECKED.get(key)
    except TypeError:  # a symbolic dimension (torch's make_fx with fake tensors) does not hash: not concrete
        key, checked = None, None
    if checked is None:
        xp = get_namespace(y_true, y_pred, sample_weight, xp=xp)
        y_true = xp.asarray(y_true) if not hasattr(y_true, "shape") else y_true
        y_pred = xp.asarray(y_pred) if not hasattr(y_pred, "shape") else y_pred
        if sample_weight is not None and not hasattr(sample_weight, "shape"):
            sample_weight = xp.asarray(sample_weight)
        checked = _checked_signature(y_true, y_pred, sample_weight, from_logits=from_logits, xp=xp, dtype=dtype)
        if key is not None:
            if len(_CHECKED) >= _CHECKED_SIZE:
                _CHECKED.clear()
            _CHECKED[key] = checked
    xp, dtype, sample_shape, labels_bool = checked
    # A 1-D array is already flat (a reshape would cost a microsecond per call in array-api-compat's wrapper).
    y = y_true if len(y_true.shape) == 1 else xp.reshape(y_true, (-1,))
    p = y_pred if len(y_pred.shape) == 1 else xp.reshape(y_pred, (-1,))
    w = None if sample_weight is None else _flatten_weight(sample_weight, sample_shape, xp)
    # copy=False: the Array API default copies even an array already of that dtype (and an array of that
    # dtype is left as it is without the call).
    if y.dtype != dtype:
        y = xp.astype(y, dtype, copy=False)
    if p.dtype != dtype:
        p = xp.astype(p, dtype, copy=False)
    if w is not None and w.dtype != dtype:
        w = xp.astype(w, dtype, copy=False)
    if validate and (not labels_bool or not from_logits or w is not None) \
            and (key is not None or values_available(p, xp)) and values_available(y, xp):
        _check_values(None if labels_bool else y, p, w, from_logits, xp)
    return y, p, w, xp


def checked_arguments(y_true: Array, y_pred: Array, sample_weight: Array | None = None, *, from_logits: bool,
                      validate: bool = True, xp: Namespace | None = None) -> tuple[Array, Array, Array | None]:
    """``(y, p, w)``: a binary loss's arguments checked as the counts check them, flattened and in the compute dtype.

    The shapes and dtypes are checked (``TypeError`` / ``ValueError`` naming what is wrong), and with
    ``validate`` the values too (0/1 labels, probabilities in [0, 1] unless ``from_logits``, non-negative
    weights).  For an adapter that checks eagerly, where the values can be read, and then computes the
    counts in a traced function of these arrays with ``validate=False`` (``anyloss_keras`` on TensorFlow).

    Examples:
        >>> import numpy as np
        >>> y, p, w = checked_arguments(np.array([[0], [1]]), np.array([[-2.0], [3.0]]), from_logits=True)
        >>> y.tolist(), p.tolist(), w
        ([0.0, 1.0], [-2.0, 3.0], None)
        >>> checked_arguments(np.array([0, 2]), np.array([0.1, 0.9]), from_logits=False)
        Traceback (most recent call last):
        ...
        ValueError: y_true must hold binary labels 0 and 1 (pass validate=False for soft labels)
    """
    y, p, w, _ = _prepare(y_true, y_pred, sample_weight, from_logits=from_logits, validate=validate, xp=xp)
    return y, p, w


def _default_float(xp: Namespace) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes()["real floating"]
        except Exception:  # a namespace with a partial info object
            pass
    return xp.float32
