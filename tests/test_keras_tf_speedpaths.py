"""Keras on TensorFlow: the fast paths' native forms (anyloss_keras._fast_paths) and the step's memory.

Each TensorFlow form against a float64 NumPy formula written here (NaN, infinities and values on the
threshold included); the traced step's gradient against the pullback's; the extra memory of one step
eagerly and in a ``tf.function`` (TensorFlow's allocator, or the resident set where it keeps no count),
against bounds the previous forms exceeded (eager 8.1x, then 5.0-5.6x, tf.function 6.4x the logits' bytes;
now 3.0x and 3.0-3.4x); the eager calls' traced counts (one trace for every batch size after the second, an
approximation that does not hash kept op by op).
"""

from __future__ import annotations

import os

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


def _allocator_has_statistics():
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
    except (ValueError, RuntimeError):
        return False
    return True


def _peak_extra(fn, n):
    """The least over three runs of the step's peak above its start, in logits' bytes (4 n): TensorFlow's
    allocator's count where it keeps one, else the resident set's (``anyloss speed``'s own reading)."""
    if not _allocator_has_statistics():
        from anyloss_bench.speed import _rss_peak_extra

        return _rss_peak_extra(fn, runs=3) / (4 * n)
    peaks = []
    for _ in range(3):
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        fn()
        peaks.append(tf.config.experimental.get_memory_info("CPU:0")["peak"] - before)
    return min(peaks) / (4 * n)


@pytest.mark.parametrize(("mode", "bound"), [("eager", 3.5), ("tf.function", 4.0), ("fit's tf.function", 3.5)])
def test_step_memory_is_within_the_bound(mode, bound, eager_counts):
    # The gradient (1x) plus what the step holds.  Eagerly the counts are a tf.function (anyloss_keras._tensorflow
    # ._eager_counts) whose gradient recomputes sigma(z) and A: 3.0x, where the eager ops held sigma(z), A, the
    # gradient and two temporaries (5.0x).  In a graph sigma(z), A and the gradient (3.0x).  With the batch axis
    # traced as None (fit's step; the eager trace after a second batch size) the count n is read at run time
    # (KerasFastPaths.sample_count): a sum of n ones took one more n-element array (4.0x).
    if _allocator_has_statistics():
        n = 1 << 20
    elif os.path.exists("/proc/self/clear_refs"):
        # The resident set sees an allocation only above glibc's largest mmap threshold (32 MiB): smaller
        # ones come from a heap whose pages stay resident.  64 MiB of logits.
        n = 1 << 24
    else:
        pytest.skip("neither TensorFlow's allocator nor this system tells the step's peak memory")
    rng = np.random.default_rng(6)
    z = tf.constant(rng.normal(size=(n, 1)).astype(np.float32))
    y = tf.constant((rng.random((n, 1)) < 0.1).astype(np.float32))
    # Eagerly without the label check, whose three boolean temporaries (0.25x each) come from glibc's heap, whose
    # pages may or may not be resident already: with it, the resident set read 2.5x-3.5x from run to run.
    loss = anyloss_keras.F1Loss(from_logits=True, validate=mode != "eager")
    if mode == "fit's tf.function":
        spec = tf.TensorSpec([None, 1], tf.float32)
        step = tf.function(_step(loss, "eager"), input_signature=[spec, spec])
    else:
        step = _step(loss, mode)
    if mode == "eager":  # two other batch sizes first: the eager trace is then the one of any batch size
        for size in (100, 200):
            step(z[:size], y[:size])
    for _ in range(2):
        step(z, y).numpy()
    assert _peak_extra(lambda: step(z, y).numpy(), n) <= bound


def _eager_step(loss, z, y):
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss(y, z)
    return value, tape.gradient(value, z)


@pytest.fixture
def eager_counts(monkeypatch):
    """An empty table of the eager calls' traced counts for this test (another test's may fill the shared one)."""
    from anyloss_keras import _tensorflow

    table = {}
    monkeypatch.setattr(_tensorflow, "_EAGER_COUNTS", table)
    return table


def test_eager_calls_of_any_batch_size_share_two_traces(eager_counts):
    # reduce_retracing: the first batch size is traced as it is, the second as any size, the rest reuse it (a
    # trace costs tens of milliseconds, a retrace per batch size would cost more than the step).
    loss = anyloss_keras.F1Loss(from_logits=True)
    rng = np.random.default_rng(8)
    for n in (40, 56, 72, 88, 104):
        z = tf.constant(rng.normal(size=(n, 1)).astype(np.float32))
        y = tf.constant((np.arange(n) % 3 == 0).astype(np.float32)[:, None])
        _eager_step(loss, z, y)
    [traced] = eager_counts.values()
    assert traced.experimental_get_tracing_count() == 2


def _small_batch(seed=9, n=300):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=(n, 1)).astype(np.float32) * 0.2),
            tf.constant((rng.random((n, 1)) < 0.3).astype(np.float32)))


def test_unhashable_approximation_is_counted_op_by_op_with_the_same_gradient(eager_counts):
    # A trace is keyed by its Python arguments; an approximation that does not hash cannot key one, so its
    # eager calls keep the op-by-op form (tf.function would raise TypeError).
    from anyloss_core._approximations import AnyLossApproximation

    class Unhashable(AnyLossApproximation):
        __hash__ = None  # type: ignore[assignment]

    z, y = _small_batch()
    value, grad = _eager_step(anyloss_keras.F1Loss(from_logits=True, approximation=Unhashable()), z, y)
    assert not eager_counts
    ref_value, ref_grad = _eager_step(anyloss_keras.F1Loss(from_logits=True), z, y)
    assert len(eager_counts) == 1
    assert float(value) == pytest.approx(float(ref_value), rel=1e-6)
    np.testing.assert_allclose(grad.numpy(), ref_grad.numpy(), rtol=1e-5, atol=1e-6 * np.max(np.abs(ref_grad)))


def test_configurations_past_the_tables_size_count_op_by_op(eager_counts, monkeypatch):
    # TensorFlow never frees a trace (its custom gradient stays in a global registry): a sweep over many
    # configurations stops tracing at the table's size, with the same values and gradients.
    from anyloss_keras import _tensorflow

    monkeypatch.setattr(_tensorflow, "_EAGER_COUNTS_SIZE", 2)
    z, y = _small_batch()
    results = [_eager_step(anyloss_keras.F1Loss(from_logits=True, scale=scale), z, y) for scale in (30.0, 40.0, 50.0)]
    assert len(eager_counts) == 2
    monkeypatch.setattr(_tensorflow, "_EAGER_COUNTS_SIZE", 3)
    value, grad = _eager_step(anyloss_keras.F1Loss(from_logits=True, scale=50.0), z, y)  # now traced
    assert len(eager_counts) == 3
    assert float(results[2][0]) == pytest.approx(float(value), rel=1e-6)
    np.testing.assert_allclose(results[2][1].numpy(), grad.numpy(), rtol=1e-5, atol=1e-6 * np.max(np.abs(grad)))


def test_many_configurations_trace_without_retracing_warnings(tmp_path):
    # One function per configuration, each its own code for TensorFlow's count of retraces (a partial): one
    # function for all, or closures sharing one code object, retraced at each new configuration, and TensorFlow
    # warned ("5 out of the last 5 calls ... triggered tf.function retracing") at the fifth.  A fresh process:
    # TensorFlow warns at most twice per function and process, so an earlier test could use the warnings up.
    import subprocess
    import sys

    code = ("import logging, numpy as np, tensorflow as tf, anyloss_keras\n"
            "from anyloss_keras import _tensorflow\n"
            "records = []\n"
            "handler = logging.Handler()\n"
            "handler.emit = records.append\n"
            "tf.get_logger().addHandler(handler)\n"
            "assert tf.get_logger().isEnabledFor(logging.WARNING)\n"
            "z = tf.constant(np.linspace(-1, 1, 60, dtype='float32')[:, None])\n"
            "y = tf.constant((np.arange(60) % 3 == 0).astype('float32')[:, None])\n"
            "for scale in (41.0, 43.0, 47.0, 53.0, 59.0, 67.0, 71.0, 79.0):\n"
            "    with tf.GradientTape() as tape:\n"
            "        tape.watch(z)\n"
            "        value = anyloss_keras.F1Loss(from_logits=True, scale=scale)(y, z)\n"
            "    tape.gradient(value, z)\n"
            "print(len(_tensorflow._EAGER_COUNTS), sum('retracing' in r.getMessage() for r in records))\n")
    script = tmp_path / "sweep.py"
    script.write_text(code)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["8", "0"], out.stderr[-2000:]


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


def test_eager_calls_and_a_users_tf_function_trace_without_autograph_warnings(tmp_path):
    # The core is straight-line array code: AutoGraph has nothing to convert there.  Converting the eager calls'
    # traced counts printed a warning to every user (and took about 2 s of the first call); a user's own
    # tf.function converted the whole loss, and warned about _binary_counts.
    import subprocess
    import sys

    code = ("import numpy as np, tensorflow as tf, anyloss_keras\n"
            "z = tf.constant(np.linspace(-1, 1, 64, dtype='float32')[:, None])\n"
            "y = tf.constant((np.arange(64) % 3 == 0).astype('float32')[:, None])\n"
            "loss = anyloss_keras.F1Loss(from_logits=True)\n"
            "def step(z, y):\n"
            "    with tf.GradientTape() as tape:\n"
            "        tape.watch(z)\n"
            "        value = loss(y, z)\n"
            "    return tf.reduce_sum(tape.gradient(value, z) ** 2)\n"
            "print(float(step(z, y)) > 0, float(tf.function(step)(z, y)) > 0)\n")
    script = tmp_path / "step.py"  # a file: AutoGraph converts only functions whose source it can read
    script.write_text(code)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True"]
    assert "AutoGraph" not in out.stderr, out.stderr[-2000:]


def test_a_batch_axis_traced_as_none_is_counted_without_an_array_of_ones():
    # fit traces its step with the batch axis None: n (the rescue slope's 1/n, TN) is then read at run time,
    # where the Array API form sums n ones (KerasFastPaths.sample_count).  The gradient as the float64 test above.
    loss = anyloss_keras.F1Loss(from_logits=True)
    spec = tf.TensorSpec([None, 1], tf.float32)
    concrete = tf.function(_step(loss, "eager"), input_signature=[spec, spec]).get_concrete_function()
    ops = [op.type for op in concrete.graph.get_operations()]
    for function in concrete.graph._functions.values():  # the gradient's own function graphs
        ops += [node.op for node in function.cached_definition.node_def]
    assert "Size" in ops
    assert not {"OnesLike", "Fill"} & set(ops)
    assert FAST.sample_count(tf.zeros((7,), tf.float16), kxp).dtype == tf.float16
    assert float(FAST.sample_count(tf.zeros((7,), tf.float16), kxp)) == 7.0
