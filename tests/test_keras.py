"""anyloss_keras on the active Keras backend (KERAS_BACKEND): fit, jit, mixed precision, saving, checks.

The checks every backend shares (the float32 / float64 reference, extreme logits, degenerate batches with
gradients, shapes, sample weights, bad configuration) are in tests/test_backends.py.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.backend("keras")
keras = pytest.importorskip("keras")
anyloss_keras = pytest.importorskip("anyloss_keras")

BACKEND = keras.backend.backend()


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((30,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(1, activation="sigmoid")])


def _data():
    from anyloss_bench.data import load_dataset, standardize

    data = load_dataset("breast_cancer")
    return standardize(data.X)[0].astype("float32"), data.y.reshape(-1, 1)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_decreases_the_loss(jit_compile):
    if jit_compile and BACKEND == "torch":
        pytest.skip("jit_compile=True is not supported by Keras on the torch backend")
    X, y = _data()
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=anyloss_keras.F1Loss(), jit_compile=jit_compile)
    history = model.fit(X, y, epochs=5, batch_size=64, verbose=0,
                        sample_weight=np.where(y[:, 0] == 1, 2.0, 1.0))
    losses = history.history["loss"]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


def test_mixed_precision_gives_a_finite_loss():
    X, y = _data()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()
        model.compile(optimizer="adam", loss=anyloss_keras.F1Loss())
        history = model.fit(X, y, epochs=2, batch_size=64, verbose=0)
        assert all(math.isfinite(v) for v in history.history["loss"])
        logits_like = keras.ops.convert_to_tensor(np.array([0.0, 1.0, 0.5]), dtype="float16")
        assert math.isfinite(float(anyloss_keras.F1Loss()(np.array([0, 1, 1]), logits_like)))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_config_round_trips():
    loss_fn = anyloss_keras.AnyLoss(metric="fbeta", beta=2.0, scale=50.0, name="f2")
    config = loss_fn.get_config()
    assert config["metric"] == "fbeta" and config["beta"] == 2.0 and config["scale"] == 50.0
    assert config["name"] == "f2"
    clone = anyloss_keras.AnyLoss.from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(loss_fn)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is anyloss_keras.AnyLoss and restored.get_config() == config
    named = anyloss_keras.FBetaLoss(beta=0.5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(named))
    assert type(restored) is anyloss_keras.FBetaLoss and restored.metric_params == {"beta": 0.5}
    y, p = np.array([0, 1, 1]), np.array([0.3, 0.6, 0.2], "float32")
    assert float(restored(y, p)) == float(named(y, p))


def test_saved_model_loads_in_a_fresh_process(tmp_path):
    X, y = _data()
    model = _model()
    loss_fn = anyloss_keras.AnyLoss(metric="fbeta", beta=2, scale=50)
    model.compile(optimizer="adam", loss=loss_fn)
    model.fit(X[:64], y[:64], epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    expected = float(loss_fn(y[:50], model.predict(X[:50], verbose=0)))
    np.save(tmp_path / "X.npy", X[:50])
    np.save(tmp_path / "y.npy", y[:50])
    code = f"""
import numpy as np, keras, anyloss_keras
model = keras.models.load_model({path!r})
loss = model.loss
assert type(loss).__name__ == "AnyLoss", type(loss)
assert loss.metric == "fbeta" and loss.metric_params == {{"beta": 2}} and loss.scale == 50.0, loss.get_config()
X, y = np.load({str(tmp_path / "X.npy")!r}), np.load({str(tmp_path / "y.npy")!r})
print(float(loss(y, model.predict(X, verbose=0))))
"""
    env = {**os.environ, "KERAS_BACKEND": BACKEND}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-5, abs=1e-7)


@pytest.mark.slow
def test_f1_loss_beats_binary_crossentropy_on_imbalanced_breast_cancer():
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    from anyloss_bench.data import load_dataset, standardize

    data = load_dataset("breast_cancer")
    scores: dict[str, list[float]] = {"f1": [], "bce": []}
    # The same protocol as the JAX test: a logistic unit from zero weights, Adam 0.01,
    # 100 full-batch epochs, 5 splits.
    for seed in range(5):
        X_tr, X_va, y_tr, y_va = train_test_split(data.X, data.y, test_size=0.4, stratify=data.y,
                                                  random_state=seed)
        X_tr, X_va = (a.astype("float32") for a in standardize(X_tr, X_va))
        for name, loss_fn in [("f1", anyloss_keras.F1Loss()), ("bce", keras.losses.BinaryCrossentropy())]:
            keras.utils.set_random_seed(seed)
            model = keras.Sequential([keras.Input((30,)),
                                      keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros")])
            model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss_fn)
            model.fit(X_tr, y_tr, epochs=100, batch_size=len(y_tr), verbose=0)
            pred = model.predict(X_va, verbose=0)[:, 0] > 0.5
            scores[name].append(f1_score(y_va, pred, zero_division=0))
    assert np.mean(scores["f1"]) > np.mean(scores["bce"]) + 0.01, scores


def test_distributed_option_is_checked_and_serialized():
    loss = anyloss_keras.F1Loss(from_logits=True, distributed=True)
    config = loss.get_config()
    assert config["distributed"] is True
    assert anyloss_keras.F1Loss.from_config(config).distributed is True
    assert anyloss_keras.F1Loss().distributed is False
    with pytest.raises(TypeError, match="distributed must be True or False"):
        anyloss_keras.AnyLoss(distributed="yes")


# Logits passed as probabilities (from_logits=False, the default): the check inside compiled fit.

def _linear_model(activation=None):
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((4,)),
                             keras.layers.Dense(1, activation=activation, kernel_initializer="ones")])


def _wide_data():
    # Inputs of scale 100 and unit weights: a linear unit's outputs are far outside [0, 1].
    rng = np.random.default_rng(41)
    X = (100.0 * rng.normal(size=(32, 4))).astype("float32")
    return X, (X[:, :1] > 0).astype("float32")


def _fit(model, loss_fn, **compile_kwargs):
    X, y = _wide_data()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss_fn, **compile_kwargs)
    return model.fit(X, y, epochs=2, batch_size=16, verbose=0)


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_fit_on_logits_with_from_logits_false_fails_naming_from_logits(run_eagerly):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an error, not (only) a warning, on every backend's default compile
        with pytest.raises(Exception, match=r"from_logits=True") as info:
            _fit(_linear_model(), anyloss_keras.F1Loss(), run_eagerly=run_eagerly)
    assert "outside [0, 1]" in str(info.value)


def test_fit_on_probabilities_passes_the_check():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = _fit(_linear_model("sigmoid"), anyloss_keras.F1Loss())
    assert all(math.isfinite(v) for v in history.history["loss"])


def test_validate_false_turns_the_check_off():
    history = _fit(_linear_model(), anyloss_keras.F1Loss(validate=False))
    assert all(math.isfinite(v) for v in history.history["loss"])


def test_jit_compile_without_a_check_warns_once_instead():
    if BACKEND == "jax":
        pytest.skip("JAX checks under jit (tested above: jit is its default)")
    # TensorFlow's XLA drops assertions; torch.compile would break its graph on a value read.
    loss_fn = anyloss_keras.F1Loss()
    with pytest.warns(UserWarning, match=r"from_logits=True") as record:
        _fit(_linear_model(), loss_fn, jit_compile=True)
    assert sum("cannot check" in str(w.message) for w in record) == 1


def _compiled(fn):
    """``fn`` as a compiled step would run it: tf.function, jax.jit, or eager on PyTorch."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return fn


def test_compiled_check_accepts_0_and_1_and_rejects_nan_and_logits():
    y = np.array([[0.0], [1.0], [1.0], [0.0]], "float32")
    loss_fn = anyloss_keras.F1Loss()
    step = _compiled(lambda p: loss_fn(y, p))
    edges = np.array([[0.0], [1.0], [0.5], [1.0]], "float32")
    assert math.isfinite(float(step(edges)))
    for bad in (np.array([[0.0], [1.0], [np.nan], [0.2]], "float32"),
                np.array([[-0.1], [1.0], [0.5], [0.2]], "float32"),
                np.array([[0.0], [1.5], [0.5], [0.2]], "float32")):
        with pytest.raises(Exception, match=r"from_logits=True"):
            float(step(bad))
    assert math.isfinite(float(_compiled(lambda p: anyloss_keras.F1Loss(validate=False)(y, p))(
        np.array([[-3.0], [4.0], [0.5], [1.0]], "float32"))))


def test_eager_checks_cover_the_first_calls_and_are_not_config():
    loss_fn = anyloss_keras.F1Loss()
    y, p = np.array([0, 1, 1]), np.array([0.3, 0.6, 0.2], "float32")
    for _ in range(3):
        loss_fn(y, p)
    assert loss_fn._eager_checks_left == _checks().EAGER_CHECKS - 3
    assert "_eager_checks_left" not in loss_fn.get_config()
    clone = anyloss_keras.F1Loss.from_config(loss_fn.get_config())
    assert clone._eager_checks_left == _checks().EAGER_CHECKS


def _checks():
    from anyloss_keras import _checks

    return _checks
