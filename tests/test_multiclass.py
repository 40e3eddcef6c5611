"""Multi-class and multi-label AnyLoss: per-class counts against a float64 NumPy reference, hard scores
against scikit-learn, errors, degenerate inputs, and every adapter."""

from __future__ import annotations

import os

import numpy as np
import pytest

import anyloss_core as al

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference_counts(Y, Yh, w=None):
    """Per-class soft counts, the module docstring's four sums written out."""
    w = np.ones(len(Y)) if w is None else w
    tp = (w[:, None] * Y * Yh).sum(0)
    fp = (w[:, None] * (1 - Y) * Yh).sum(0)
    fn = (w[:, None] * Y * (1 - Yh)).sum(0)
    tn = (w[:, None] * (1 - Y) * (1 - Yh)).sum(0)
    return tn, fn, fp, tp


def reference_f1_loss(Y, Yh, w=None, average="macro"):
    tn, fn, fp, tp = reference_counts(Y, Yh, w)
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    den = 2 * tp + fp + fn
    f1 = np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 0.0)
    if average == "weighted":
        support = tp + fn
        return 1 - (support * f1).sum() / support.sum()
    return 1 - (f1 if average == "none" else f1.mean())


RNG = np.random.default_rng(7)
N, C = 60, 5
LOGITS = RNG.normal(scale=2.0, size=(N, C))
IDS = RNG.integers(0, C - 1, N)  # class C-1 absent from the batch
ONE_HOT = np.eye(C)[IDS]
WEIGHTS = RNG.uniform(0.2, 2.0, N)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", "none"])
@pytest.mark.parametrize("approximation", ["anyloss", "softmax", "ovr"])
def test_multiclass_loss_matches_the_float64_reference(average, approximation):
    probs = _softmax(LOGITS)
    Yh = probs if approximation in ("anyloss", "softmax") else 1 / (1 + np.exp(-73.0 * (probs - 0.5)))
    expected = reference_f1_loss(ONE_HOT, Yh, WEIGHTS, average)
    for y in (IDS, IDS[:, None], ONE_HOT):
        got = al.anyloss(y, LOGITS, "f1", task="multiclass", average=average, approximation=approximation,
                         from_logits=True, sample_weight=WEIGHTS)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    from_probs = al.anyloss(IDS, probs, "f1", task="multiclass", average=average, approximation=approximation,
                            sample_weight=WEIGHTS)
    np.testing.assert_allclose(from_probs, expected, rtol=1e-9, atol=1e-12)


def test_multilabel_loss_and_ignore_index_match_the_reference():
    multi_hot = (RNG.random((N, C)) < 0.3).astype(float)
    Yh = 1 / (1 + np.exp(-73.0 * (1 / (1 + np.exp(-LOGITS)) - 0.5)))
    got = al.anyloss(multi_hot, LOGITS, "f1", task="multilabel", from_logits=True)
    np.testing.assert_allclose(got, reference_f1_loss(multi_hot, Yh), rtol=1e-12)
    ids = IDS.copy()
    ids[:10] = -100
    keep = ids != -100
    got = al.anyloss(ids, LOGITS, "f1", task="multiclass", from_logits=True, ignore_index=-100)
    np.testing.assert_allclose(got, reference_f1_loss(ONE_HOT[keep], _softmax(LOGITS)[keep]), rtol=1e-12)


@pytest.mark.parametrize("metric", ["f1", "precision", "recall", "jaccard", "fbeta"])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_hard_multiclass_scores_equal_sklearn(metric, average):
    pred = LOGITS.argmax(1)  # predicts class C-1 sometimes, which is absent from y_true
    params = {"beta": 2.0} if metric == "fbeta" else {}
    fn = {"f1": sklearn_metrics.f1_score, "precision": sklearn_metrics.precision_score,
          "recall": sklearn_metrics.recall_score, "jaccard": sklearn_metrics.jaccard_score,
          "fbeta": sklearn_metrics.fbeta_score}[metric]
    expected = fn(IDS, pred, average=average, labels=range(C), zero_division=0, **params)
    got = al.score(metric, IDS, LOGITS, task="multiclass", average=average, **params)
    assert float(got) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    weighted = fn(IDS, pred, average=average, labels=range(C), zero_division=0, sample_weight=WEIGHTS, **params)
    got = al.score(metric, IDS, LOGITS, task="multiclass", average=average, sample_weight=WEIGHTS, **params)
    assert float(got) == pytest.approx(weighted, rel=1e-12, abs=1e-15)


def test_hard_multiclass_accuracy_balanced_accuracy_and_multilabel_equal_sklearn():
    pred = LOGITS.argmax(1)
    assert float(al.score("accuracy", IDS, LOGITS, task="multiclass")) == pytest.approx(
        sklearn_metrics.accuracy_score(IDS, pred), rel=1e-14)
    assert float(al.score("balanced_accuracy", IDS, LOGITS, task="multiclass")) == pytest.approx(
        sklearn_metrics.balanced_accuracy_score(IDS, pred), rel=1e-14)
    assert float(al.score("f1", IDS, pred, task="multiclass", num_classes=C)) == pytest.approx(
        sklearn_metrics.f1_score(IDS, pred, average="macro", labels=range(C), zero_division=0), rel=1e-14)
    assert float(al.score("f1", IDS, pred.astype(float), task="multiclass", num_classes=C)) == pytest.approx(
        sklearn_metrics.f1_score(IDS, pred, average="macro", labels=range(C), zero_division=0), rel=1e-14)
    truth = (RNG.random((N, C)) < 0.3).astype(int)
    probs = 1 / (1 + np.exp(-LOGITS))
    for average in ("macro", "micro", "weighted"):
        expected = sklearn_metrics.f1_score(truth, probs > 0.5, average=average, zero_division=0)
        assert float(al.score("f1", truth, probs, task="multilabel", average=average)) == pytest.approx(expected)


@pytest.mark.parametrize(
    "kwargs,error,words",
    [
        ({"y_true": np.array([0, 1, 5]), "y_pred": np.zeros((3, 4))}, ValueError, "class id 5 is out of range for 4"),
        ({"y_true": np.array([0, 1, -1]), "y_pred": np.zeros((3, 4))}, ValueError, "class id -1"),
        # wide ids are never narrowed to compare with ignore_index: 2**32 + 1 is out of range, not class 1
        ({"y_true": np.array([0, 1, 2**32 + 1], dtype=np.uint64), "y_pred": np.zeros((3, 4)), "ignore_index": -100},
         ValueError, "class id 4294967297 is out of range"),
        ({"y_true": np.array([0, 1, 2]), "y_pred": np.zeros((3, 4)), "num_classes": 3}, ValueError,
         "4 classes (shape (3, 4)) but num_classes=3"),
        ({"y_true": np.array([0, 1]), "y_pred": np.zeros((3, 4))}, ValueError, "class ids of shape (n,)"),
        ({"y_true": np.zeros((3, 4)), "y_pred": np.zeros(3)}, ValueError, "shape (n, C)"),
        ({"y_true": np.eye(4)[:3], "y_pred": np.zeros((3, 4)), "ignore_index": 0}, ValueError, "ignore_index"),
        ({"y_true": np.array([0.0, 1.0, 2.0]), "y_pred": np.zeros((3, 4))}, TypeError, "must be integers"),
        ({"y_true": np.array([0, 1, 2]), "y_pred": np.zeros((3, 4)), "task": "multi"}, ValueError, "unknown task"),
        ({"y_true": np.array([0, 1, 2]), "y_pred": np.zeros((3, 4)), "average": "samples"}, ValueError,
         "unknown average"),
    ],
)
def test_bad_multiclass_input_names_the_problem(kwargs, error, words):
    kwargs = {"task": "multiclass", **kwargs}
    with pytest.raises(error, match=None) as info:
        al.anyloss(kwargs.pop("y_true"), kwargs.pop("y_pred"), "f1", from_logits=True, **kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize("id_dtype", ["uint8", "int8", "int16", "int32", "int64"])
def test_class_ids_of_any_integer_dtype_give_the_reference_loss(backend, id_dtype):
    # Image pipelines hand over uint8 masks and int32 ids: torch's gather took int64 indices only, and
    # TensorFlow's range has no uint8 kernel; both once failed on such ids.
    config = {"task": "multiclass", "num_classes": C, "from_logits": True}
    expected = reference_f1_loss(ONE_HOT, _softmax(LOGITS))
    ids = IDS.astype(id_dtype)
    if not backend.has("grad"):
        assert backend.loss(ids, LOGITS, **config).value == pytest.approx(expected, rel=1e-12)
        return
    got, as_int64 = backend.value_and_grad(ids, LOGITS, **config), backend.value_and_grad(IDS, LOGITS, **config)
    assert got.value == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(got.grad, as_int64.grad, rtol=1e-6, atol=1e-9)
    assert np.abs(got.grad).sum() > 0


@pytest.mark.parametrize("id_dtype,classes,ignore", [("uint8", 300, None), ("int8", 200, -100)])
def test_narrow_class_ids_with_more_classes_than_their_dtype_counts(backend, id_dtype, classes, ignore):
    # A class range in the ids' dtype wraps: uint8 classes 256-299 matched ids 0-43 (a silently wrong loss on
    # NumPy, JAX and Keras; an IndexError on torch's plain path); array-api-strict raised an overflow comparing
    # int8 or uint8 ids with the class count.  With a gradient, n * C >= 2**15 takes torch's closed form.
    rng = np.random.default_rng(3)
    n = 120
    logits, ids = rng.normal(size=(n, classes)), rng.integers(0, 100, n)
    if ignore is not None:
        ids[:15] = ignore
    keep = ids != (ignore if ignore is not None else -1)
    expected = reference_f1_loss(np.eye(classes)[ids[keep]], _softmax(logits)[keep])
    config = {"task": "multiclass", "num_classes": classes, "from_logits": True, "ignore_index": ignore}
    if not backend.has("grad"):
        assert backend.loss(ids.astype(id_dtype), logits, **config).value == pytest.approx(expected, rel=1e-12)
        return
    got, as_int64 = backend.value_and_grad(ids.astype(id_dtype), logits, **config), backend.value_and_grad(
        ids, logits, **config)
    assert got.value == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(got.grad, as_int64.grad, rtol=1e-6, atol=1e-12)


# --- every adapter ---------------------------------------------------------------------------------


def _expected(average="macro"):
    return reference_f1_loss(ONE_HOT, _softmax(LOGITS), None, average)


@pytest.mark.backend("torch")
def test_torch_multiclass_value_gradient_extremes_and_large_c():
    import torch

    import anyloss_torch

    x = torch.tensor(LOGITS, requires_grad=True)
    loss_fn = anyloss_torch.AnyLoss("f1", task="multiclass", num_classes=C)
    loss = loss_fn(x, torch.tensor(IDS))
    loss.backward()
    np.testing.assert_allclose(float(loss), _expected(), rtol=1e-12)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    per_class = anyloss_torch.anyloss(x.detach(), torch.tensor(IDS), "f1", task="multiclass", average="none")
    np.testing.assert_allclose(per_class.numpy(), _expected("none"), rtol=1e-12)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        z = (torch.tensor(np.sign(LOGITS)) * 1e4).to(dtype).requires_grad_(True)
        value = anyloss_torch.anyloss(z, torch.tensor(IDS), "f1", task="multiclass")
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(z.grad).all(), dtype
    # Linear in n x C: a step at n = 1e5, C = 1000.
    z = torch.randn(100_000, 1000, requires_grad=True)
    anyloss_torch.anyloss(z, torch.randint(0, 1000, (100_000,)), "f1", task="multiclass").backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.backend("jax")
def test_jax_multiclass_jit_grad_and_extremes():
    import jax
    import jax.numpy as jnp

    import anyloss_jax

    def loss(z, y):
        return anyloss_jax.anyloss(z, y, "f1", task="multiclass", num_classes=C, validate=False)

    value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(LOGITS, jnp.float32), jnp.asarray(IDS))
    np.testing.assert_allclose(float(value), _expected(), rtol=1e-5)
    assert bool(jnp.all(jnp.isfinite(grad)))
    for dtype in (jnp.float16, jnp.bfloat16, jnp.float32):
        z = jnp.asarray(np.sign(LOGITS) * 1e4, dtype)
        value, grad = jax.value_and_grad(loss)(z, jnp.asarray(IDS))
        assert bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(grad))), dtype
    # Concrete labels closed over by a jitted function, value checks on (the default).
    labels, weights = jnp.asarray(IDS), jnp.asarray(WEIGHTS, jnp.float32)
    g = jax.jit(jax.grad(lambda z: anyloss_jax.anyloss(z, labels, "f1", task="multiclass", sample_weight=weights)))(
        jnp.asarray(LOGITS, jnp.float32))
    assert bool(jnp.all(jnp.isfinite(g)))
    multi_hot = jnp.asarray((RNG.random((N, C)) < 0.3).astype(np.float32))
    g = jax.grad(lambda z: anyloss_jax.anyloss(z, multi_hot, "f1", task="multilabel", average="micro"))(
        jnp.asarray(LOGITS, jnp.float32))
    assert bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.backend("keras")
def test_keras_multiclass_value_config_and_fit():
    import keras

    import anyloss_keras

    loss_fn = anyloss_keras.AnyLoss("f1", task="multiclass", from_logits=True, num_classes=C)
    np.testing.assert_allclose(float(loss_fn(IDS, LOGITS.astype("float32"))), _expected(), rtol=1e-5)
    restored = anyloss_keras.AnyLoss.from_config(loss_fn.get_config())
    assert restored.task == "multiclass" and restored.num_classes == C
    model = keras.Sequential([keras.Input((C,)), keras.layers.Dense(C)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss_fn,
                  jit_compile=os.environ.get("KERAS_BACKEND") != "torch")
    history = model.fit(LOGITS.astype("float32"), IDS, epochs=15, batch_size=N, verbose=0).history["loss"]
    assert all(np.isfinite(history)) and history[-1] < history[0]



@pytest.mark.backend("keras")
def test_keras_multiclass_float64_matches_the_reference_to_1e12():
    import keras

    import anyloss_keras

    if keras.backend.backend() == "jax" and not __import__("jax").config.jax_enable_x64:
        pytest.skip("float64 needs JAX_ENABLE_X64 on the JAX backend")
    for average in ("macro", "weighted"):
        loss_fn = anyloss_keras.AnyLoss("f1", task="multiclass", average=average, from_logits=True, dtype="float64")
        np.testing.assert_allclose(float(loss_fn(IDS, LOGITS)), _expected(average), rtol=1e-12)
