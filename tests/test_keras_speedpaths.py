"""The TensorFlow backend's closed-form backward of the binary Keras loss (anyloss_keras._tensorflow).

Values and gradients against a float64 NumPy formula written here, eagerly, in a ``tf.function`` and
under XLA; the traced graph holds the pullback, not autodiff of the sigmoids; the fallbacks.
"""

from __future__ import annotations

import numpy as np
import pytest
from cases import reference_f1_value_and_grad, rescue_batch

pytestmark = pytest.mark.backend("keras")
keras = pytest.importorskip("keras")
anyloss_keras = pytest.importorskip("anyloss_keras")

if keras.backend.backend() != "tensorflow":
    pytest.skip("the custom-gradient path is TensorFlow's", allow_module_level=True)

import tensorflow as tf  # noqa: E402

MODES = ("eager", "tf.function", "xla")
SCALE = 73.0


def _reference(y, z, w, *, from_logits, rescue):
    return reference_f1_value_and_grad(y, z, w, from_logits=from_logits, rescue=rescue, scale=SCALE)


def _step(loss, mode):
    def step(z, y, w):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z, sample_weight=w)
        return value, tape.gradient(value, z)

    return step if mode == "eager" else tf.function(step, jit_compile=mode == "xla")


_data = rescue_batch


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("rescue", [0.1, 0.0])
def test_value_and_gradient_equal_the_float64_formula(mode, from_logits, weighted, rescue):
    z, y, w = _data(from_logits=from_logits)
    loss = anyloss_keras.F1Loss(from_logits=from_logits, rescue=rescue, validate=mode != "xla")
    value, grad = _step(loss, mode)(tf.constant(z), tf.constant(y), tf.constant(w) if weighted else None)
    ref_value, ref_grad = _reference(y, z, w if weighted else None, from_logits=from_logits, rescue=rescue)
    assert float(value) == pytest.approx(ref_value, rel=1e-5)
    scale = np.max(np.abs(ref_grad))
    np.testing.assert_allclose(np.asarray(grad).ravel(), ref_grad, rtol=2e-4, atol=2e-5 * scale)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_unknown_batch_size_while_tracing_gives_the_float64_gradient(jit_compile):
    # fit traces its step with the batch axis unknown (None): the rescue slope's 1/n then comes from a sum.
    z, y, _ = _data()
    loss = anyloss_keras.F1Loss(from_logits=True)
    spec = tf.TensorSpec([None, 1], tf.float32)

    @tf.function(input_signature=[spec, spec], jit_compile=jit_compile)
    def step(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return value, tape.gradient(value, z)

    value, grad = step(tf.constant(z), tf.constant(y))
    ref_value, ref_grad = _reference(y, z, None, from_logits=True, rescue=0.1)
    assert float(value) == pytest.approx(ref_value, rel=1e-5)
    np.testing.assert_allclose(np.asarray(grad).ravel(), ref_grad, rtol=2e-4, atol=2e-5 * np.max(np.abs(ref_grad)))


def _graph_ops(loss, *, custom=False):
    z, y, _ = _data()
    concrete = tf.function(_step(loss, "eager")).get_concrete_function(tf.constant(z), tf.constant(y), None)
    if custom:  # the ops that carry a tf.custom_gradient (an IdentityN with its gradient's name)
        return [op for op in concrete.graph.get_operations() if op.type == "IdentityN"
                and op.node_def.attr["_gradient_op_type"].s.startswith(b"CustomGradient")]
    ops = [op.type for op in concrete.graph.get_operations()]
    for function in concrete.graph._functions.values():  # the gradient's own function graphs
        ops += [node.op for node in function.cached_definition.node_def]
    return ops


def test_traced_gradient_is_the_pullback_not_autodiff_of_the_sigmoids():
    loss = anyloss_keras.F1Loss(from_logits=True)
    ops = _graph_ops(loss)
    # Autodiff of the composition differentiates both sigmoids and the rescue term computed its own third
    # sigmoid; the pullback reuses the forward's two (its two slopes are SigmoidGrad ops: the fast path
    # KerasFastPaths.times_sigmoid_slope), and the counts carry a custom gradient, and so does that gradient
    # (for a second derivative: its own gradient is not in this graph, which computes the first).
    assert ops.count("Sigmoid") == 2
    assert ops.count("SigmoidGrad") == 2
    assert len(_graph_ops(loss, custom=True)) == 2


def test_approximation_without_derivative_uses_autodiff():
    class Plain:  # the identity approximation, without ``derivative``
        name = "plain"

        def __call__(self, y_pred, *, from_logits, scale, xp):
            p = xp.sigmoid(y_pred) if from_logits else y_pred
            return p, 1.0 - p

    z, y, _ = _data()
    plain = anyloss_keras.F1Loss(from_logits=True, approximation=Plain(), rescue=0.0)
    identity = anyloss_keras.F1Loss(from_logits=True, approximation="identity", rescue=0.0)
    (v1, g1), (v2, g2) = (_step(loss, "eager")(tf.constant(z), tf.constant(y), None) for loss in (plain, identity))
    assert float(v1) == pytest.approx(float(v2), rel=1e-6)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-5, atol=1e-9)
    assert "SigmoidGrad" in _graph_ops(plain)
    assert not _graph_ops(plain, custom=True)


def test_bad_labels_still_raise_eagerly():
    z, y, _ = _data()
    with pytest.raises(ValueError, match="y_true must hold binary labels"):
        anyloss_keras.F1Loss(from_logits=True)(y * 2.0, z)


_DISTRIBUTED = r"""
import numpy as np, tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
import anyloss_keras
z, y = np.array(Z, "float32").reshape(-1, 1), np.array(Y, "float32").reshape(-1, 1)
strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
loss = anyloss_keras.F1Loss(from_logits=True, distributed=True, rescue=0.0)

def replica_step(z, y):
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss(y, z)
    return value, tape.gradient(value, z)

halves = strategy.experimental_distribute_values_from_function(
    lambda ctx: (tf.constant(np.split(z, 2)[ctx.replica_id_in_sync_group]),
                 tf.constant(np.split(y, 2)[ctx.replica_id_in_sync_group])))
values, grads = strategy.run(tf.function(replica_step), args=halves)
print(float(strategy.reduce("SUM", values, axis=None)))
print(",".join(repr(float(g)) for part in strategy.experimental_local_results(grads) for g in np.ravel(part)))
"""


def test_distributed_counts_give_the_global_batch_gradient():
    # Two replicas, each with half the batch: the all-reduced counts make the summed loss and the
    # concatenated gradients those of the whole batch (the pullback sits below the all-reduce).
    import os
    import subprocess
    import sys

    z, y, _ = _data(n=64)
    code = _DISTRIBUTED.replace("Z", repr(z.ravel().tolist())).replace("Y", repr(y.ravel().tolist()))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    value, grad = out.stdout.strip().splitlines()[-2:]
    ref_value, ref_grad = _reference(y, z, None, from_logits=True, rescue=0.0)
    assert float(value) == pytest.approx(ref_value, rel=1e-5)
    np.testing.assert_allclose([float(g) for g in grad.split(",")], ref_grad, rtol=2e-4,
                               atol=2e-5 * np.max(np.abs(ref_grad)))
