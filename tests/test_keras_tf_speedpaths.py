"""Keras on TensorFlow: the fast paths' native forms (anyloss_keras._fast_paths) and the step's memory.

Each TensorFlow form against a float64 NumPy formula written here (NaN, infinities and values on the
threshold included); the traced step's gradient against the pullback's; the extra memory of one step
eagerly and in a ``tf.function``, from TensorFlow's allocator, against bounds the previous forms exceeded
(eager 8.1x, tf.function 6.4x the logits' bytes at n = 1e7; now 5.6x and 3.0-3.4x).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.backend("keras")
keras = pytest.importorskip("keras")
anyloss_keras = pytest.importorskip("anyloss_keras")

if keras.backend.backend() != "tensorflow":
    pytest.skip("the TensorFlow forms of the fast paths", allow_module_level=True)

import tensorflow as tf  # noqa: E402

from anyloss_core.adapters import FastPaths  # noqa: E402
from anyloss_keras import _namespace as kxp  # noqa: E402
from anyloss_keras._fast_paths import KERAS_FAST_PATHS as FAST  # noqa: E402

DEFAULT = FastPaths()
SPECIAL = np.array([0.5, -0.5, 0.5000001, -0.4999999, 0.0, 1.0, -1.0, np.inf, -np.inf, np.nan], dtype=np.float32)


def _values(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([SPECIAL, rng.normal(size=n).astype(np.float32)])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_keras_namespace_has_the_keras_fast_paths():
    from anyloss_core._fast_paths import fast_paths

    assert fast_paths(kxp) is FAST


def test_sigmoid_of_temporary_keeps_no_reference_to_its_argument():
    x = np.random.default_rng(1).normal(size=100).astype(np.float32) * 30
    out = FAST.sigmoid_of_temporary(tf.constant(x), kxp)
    # Keras's ops.sigmoid keeps its argument on the output; that kept L (p - 1/2) alive with the saved A.
    assert not hasattr(out, "_keras_logits")
    np.testing.assert_allclose(out.numpy(), _sigmoid(x.astype(np.float64)), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_times_sigmoid_slope_is_x_s_one_minus_s(dtype):
    rng = np.random.default_rng(2)
    x = rng.normal(size=200).astype(dtype) * 10
    s = _sigmoid(rng.normal(size=200) * 4).astype(dtype)
    out = FAST.times_sigmoid_slope(tf.constant(x), tf.constant(s), kxp)
    assert out.dtype == tf.as_dtype(dtype)
    ref = x.astype(np.float64) * s * (1.0 - s.astype(np.float64))
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6 if dtype == "float32" else 1e-14, atol=0)


@pytest.mark.parametrize("threshold", [0.5, 0.0])
def test_shrink_is_x_where_its_magnitude_exceeds_the_threshold(threshold):
    x = _values()
    out = FAST.shrink(tf.constant(x), threshold, kxp).numpy()
    with np.errstate(invalid="ignore"):
        ref = np.where(np.abs(x) > threshold, x, 0.0)
    np.testing.assert_array_equal(out, ref)  # NaN fails |x| > t: 0, as in the default form


@pytest.mark.parametrize("factor", [1.0, 0.25, "tensor"])
def test_add_scaled_shrunk_difference_is_x_plus_factor_times_shrink(factor):
    rng = np.random.default_rng(4)
    a = _values(seed=5)
    b = (rng.random(a.shape) < 0.3).astype(np.float32)
    x = rng.normal(size=a.shape).astype(np.float32)
    f = tf.constant(0.25, tf.float64) if factor == "tensor" else factor  # a tensor factor of another dtype
    out = FAST.add_scaled_shrunk_difference(tf.constant(x), tf.constant(a), tf.constant(b), 0.5, f, kxp).numpy()
    d = a.astype(np.float64) - b
    with np.errstate(invalid="ignore"):
        ref = x + (0.25 if factor == "tensor" else factor) * np.where(np.abs(d) > 0.5, d, 0.0)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=0)
    default = DEFAULT.add_scaled_shrunk_difference(tf.constant(x), tf.constant(a), tf.constant(b), 0.5,
                                                   0.25 if factor == "tensor" else factor, kxp)
    np.testing.assert_array_equal(out, np.asarray(default))


def test_add_scaled_shrunk_difference_in_a_graph_waits_for_the_gradient():
    # In a graph a - b has no input from the backward pass: it must wait for x, or it runs (and is held,
    # with its masks) from the forward pass on.
    x, a, b = (tf.TensorSpec([8], tf.float32),) * 3
    graph = tf.function(lambda x, a, b: FAST.add_scaled_shrunk_difference(x, a, b, 0.5, 0.5, kxp)) \
        .get_concrete_function(x, a, b).graph
    subs = [op for op in graph.get_operations() if op.type == "Sub"]
    assert len(subs) == 1 and subs[0].control_inputs


def _step(loss, mode):
    def step(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return tape.gradient(value, z)

    return step if mode == "eager" else tf.function(step, jit_compile=mode == "xla")


def _peak_extra(fn, n):
    """The least over three runs of the allocator's peak above its start, in logits' bytes (4 n)."""
    peaks = []
    for _ in range(3):
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        fn()
        peaks.append(tf.config.experimental.get_memory_info("CPU:0")["peak"] - before)
    return min(peaks) / (4 * n)


@pytest.mark.parametrize(("mode", "bound"), [("eager", 6.5), ("tf.function", 4.0)])
def test_step_memory_is_within_the_bound(mode, bound):
    # The gradient (1x) plus what the step holds: eagerly sigma(z), A and the pullback's temporaries (the
    # tape no longer holds the counts' intermediates; Keras's sigmoid no longer keeps L (p - 1/2) on A);
    # in a graph sigma(z), A and the gradient (the rescue slope no longer runs during the forward pass).
    n = 1 << 20
    try:
        tf.config.experimental.get_memory_info("CPU:0")
    except (ValueError, RuntimeError):
        pytest.skip("this TensorFlow's CPU allocator keeps no statistics")
    rng = np.random.default_rng(6)
    z = tf.constant(rng.normal(size=(n, 1)).astype(np.float32))
    y = tf.constant((rng.random((n, 1)) < 0.1).astype(np.float32))
    step = _step(anyloss_keras.F1Loss(from_logits=True), mode)
    for _ in range(2):
        step(z, y).numpy()
    assert _peak_extra(lambda: step(z, y).numpy(), n) <= bound


@pytest.mark.parametrize("mode", ["eager", "tf.function", "xla"])
def test_step_gradient_equals_the_float64_pullback(mode):
    # The default loss (rescue 1e-2 ... its default) through every native form, against float64 NumPy.
    rng = np.random.default_rng(7)
    n = 3000
    z = (rng.normal(size=(n, 1)) * 0.3).astype(np.float32)
    z[:6, 0] = [8.0, -8.0, 3.0, -3.0, 0.0, 40.0]
    y = (rng.random((n, 1)) < 0.3).astype(np.float32)
    y[:6, 0] = [0, 1, 0, 1, 1, 0]
    loss = anyloss_keras.F1Loss(from_logits=True)
    grad = _step(loss, mode)(tf.constant(z), tf.constant(y)).numpy().ravel()
    zz, yy = z.astype(np.float64).ravel(), y.astype(np.float64).ravel()
    p = _sigmoid(zz)
    a = _sigmoid(73.0 * (p - 0.5))
    tp, fp, fn = np.sum(yy * a), np.sum((1 - yy) * a), np.sum(yy * (1 - a))
    d = 2 * tp + fp + fn
    d_tp, d_fp = 2 * (d - 2 * tp) / d**2, -2 * tp / d**2
    ref = -(yy * d_tp + (1 - yy) * d_fp - yy * d_fp) * 73.0 * a * (1 - a) * p * (1 - p)
    ref += loss.rescue * np.where(np.abs(p - yy) > 0.5, p - yy, 0.0) / n
    np.testing.assert_allclose(grad, ref, rtol=2e-4, atol=2e-5 * np.max(np.abs(ref)))
