"""anyloss_keras running counts (``momentum=``) on the active Keras backend: the update, fit, evaluate, saving.

References are float64 NumPy formulas written here: the soft counts of the AnyLoss
approximation, ``A = sigmoid(L (p - 1/2))``, and the update
``u' = (1 - m) u + m c / n`` (an empty state is filled by the first batch).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.backend("keras")
keras = pytest.importorskip("keras")
anyloss_keras = pytest.importorskip("anyloss_keras")

BACKEND = keras.backend.backend()
L = 73.0


def soft_counts64(y, p):
    """tn, fn, fp, tp of the AnyLoss approximation, in float64."""
    y, p = np.asarray(y, "float64").ravel(), np.asarray(p, "float64").ravel()
    a = 1.0 / (1.0 + np.exp(-L * (p - 0.5)))
    return np.array([np.sum((1 - y) * (1 - a)), np.sum(y * (1 - a)), np.sum((1 - y) * a), np.sum(y * a)])


def f1_of(counts):
    tn, fn, fp, tp = counts
    return 2 * tp / (2 * tp + fp + fn)


def state_of(loss_fn):
    return np.asarray(keras.ops.convert_to_numpy(loss_fn.running_counts), "float64")


def batches(seed=5, n=24):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, 1)).astype("float32")
    # Probabilities near 1/2, so the soft counts are far from saturation and float32 is close.
    p = np.clip(0.5 + 0.25 * (2 * y - 1) + 0.15 * rng.normal(size=(n, 1)), 0.05, 0.95).astype("float32")
    return y, p


def value_and_grad(loss_fn, y, p):
    """The loss and its gradient with respect to ``p``, as a training step computes them on this backend."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        p = tf.constant(p)
        with tf.GradientTape() as tape:
            tape.watch(p)
            value = loss_fn(y, p)
        return float(value), tape.gradient(value, p).numpy()
    if BACKEND == "torch":
        import torch

        p = torch.tensor(p, requires_grad=True)
        value = loss_fn(y, p)
        value.backward()
        return float(value), p.grad.numpy()
    import jax

    variable = getattr(loss_fn, "running_counts", None)
    if variable is None:
        value, grad = jax.value_and_grad(lambda q: loss_fn(y, q))(p)
        return float(value), np.asarray(grad)

    # Keras's stateless pattern (what fit does on JAX): the state goes in, the new state comes out.
    def f(q, state):
        with keras.StatelessScope(state_mapping=[(variable, state)]) as scope:
            value = loss_fn(y, q)
        return value, scope.get_current_value(variable)

    (value, new_state), grad = jax.value_and_grad(f, has_aux=True)(p, variable.value)
    variable.assign(new_state)
    return float(value), np.asarray(grad)


def test_momentum_1_is_the_plain_loss_in_value_and_gradient():
    plain, running = anyloss_keras.F1Loss(), anyloss_keras.F1Loss(momentum=1)
    for seed in (1, 2):  # the first call fills the empty state, the second replaces a full one
        y, p = batches(seed)
        v_plain, g_plain = value_and_grad(plain, y, p)
        v_run, g_run = value_and_grad(running, y, p)
        assert v_run == pytest.approx(v_plain, abs=1e-6)
        np.testing.assert_allclose(g_run, g_plain, rtol=1e-4, atol=1e-6)
        assert np.abs(g_plain).max() > 1e-3  # a gradient worth comparing
        c = soft_counts64(y, p)
        np.testing.assert_allclose(state_of(running), c / c.sum(), rtol=1e-5, atol=1e-6)


def test_two_calls_follow_the_running_update_and_the_value_is_the_metric_at_the_running_counts():
    m = 0.5
    loss_fn = anyloss_keras.F1Loss(momentum=m, rescue=0.0)  # the running counts' gradient alone
    assert loss_fn.get_config()["momentum"] == m
    np.testing.assert_array_equal(state_of(loss_fn), np.zeros(4))
    (y1, p1), (y2, p2) = batches(11), batches(12, n=16)  # batches of different sizes mix as fractions
    c1, c2 = soft_counts64(y1, p1), soft_counts64(y2, p2)
    v1, _ = value_and_grad(loss_fn, y1, p1)
    u1 = c1 / c1.sum()  # an empty state is filled by the first batch, not blended with zeros
    np.testing.assert_allclose(state_of(loss_fn), u1, rtol=1e-5, atol=1e-6)
    assert v1 == pytest.approx(1 - f1_of(c1), abs=1e-5)
    v2, g2 = value_and_grad(loss_fn, y2, p2)
    u2 = (1 - m) * u1 + m * c2 / c2.sum()
    np.testing.assert_allclose(state_of(loss_fn), u2, rtol=1e-5, atol=1e-6)
    assert v2 == pytest.approx(1 - f1_of(c2.sum() * u2), abs=1e-5)
    assert v2 != pytest.approx(1 - f1_of(c2), abs=1e-3)  # not the batch's own loss
    # The gradient: the batch's soft counts weighted by F1's slope at the running counts.
    tn, fn, fp, tp = c2.sum() * u2
    den = 2 * tp + fp + fn
    slope = -np.array([0.0, -2 * tp / den**2, -2 * tp / den**2, 2 / den - 4 * tp / den**2])  # d(1 - F1)/dc
    y, p = y2[:, 0].astype("float64"), p2[:, 0].astype("float64")
    da = L * np.exp(-L * (p - 0.5)) / (1 + np.exp(-L * (p - 0.5))) ** 2  # dA/dp
    dc_dp = np.stack([-(1 - y) * da, -y * da, (1 - y) * da, y * da], axis=1)  # (n, 4)
    np.testing.assert_allclose(g2[:, 0], dc_dp @ slope, rtol=2e-3, atol=1e-6)


def test_reset_and_no_momentum():
    loss_fn = anyloss_keras.F1Loss(momentum=0.3)
    value_and_grad(loss_fn, *batches(3))
    assert state_of(loss_fn).sum() == pytest.approx(1.0, abs=1e-6)
    loss_fn.reset_running_counts()
    np.testing.assert_array_equal(state_of(loss_fn), np.zeros(4))
    plain = anyloss_keras.F1Loss()
    assert plain.running_counts is None and plain.running_metric is None
    assert "momentum" not in plain.get_config()  # configurations without running counts stay as they were
    with pytest.raises(RuntimeError, match="momentum"):
        plain.reset_running_counts()


def test_multiclass_state_has_a_row_per_class():
    rng = np.random.default_rng(4)
    loss_fn = anyloss_keras.AnyLoss("f1", task="multiclass", num_classes=3, from_logits=True, momentum=0.5)
    assert tuple(loss_fn.running_counts.shape) == (3, 4)
    value_and_grad(loss_fn, rng.integers(0, 3, 12), rng.normal(size=(12, 3)).astype("float32"))
    np.testing.assert_allclose(state_of(loss_fn).sum(axis=1), np.ones(3), rtol=1e-5)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (1.5, ValueError), (-0.1, ValueError),
                                        (float("nan"), ValueError), ("0.1", TypeError), (True, TypeError)])
def test_bad_momentum_fails_at_construction_naming_momentum(bad, error):
    with pytest.raises(error, match="momentum"):
        anyloss_keras.F1Loss(momentum=bad)


def test_per_class_state_needs_num_classes_and_the_metric_needs_momentum():
    with pytest.raises(ValueError, match="num_classes"):
        anyloss_keras.AnyLoss("f1", task="multiclass", momentum=0.1)
    with pytest.raises(TypeError, match="momentum"):
        anyloss_keras.RunningCounts(anyloss_keras.F1Loss())


def test_config_round_trip_keeps_momentum():
    loss_fn = anyloss_keras.FBetaLoss(beta=2.0, momentum=0.25)
    config = loss_fn.get_config()
    assert config["momentum"] == 0.25
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss_fn))
    assert type(restored) is anyloss_keras.FBetaLoss and restored.momentum == 0.25
    assert restored.get_config() == config and tuple(restored.running_counts.shape) == (4,)
    metric = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss_fn.running_metric))
    assert isinstance(metric, anyloss_keras.RunningCounts) and metric.name == "running_fbeta"


# fit on a tiny model


def _data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(96, 4)).astype("float32")
    y = (X[:, :1] + 0.5 * rng.normal(size=(96, 1)) > 0.7).astype("float32")  # about 1 positive in 4
    return X, y


def _fit(loss_fn, *, with_metric=True, epochs=2):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss_fn,
                  metrics=[loss_fn.running_metric] if with_metric else None)
    X, y = _data()
    history = model.fit(X, y, epochs=epochs, batch_size=16, verbose=0, shuffle=False)
    return model, history


def test_fit_updates_the_state_and_logs_the_running_metric():
    loss_fn = anyloss_keras.F1Loss(momentum=0.2)
    model, history = _fit(loss_fn)
    state = state_of(loss_fn)
    assert np.all(state > 0) and state.sum() == pytest.approx(1.0, abs=1e-5)
    # The log is the metric at the state the loss holds: one variable, not two copies.
    assert history.history["running_f1"][-1] == pytest.approx(f1_of(state), rel=1e-5)
    assert all(math.isfinite(v) for v in history.history["loss"])
    # Evaluation (compiled, no gradient) returns the batch's loss and leaves the state alone.
    X, y = _data()
    model.evaluate(X, y, batch_size=16, verbose=0)
    np.testing.assert_array_equal(state_of(loss_fn), state)


def test_fit_without_the_metric():
    loss_fn = anyloss_keras.F1Loss(momentum=0.2)
    if BACKEND == "jax":
        # Keras's JAX step carries only the model's and the metrics' variables: an error naming the fix,
        # not a silently empty state.
        with pytest.raises(RuntimeError, match=r"metrics=\[loss_fn.running_metric\]"):
            _fit(loss_fn, with_metric=False)
        return
    # TensorFlow and PyTorch train statefully: the same state with or without the metric.
    _fit(loss_fn, with_metric=False)
    carried = anyloss_keras.F1Loss(momentum=0.2)
    _fit(carried)
    assert np.all(state_of(loss_fn) > 0)
    np.testing.assert_allclose(state_of(loss_fn), state_of(carried), rtol=1e-6)


def test_save_and_load_keep_the_state_and_its_link_to_the_metric(tmp_path):
    loss_fn = anyloss_keras.F1Loss(momentum=0.2)
    model, _ = _fit(loss_fn, epochs=1)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.loss) is anyloss_keras.F1Loss and loaded.loss.momentum == 0.2
    np.testing.assert_array_equal(state_of(loaded.loss), state_of(loss_fn))
    # The compiled metric is the loaded loss's own (one object): training goes on from the saved
    # state (on JAX an unlinked metric would stop fit with the error above).
    before = state_of(loaded.loss)
    X, y = _data()
    history = loaded.fit(X, y, epochs=1, batch_size=16, verbose=0)
    after = state_of(loaded.loss)
    assert not np.array_equal(after, before)
    assert history.history["running_f1"][-1] == pytest.approx(f1_of(after), rel=1e-5)
