"""Every backend against the shared cases: one test body per idea, run on each selected backend.

The ``backend`` fixture (tests/conftest.py) yields an adapter (tests/_backends.py) per backend the session
selects with ``ANYLOSS_TEST_BACKENDS``: the core on NumPy / array-api-strict, torch, JAX, Keras.  Each test
passes NumPy arrays and a configuration; the adapter calls the backend's loss with its own argument order.
What only one framework has (compile, jit, vmap, gradcheck, DDP, saving, the module API) stays in that
framework's test file.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from cases import CASES, SMALL_CASES, Batch, Case, reference_loss

import anyloss_core as al

needs = pytest.mark.needs


def _shapes(*shapes: tuple[int, ...]) -> str:
    """A pattern matching an error that names both shapes, in either order."""
    a, b = (re.escape(str(s)) for s in shapes)
    return f"{a}.*{b}|{b}.*{a}"


def _best_float(backend) -> tuple[str, float]:
    """The most precise float dtype of the backend in this process, and a relative tolerance for it."""
    return ("float64", 1e-12) if backend.has("float64") else ("float32", 1e-6)


# ---------------------------------------------------------------------------------------- the reference


# Overflow / invalid-value warnings on the way are failures too (the reference is exact without them).
@pytest.mark.filterwarnings("error::RuntimeWarning")
@needs("float64")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_float64_reference(backend, case):
    b = case.batch
    result = backend.loss(b.y, b.pred, case.metric, weight=b.weight, dtype="float64", **case.config)
    assert result.shape == () and result.dtype == "float64"
    assert result.value == pytest.approx(reference_loss(case), rel=1e-12, abs=1e-15)


@needs("grad", "float64")
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("metric", ["f1", "mcc", "gmean", "accuracy"])
def test_second_derivative_matches_the_float64_reference(backend, metric, from_logits):
    # A Hessian-vector product, a meta-gradient through an inner step or a gradient penalty differentiates the
    # gradient again; closed-form backwards must not pass for constants there.  The reference is the second
    # difference of the float64 formulas along a direction, near the threshold where the curvature is large.
    # The default rescue (0.1) adds gradient but no curvature on every backend (anyloss_core._rescue).
    rng = np.random.default_rng(41)
    n = 40
    y = (rng.random(n) < 0.4).astype(np.int64)
    z = rng.normal(0.0, 0.1, n)
    pred = z if from_logits else 1.0 / (1.0 + np.exp(-z))
    direction = rng.normal(0.0, 1.0, n)

    def reference(t):
        return reference_loss(Case(Batch("curvature", y, pred + t * direction, from_logits), metric))

    eps = 1e-4
    expected = (reference(eps) - 2 * reference(0.0) + reference(-eps)) / eps**2
    got = backend.curvature(y, pred, direction, metric, from_logits=from_logits)
    assert got == pytest.approx(expected, rel=1e-5)
    assert abs(expected) > 1.0  # the curvature is the loss's, not a rounding


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float32_is_close_to_the_reference(backend, case):
    b = case.batch
    result = backend.loss(b.y, b.pred, case.metric, weight=b.weight, dtype="float32", **case.config)
    assert result.shape == () and result.dtype == "float32"
    assert result.value == pytest.approx(reference_loss(case), abs=2e-5)


def test_the_input_default_is_the_frameworks(backend):
    # torch and JAX take logits by default (as BCEWithLogitsLoss and optax do), the core and Keras
    # probabilities (as keras.losses.BinaryCrossentropy does).
    rng = np.random.default_rng(33)
    y, pred = rng.integers(0, 2, 20), rng.uniform(0.05, 0.95, 20)  # valid as logits and as probabilities
    dtype, _ = _best_float(backend)
    default = backend.loss(y, pred, dtype=dtype).value
    # The same loss: equal up to the summation order a GPU compiler may pick for each call (1e-7 on JAX).
    same = backend.loss(y, pred, dtype=dtype, from_logits=backend.input_default == "logits").value
    other = backend.loss(y, pred, dtype=dtype, from_logits=backend.input_default != "logits").value
    assert default == pytest.approx(same, rel=1e-6, abs=0) and abs(default - other) > 1e-3


def test_integer_weights_count_samples_as_repeats(backend):
    rng = np.random.default_rng(32)
    y, pred, w = rng.integers(0, 2, 12), rng.uniform(0.05, 0.95, 12), rng.integers(0, 3, 12)
    y[:2] = [0, 1]
    w[:2] = 1
    dtype, rel = _best_float(backend)
    weighted = backend.loss(y, pred, "gmean", weight=w.astype(np.float64), dtype=dtype, from_logits=False).value
    repeated = backend.loss(np.repeat(y, w), np.repeat(pred, w), "gmean", dtype=dtype, from_logits=False).value
    assert weighted == pytest.approx(repeated, rel=rel)
    # The weights weight the counts, not the loss (Keras's default would be "loss times mean weight").
    unweighted = backend.loss(y, pred, "gmean", dtype=dtype, from_logits=False).value
    assert weighted != pytest.approx(unweighted * w.mean(), abs=1e-4)


# ------------------------------------------------------------------------- finite where it is hard


EXTREME_Y = np.array([0, 1, 0, 1, 1, 0])
EXTREME_LOGITS = np.array([-1e4, 1e4, 1e4, -1e4, 0.0, -1000.0])


@needs("grad")
@pytest.mark.parametrize("approximation", al.APPROXIMATIONS)
@pytest.mark.parametrize("metric", ["accuracy", "f1", "gmean", "balanced_accuracy", "mcc", "jaccard"])
def test_extreme_logits_give_a_finite_loss_and_gradient(backend, float_dtype, metric, approximation):
    # jit=True: JAX under jax.jit, as it trains; float16 / bfloat16 where the framework has them.
    result = backend.value_and_grad(EXTREME_Y, EXTREME_LOGITS, metric, dtype=float_dtype, from_logits=True,
                                    approximation=approximation, jit=True)
    assert np.isfinite(result.value) and np.isfinite(result.grad).all(), (result.value, result.grad)
    assert result.dtype == backend.loss_dtype(float_dtype)
    assert result.grad_dtype == float_dtype and result.grad.shape == EXTREME_LOGITS.shape


@needs("grad")
@pytest.mark.parametrize("case", SMALL_CASES, ids=lambda c: c.id)
def test_small_and_degenerate_batches_have_finite_gradients(backend, case):
    # No positives, no negatives, one sample, exact 0/1 probabilities, +-1e4 logits, (n, 1) columns.
    b = case.batch
    result = backend.value_and_grad(b.y, b.pred, case.metric, weight=b.weight, dtype="float32", **case.config)
    assert np.isfinite(result.value) and np.isfinite(result.grad).all(), (result.value, result.grad)
    assert result.grad.shape == np.shape(b.pred)
    assert result.value == pytest.approx(reference_loss(case), abs=2e-5)


# ------------------------------------------------------------------------------------------ shapes


def test_flat_and_column_shapes_agree_without_broadcasting(backend):
    rng = np.random.default_rng(31)
    y, pred = rng.integers(0, 2, 10), rng.uniform(0.05, 0.95, 10)
    flat = backend.loss(y, pred, dtype="float32", from_logits=False)
    for y_, pred_ in [(y, pred[:, None]), (y[:, None], pred), (y[:, None], pred[:, None])]:
        got = backend.loss(y_, pred_, dtype="float32", from_logits=False)
        assert got.shape == () and got.value == flat.value, (y_.shape, pred_.shape)
    # A row against a column would broadcast to (10, 10) counts; a short column is a bug in the caller.
    for y_, pred_ in [(y[:, None], pred[None, :]), (y[:, None], pred[:9])]:
        with pytest.raises(ValueError, match=_shapes(y_.shape, pred_.shape)):
            backend.loss(y_, pred_, dtype="float32", from_logits=False)


# ------------------------------------------------------------------------------------------ errors


_Y, _P = np.array([0, 1, 1, 0]), np.array([0.2, 0.6, 0.7, 0.1])
BAD_CONFIGS = [
    pytest.param({"metric": "f_one"}, "unknown metric 'f_one'", id="unknown-metric"),
    pytest.param({"metric": "fbeta", "beta": -1.0}, "beta", id="negative-beta"),
    pytest.param({"metric": "fbeta", "beta": 0.0}, "beta", id="zero-beta"),
    pytest.param({"metric": "f1", "scale": -3.0}, "scale", id="negative-scale"),
    pytest.param({"metric": "f1", "approximation": "sigmoid"}, "approximation", id="unknown-approximation"),
]


@needs("value_checks")
def test_labels_other_than_0_and_1_are_refused(backend):
    with pytest.raises(ValueError, match="y_true"):
        backend.loss(np.array([0, 1, 2, 1]), _P, dtype="float32", from_logits=False)


@pytest.mark.parametrize("config,words", BAD_CONFIGS)
def test_a_bad_configuration_is_refused_naming_it(backend, config, words):
    with pytest.raises(ValueError, match=words):
        backend.loss(_Y, _P, dtype="float32", from_logits=False, **config)


@needs("classes")
@pytest.mark.parametrize("config,words", BAD_CONFIGS)
def test_loss_classes_refuse_a_bad_configuration_at_construction(backend, config, words):
    with pytest.raises(ValueError, match=words):
        backend.build(**config)


@needs("dtype_as_given")
def test_integer_predictions_are_refused(backend):
    # Keras is left out: its Loss casts predictions to its own dtype before the loss sees them.
    with pytest.raises(TypeError, match="floating"):
        backend.loss(_Y, np.array([0, 1, 1, 0]), dtype="int32")
