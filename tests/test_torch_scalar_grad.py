"""The torch adapter's dual-number metric gradient (``anyloss_torch._scalar_grad``), used by its one-node backward.

References are independent: float64 NumPy central differences of the same metric,
and the range check's message of the core (``anyloss_core._metrics.check_metric_value``).
Runs in the torch session (importing ``anyloss_torch`` needs torch).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
_scalar_grad = pytest.importorskip("anyloss_torch._scalar_grad")

import anyloss_core as al  # noqa: E402

metric_value_and_grad = _scalar_grad.metric_value_and_grad


def _assert_matches_central_differences(fn, counts):
    """``metric_value_and_grad(fn, counts)`` against ``fn`` on float64 NumPy and its central differences."""
    import array_api_compat.numpy as xp

    value, grad = metric_value_and_grad(fn, al.Confusion(*counts))

    def f(c):
        return float(fn(al.Confusion(*(np.float64(v) for v in c)), xp))

    assert value == pytest.approx(f(counts), rel=1e-14, abs=1e-15)
    for i in range(4):
        h = 1e-6 * max(1.0, counts[i])
        up, down = list(counts), list(counts)
        up[i] += h
        down[i] -= h
        assert grad[i] == pytest.approx((f(up) - f(down)) / (2 * h), rel=1e-6, abs=1e-9), (fn, i)
    return value


@pytest.mark.parametrize("metric", sorted(al.METRICS))
@pytest.mark.parametrize("counts", [(5.0, 1.0, 2.0, 3.0), (40.5, 3.25, 7.75, 0.5), (1e4, 20.0, 300.0, 12.0)])
def test_metric_value_and_grad_matches_float64_central_differences(metric, counts):
    _assert_matches_central_differences(al.get_metric(metric, **({"beta": 2.0} if metric == "fbeta" else {})),
                                        counts)


def _every_operation(c, xp):
    """A user metric that runs every operation of the float evaluator, each with numbers on either side."""
    a = (2.0 - c.fn / 10.0) ** 2 / 4.0  # number - count, count / number, power, / number
    b = 1.0 / (1.0 + c.fp) + 0.5 * c.tp * 0.1  # number / count, number + count, number * count * number
    d = -(c.tn - c.tp) / (c.tn + c.tp)  # negation, count - count, count / count
    e = xp.exp(-c.fp / 100.0) * xp.log(1.0 + c.tp) * xp.sqrt(c.tn)  # count * count
    f = xp.maximum(e, 0.0) + xp.minimum(c.tp, 4.0) + xp.abs(d) + xp.where(c.tp > 1.0, c.fn, 2.0 * c.fn)
    return xp.clip((a + b + f - 1.0 - c.fp * 0.0) / 20.0, 0.0, 1.0)


@pytest.mark.parametrize("counts", [(5.0, 1.0, 2.0, 3.0), (9.0, 2.5, 0.5, 1.5)])
def test_every_operation_of_the_float_evaluator_matches_float64_central_differences(counts):
    value = _assert_matches_central_differences(_every_operation, counts)
    assert 0.0 < value < 1.0  # inside the clip: the gradient is the expression's


def test_metric_value_and_grad_declines_what_it_cannot_evaluate():
    def uses_cosh(c, xp):
        return xp.cosh(c.tp)

    def not_a_count_function(c, xp):
        return 0.5

    for fn in (uses_cosh, not_a_count_function):
        assert metric_value_and_grad(fn, al.Confusion(1.0, 2.0, 3.0, 4.0)) is None
    # A negative base with a fractional exponent is declined (no complex numbers), as is a non-finite result
    # (autodiff decides what to do with them).
    assert metric_value_and_grad(lambda c, xp: (c.tp - c.fn) ** 0.5, al.Confusion(1.0, 5.0, 1.0, 2.0)) is None
    assert metric_value_and_grad(lambda c, xp: xp.log(c.fn), al.Confusion(1.0, 0.0, 3.0, 4.0)) is None


def _overshoot(c, xp):
    return 1.5 + 0.0 * c.tp


def _undershoot(c, xp):
    return c.tp / (c.tp + c.fp) - 1.2


@pytest.mark.parametrize("metric,shown", [(_overshoot, "1.5"), (_undershoot, "-")])
def test_a_user_metric_outside_0_1_is_an_error_on_floats_too(metric, shown):
    # (A NaN result is not an error here: on floats it declines, and autodiff decides.)
    with pytest.raises(ValueError) as info:
        metric_value_and_grad(metric, al.Confusion(5.0, 1.0, 2.0, 3.0))
    message = str(info.value)
    assert f"metric {metric.__name__!r} returned {shown}" in message and "[0, 1]" in message, message
