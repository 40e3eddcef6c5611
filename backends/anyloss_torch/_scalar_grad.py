r"""A metric's value and gradient with respect to the four counts, on Python floats (the one-node path).

A metric is a handful of scalar operations on four numbers.  Under eager autograd
each of them is a framework op with an autograd node, and for small batches those
dozens of 0-d kernels cost more than the batch itself (PyTorch: about 0.3 ms of a
0.6 ms step at n = 20).  This module evaluates the metric once in forward mode on
Python floats instead: every number carries its value and its partial derivatives
with respect to (TN, FN, FP, TP), so one pass gives

.. math:: m(c), \quad \left(\frac{\partial m}{\partial TN}, \frac{\partial m}{\partial FN},
          \frac{\partial m}{\partial FP}, \frac{\partial m}{\partial TP}\right)

in float64.  The derivative conventions match the frameworks' autodiff at the
kinks (``clip`` passes the gradient at its bounds, ``where`` differentiates the
branch it takes), so the result equals autodiff of the same metric.

Only what the metrics use is supported: arithmetic, comparisons, ``sqrt``,
``clip``, ``where``, ``maximum``, ``minimum``, ``abs``, ``exp``, ``log`` and
``astype``.  A metric that needs anything else (a user's metric may) makes
:func:`metric_value_and_grad` return ``None``, and the caller uses autodiff.
"""

from __future__ import annotations

import math
from typing import Any

from anyloss_core import Confusion
from anyloss_core.adapters import check_metric_value

__all__ = ["NOT_FINITE", "UNSUPPORTED", "evaluate", "metric_value_and_grad"]

_ZERO = (0.0, 0.0, 0.0, 0.0)
#: The seeds' gradients: d count / d (tn, fn, fp, tp).
_SEEDS = ((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0))


class _Dual:
    """A float with its gradient with respect to the four counts (tn, fn, fp, tp).

    The metrics combine counts with each other and with Python numbers (``2.0 * tp``,
    ``den > 0``); the second kind is the common one, and takes a branch of its own that
    leaves the gradient's zeros out (a metric runs a dozen of these per loss call).
    """

    __slots__ = ("value", "grad")
    dtype = "float64"  # what ``xp.astype(x, x.dtype)`` reads
    ndim = 0
    shape = ()

    def __init__(self, value: float, grad: tuple[float, ...] = _ZERO) -> None:
        self.value = value
        self.grad = grad

    # arithmetic ---------------------------------------------------------------------------------
    def __add__(self, other: Any) -> _Dual:
        if type(other) is _Dual:
            a, b = self.grad, other.grad
            return _Dual(self.value + other.value, (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]))
        return _Dual(self.value + _number(other), self.grad)

    __radd__ = __add__

    def __sub__(self, other: Any) -> _Dual:
        if type(other) is _Dual:
            a, b = self.grad, other.grad
            return _Dual(self.value - other.value, (a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]))
        return _Dual(self.value - _number(other), self.grad)

    def __rsub__(self, other: Any) -> _Dual:
        g = self.grad
        return _Dual(_number(other) - self.value, (-g[0], -g[1], -g[2], -g[3]))

    def __mul__(self, other: Any) -> _Dual:
        if type(other) is _Dual:
            return _Dual(self.value * other.value, _axpy(other.value, self.grad, self.value, other.grad))
        c = _number(other)
        return _chain(self, self.value * c, c)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> _Dual:
        if type(other) is _Dual:
            q = self.value / other.value
            return _Dual(q, _axpy(1.0 / other.value, self.grad, -q / other.value, other.grad))
        o = _number(other)
        return _chain(self, self.value / o, 1.0 / o)

    def __rtruediv__(self, other: Any) -> _Dual:
        q = _number(other) / self.value  # d (c / x) = -(c / x) / x dx
        return _chain(self, q, -q / self.value)

    def __neg__(self) -> _Dual:
        return _chain(self, -self.value, -1.0)

    def __pos__(self) -> _Dual:
        return self

    def __pow__(self, exponent: Any) -> _Dual:
        if isinstance(exponent, _Dual):
            raise TypeError("a count-dependent exponent is not supported")
        e = float(exponent)
        # math.pow, not **: a negative base with a fractional exponent is a ValueError (declined: autodiff then
        # reports the metric's NaN), where ** would return a complex number.
        return _chain(self, math.pow(self.value, e), e * math.pow(self.value, e - 1.0))

    # comparisons give plain booleans: they choose branches, they carry no gradient ------------------
    def __gt__(self, other: Any) -> bool:
        return self.value > _value(other)

    def __ge__(self, other: Any) -> bool:
        return self.value >= _value(other)

    def __lt__(self, other: Any) -> bool:
        return self.value < _value(other)

    def __le__(self, other: Any) -> bool:
        return self.value <= _value(other)

    def __float__(self) -> float:
        return self.value


def _number(x: Any) -> float:
    """A Python number as a float; anything else (an array, a string) is not supported."""
    if isinstance(x, (bool, int, float)):
        return float(x)
    raise TypeError(f"cannot combine a count with {type(x).__name__}")


def _value(x: Any) -> float:
    return x.value if type(x) is _Dual else _number(x)


def _lift(x: Any) -> _Dual:
    if type(x) is _Dual:  # the common case first: one type check (nothing subclasses _Dual)
        return x
    return _Dual(_number(x))


def _axpy(a: float, x: tuple[float, ...], b: float, y: tuple[float, ...]) -> tuple[float, ...]:
    return (a * x[0] + b * y[0], a * x[1] + b * y[1], a * x[2] + b * y[2], a * x[3] + b * y[3])


def _chain(x: _Dual, value: float, slope: float) -> _Dual:
    """``f(x)`` of value ``value`` and derivative ``slope``."""
    g = x.grad
    return _Dual(value, (slope * g[0], slope * g[1], slope * g[2], slope * g[3]))


class _ScalarNamespace:
    """The few array-API functions the metrics call, on :class:`_Dual` numbers."""

    __name__ = "anyloss_torch._scalar_grad"  # what array-api-compat's namespace checks read
    float32 = float64 = "float64"

    @staticmethod
    def sqrt(x: Any) -> _Dual:
        d = _lift(x)
        root = math.sqrt(d.value)
        return _chain(d, root, 0.5 / root if root > 0 else math.inf)

    @staticmethod
    def clip(x: Any, lo: float | None = None, hi: float | None = None) -> _Dual:
        d = _lift(x)
        if lo is not None and d.value < lo:
            return _Dual(float(lo))
        if hi is not None and d.value > hi:
            return _Dual(float(hi))
        return d  # the gradient passes at the bounds, as torch.clamp and jnp.clip

    @staticmethod
    def where(condition: Any, a: Any, b: Any) -> _Dual:
        return _lift(a) if bool(condition) else _lift(b)

    @staticmethod
    def maximum(a: Any, b: Any) -> _Dual:
        da, db = _lift(a), _lift(b)
        return da if da.value >= db.value else db

    @staticmethod
    def minimum(a: Any, b: Any) -> _Dual:
        da, db = _lift(a), _lift(b)
        return da if da.value <= db.value else db

    @staticmethod
    def abs(x: Any) -> _Dual:
        d = _lift(x)
        return d if d.value >= 0 else -d

    @staticmethod
    def exp(x: Any) -> _Dual:
        d = _lift(x)
        e = math.exp(d.value)
        return _chain(d, e, e)

    @staticmethod
    def log(x: Any) -> _Dual:
        d = _lift(x)
        return _chain(d, math.log(d.value), 1.0 / d.value)

    @staticmethod
    def astype(x: Any, dtype: Any) -> _Dual:
        return _Dual(float(x)) if isinstance(x, bool) else _lift(x)


_XP = _ScalarNamespace()


#: What :func:`evaluate` gives instead of a result: the metric uses an operation the float evaluator does not know
#: (it will at any counts), or these counts gave no finite value and gradient (others may).
UNSUPPORTED, NOT_FINITE = "unsupported", "not finite"


def metric_value_and_grad(metric: Any, counts: Confusion) -> tuple[float, Confusion] | None:
    """``(metric(counts), d metric / d counts)`` on Python floats, or ``None`` if unsupported.

    ``counts`` holds four Python floats; ``metric`` is ``fn(confusion, xp)``.  A
    non-finite value or gradient also gives ``None`` (autodiff decides then); a
    user metric's value outside [0, 1] raises ``ValueError``.

    Examples:
        >>> import anyloss_core as al
        >>> from anyloss_torch._scalar_grad import metric_value_and_grad
        >>> value, grad = metric_value_and_grad(al.get_metric("f1"), al.Confusion(5.0, 1.0, 2.0, 3.0))
        >>> round(value, 6), [round(g, 6) for g in grad]  # 6 / 9; d/dTP = 2 (FP + FN) / 81
        (0.666667, [0.0, -0.074074, -0.074074, 0.074074])
    """
    result = evaluate(metric, counts)
    return None if isinstance(result, str) else result


def evaluate(metric: Any, counts: Confusion) -> tuple[float, Confusion] | str:
    """:func:`metric_value_and_grad`, with the reason it declines: :data:`UNSUPPORTED` (an operation it does not
    know, or a result that is not its dual number) or :data:`NOT_FINITE` (a division by zero, a math domain or
    overflow error, or a non-finite value or gradient at these counts)."""
    tn, fn, fp, tp = counts
    seeds = (_Dual(float(tn), _SEEDS[0]), _Dual(float(fn), _SEEDS[1]), _Dual(float(fp), _SEEDS[2]),
             _Dual(float(tp), _SEEDS[3]))
    try:
        out = metric(Confusion(*seeds), _XP)
    except (TypeError, AttributeError):
        return UNSUPPORTED
    except (ValueError, ZeroDivisionError, OverflowError):
        return NOT_FINITE
    if not isinstance(out, _Dual):
        return UNSUPPORTED
    check_metric_value(metric, metric, out.value, _XP)  # a user metric's value in [0, 1]
    g0, g1, g2, g3 = out.grad
    isfinite = math.isfinite
    if not (isfinite(out.value) and isfinite(g0) and isfinite(g1) and isfinite(g2) and isfinite(g3)):
        return NOT_FINITE
    return out.value, Confusion(*out.grad)
