"""al.best_threshold against a brute-force search over every candidate threshold (scikit-learn, float64 NumPy)."""

from __future__ import annotations

import functools
import math

import array_api_compat.numpy as npx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import anyloss_core as al

NAMESPACES = [
    pytest.param("numpy", marks=pytest.mark.backend("numpy")),
    pytest.param("array_api_strict", marks=pytest.mark.backend("array_api_strict")),
    pytest.param("torch", marks=pytest.mark.backend("torch")),
    pytest.param("jax", marks=pytest.mark.backend("jax")),
]
numpy_only = pytest.mark.backend("numpy")


@pytest.fixture(params=NAMESPACES)
def to_xp(request):
    """A converter from NumPy arrays to the backend's arrays (float64 where the backend has it)."""
    if request.param == "numpy":
        return lambda a: a
    if request.param == "array_api_strict":
        import array_api_strict

        return lambda a: array_api_strict.asarray(a)
    if request.param == "torch":
        import torch

        return lambda a: torch.asarray(a)
    import jax.numpy as jnp

    return lambda a: jnp.asarray(a)  # float32 unless jax_enable_x64


# ------------------------------------------------------------------------- the brute force


def _sklearn_metrics():
    sk = pytest.importorskip("sklearn.metrics")
    return {
        "f1": functools.partial(sk.f1_score, zero_division=0),
        "f2": functools.partial(sk.fbeta_score, beta=2.0, zero_division=0),
        "accuracy": sk.accuracy_score,
        "balanced_accuracy": sk.balanced_accuracy_score,
        "precision": functools.partial(sk.precision_score, zero_division=0),
        "recall": functools.partial(sk.recall_score, zero_division=0),
        "jaccard": functools.partial(sk.jaccard_score, zero_division=0),
        "mcc": lambda y, pred, sample_weight=None: (sk.matthews_corrcoef(y, pred, sample_weight=sample_weight) + 1) / 2,
    }


def _candidates(s: np.ndarray) -> list[float]:
    """Every threshold that gives a different prediction ``s > t``: each distinct score, and below all."""
    return [*np.unique(s)[::-1].tolist(), -math.inf]


def brute_force(fn, y, s, w=None) -> tuple[float, float]:
    """Best score over all cuts, and the largest candidate threshold reaching it (within 1e-12)."""
    values = [(t, float(fn(y, (s > t).astype(int), sample_weight=w))) for t in _candidates(s)]
    best = max(v for _, v in values)
    return best, next(t for t, v in values if v >= best - 1e-12)  # candidates run from largest


def f1_numpy(y, pred, sample_weight=None):
    """F1 in float64 NumPy, 0 when there is no positive and none predicted."""
    w = np.ones(len(y)) if sample_weight is None else sample_weight
    tp, fp, fn = (w * y * pred).sum(), (w * (1 - y) * pred).sum(), (w * y * (1 - pred)).sum()
    return 0.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def random_case(seed: int, n: int = 60, levels: int = 9, weighted: bool = False):
    """Labels, probabilities in (0, 1) on a coarse grid (many ties), optional weights."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0.05, 0.95) * levels) / levels
    s = np.clip(s, 0.01, 0.99)
    w = rng.uniform(0.1, 3.0, n) if weighted else None
    return y, s, w


def same_cut(s, t1, t2) -> bool:
    return bool(np.array_equal(s > t1, s > t2))


# ------------------------------------------------------------------------- against scikit-learn


@numpy_only
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("metric", ["f1", "f2", "accuracy", "balanced_accuracy", "precision", "recall", "jaccard",
                                    "mcc"])
def test_matches_sklearn_brute_force(metric, seed, weighted):
    y, s, w = random_case(seed, weighted=weighted)
    best, t_best = brute_force(_sklearn_metrics()[metric], y, s, w)
    got = al.best_threshold(y, s, metric, sample_weight=w)
    assert isinstance(got, al.Threshold)
    assert type(got.threshold) is float and type(got.score) is float
    assert got.score == pytest.approx(best, rel=1e-12, abs=1e-15)
    assert same_cut(s, got.threshold, t_best), "not the largest of the best thresholds"
    # The threshold reproduces the score through al.score (exactly without weights).
    again = float(al.score(metric, y, s, threshold=got.threshold, sample_weight=w))
    if w is None:
        assert again == got.score
    else:
        assert again == pytest.approx(got.score, rel=1e-12, abs=1e-15)


@numpy_only
@pytest.mark.parametrize("metric", sorted({*al.METRICS} - {"fbeta"}) + ["f0.5", "f2"])
def test_every_registered_metric_is_elementwise(metric):
    """The vectorised evaluation equals al.score at every candidate threshold (gmean, specificity, ...)."""
    y, s, w = random_case(7, weighted=True)
    fn = lambda y_, pred, sample_weight=None: al.score(metric, y_, pred, sample_weight=sample_weight)  # noqa: E731
    best, t_best = brute_force(fn, y, s, w)
    got = al.best_threshold(y, s, metric, sample_weight=w)
    assert got.score == pytest.approx(best, rel=1e-12, abs=1e-15)
    assert same_cut(s, got.threshold, t_best)


@numpy_only
def test_fbeta_with_beta():
    y, s, _ = random_case(11)
    sk = pytest.importorskip("sklearn.metrics")
    best, _ = brute_force(functools.partial(sk.fbeta_score, beta=0.7, zero_division=0), y, s)
    assert al.best_threshold(y, s, "fbeta", beta=0.7).score == pytest.approx(best, rel=1e-12)


# ------------------------------------------------------------------------- edge cases


@numpy_only
def test_all_negative_labels():
    y, s = np.zeros(5, dtype=int), np.array([0.2, 0.4, 0.4, 0.7, 0.9])
    assert al.best_threshold(y, s, "f1") == (0.9, 0.0)  # every cut ties at 0: the largest threshold
    assert al.best_threshold(y, s, "accuracy") == (0.9, 1.0)  # all negative
    assert al.best_threshold(y, s, "balanced_accuracy") == (0.9, 1.0)
    assert al.score("accuracy", y, s, threshold=0.9) == 1.0


@numpy_only
def test_all_positive_labels():
    y, s = np.ones(4, dtype=int), np.array([0.3, 0.5, 0.5, 0.8])
    t, f1 = al.best_threshold(y, s, "f1")
    assert f1 == 1.0 and 0.0 < t < 0.3  # every sample positive
    assert float(al.score("f1", y, s, threshold=t)) == 1.0


@numpy_only
@pytest.mark.parametrize("label", [0, 1])
def test_one_sample(label):
    y, s = np.array([label]), np.array([0.6])
    t, acc = al.best_threshold(y, s, "accuracy")
    assert acc == 1.0
    assert same_cut(s, t, 0.6 if label == 0 else -math.inf)
    assert float(al.score("accuracy", y, s, threshold=t)) == 1.0


@numpy_only
def test_all_scores_equal():
    y, s = np.array([0, 1, 1, 0, 1]), np.full(5, 0.4)
    t, f1 = al.best_threshold(y, s, "f1")  # only two cuts: all negative (0) or all positive (3/4)
    assert f1 == pytest.approx(0.75) and same_cut(s, t, -math.inf)


@numpy_only
def test_threshold_is_the_midpoint_between_distinct_scores():
    y, s = np.array([0, 1, 0, 1]), np.array([0.2, 0.6, 0.4, 0.8])
    t, f1 = al.best_threshold(y, s, "f1")
    assert f1 == 1.0 and t == pytest.approx(0.5, abs=1e-15)
    assert np.array_equal(s >= t, s > t)  # the rule >= and > agree on the given scores


@numpy_only
def test_adjacent_floats():
    """No number lies strictly between two adjacent scores: the lower one is the threshold (rule ``>``)."""
    a = 0.5
    b = float(np.nextafter(a, 1.0))
    y, s = np.array([0, 1]), np.array([a, b])
    t, f1 = al.best_threshold(y, s, "f1")
    assert f1 == 1.0 and t == a
    assert float(al.score("f1", y, s, threshold=t)) == 1.0


@numpy_only
def test_float32_threshold_is_exact_in_float32():
    y, s, _ = random_case(5)
    s32 = (s + np.random.default_rng(5).uniform(-0.01, 0.01, s.shape)).astype(np.float32)
    t, f1 = al.best_threshold(y, s32, "f1")
    assert float(np.float32(t)) == t  # computed in the scores' own dtype
    assert f1 == pytest.approx(brute_force(f1_numpy, y, s32.astype(np.float64))[0], rel=1e-12)
    assert f1 == float(al.score("f1", y, s32, threshold=t))


@numpy_only
def test_logits_give_the_same_cut_in_logit_units():
    y, s, _ = random_case(3)
    logits = np.log(s / (1 - s))
    tp, f1p = al.best_threshold(y, s, "balanced_accuracy")
    tl, f1l = al.best_threshold(y, logits, "balanced_accuracy")
    assert f1l == f1p
    assert np.array_equal(logits > tl, s > tp)


@numpy_only
def test_shapes_n1_and_integer_scores():
    y, s = np.array([[0], [1], [1]]), np.array([[1], [3], [2]])
    t, f1 = al.best_threshold(y, s, "f1")
    assert (t, f1) == (1.5, 1.0)


@numpy_only
def test_zero_weights_do_not_count():
    y, s = np.array([0, 1, 0, 1]), np.array([0.9, 0.7, 0.5, 0.3])
    w = np.array([0.0, 1.0, 1.0, 1.0])  # the confident false positive weighs nothing
    t, f1 = al.best_threshold(y, s, "f1", sample_weight=w)
    assert f1 == pytest.approx(0.8) and same_cut(s, t, -math.inf)
    assert float(al.score("f1", y, s, threshold=t, sample_weight=w)) == pytest.approx(f1)


# ------------------------------------------------------------------------- user metrics


@numpy_only
def test_user_metric_callable_and_registered():
    y, s, w = random_case(9, weighted=True)

    def npv(c, xp):  # negative predictive value
        return al.ratio(c.tn, c.tn + c.fn, xp)

    def npv_numpy(y_, pred, sample_weight=None):
        tn, fn = (sample_weight * (1 - y_) * (1 - pred)).sum(), (sample_weight * y_ * (1 - pred)).sum()
        return 0.0 if tn + fn == 0 else tn / (tn + fn)

    best, t_best = brute_force(npv_numpy, y, s, w)
    for metric in (npv, al.register_metric("test_thresholds_npv", npv, overwrite=True) and "test_thresholds_npv"):
        got = al.best_threshold(y, s, metric, sample_weight=w)
        assert got.score == pytest.approx(best, rel=1e-12)
        assert same_cut(s, got.threshold, t_best)


@numpy_only
def test_user_metric_with_a_parameter_and_a_constant_metric():
    y, s, _ = random_case(4)

    def weighted_recall(c, xp, *, alpha=0.5):
        return alpha * al.ratio(c.tp, c.tp + c.fn, xp) + (1 - alpha) * al.ratio(c.tn, c.tn + c.fp, xp)

    ba = al.best_threshold(y, s, "balanced_accuracy")
    assert al.best_threshold(y, s, weighted_recall, alpha=0.5) == ba
    assert al.best_threshold(y, s, lambda c, xp: 0.5) == (float(s.max()), 0.5)  # all tie: largest threshold


@numpy_only
def test_user_metric_outside_unit_interval_is_an_error():
    y, s, _ = random_case(4)
    with pytest.raises(ValueError, match="must lie in"):
        al.best_threshold(y, s, lambda c, xp: c.tp)


# ------------------------------------------------------------------------- argument checks


@numpy_only
@pytest.mark.parametrize("y,s,w,exc,match", [
    ([0, 1], [0.2, np.nan], None, ValueError, "y_score contains NaN"),
    ([0, 1], [0.2, np.inf], None, ValueError, "y_score must be finite"),
    ([], [], None, ValueError, "empty"),
    ([0, 1, 1], [0.2, 0.3], None, ValueError, r"y_true \(3,\) and y_score \(2,\)"),
    ([0, 2], [0.2, 0.3], None, ValueError, "binary labels"),
    ([0, np.nan], [0.2, 0.3], None, ValueError, "y_true contains NaN"),
    ([0, 1], [0.2, 0.3], [1.0, -1.0], ValueError, "non-negative"),
    ([0, 1], [0.2, 0.3], [1.0, np.nan], ValueError, "sample_weight contains NaN"),
    ([0, 1], [0.2, 0.3], [1.0, 1.0, 1.0], ValueError, "sample_weight"),
    ([[0, 1]], [[0.2, 0.3]], None, ValueError, r"shape \(n,\) or \(n, 1\)"),
    ([0, 1], ["a", "b"], None, TypeError, "y_score"),
])
def test_bad_inputs(y, s, w, exc, match):
    with pytest.raises(exc, match=match):
        al.best_threshold(np.asarray(y), np.asarray(s), sample_weight=None if w is None else np.asarray(w))


@numpy_only
def test_bad_metrics():
    y, s = np.array([0, 1]), np.array([0.2, 0.3])
    with pytest.raises(ValueError, match="unknown metric|'f11'"):
        al.best_threshold(y, s, "f11x")
    with pytest.raises(ValueError, match="needs beta"):
        al.best_threshold(y, s, "fbeta")
    with pytest.raises(TypeError, match="does not take"):
        al.best_threshold(y, s, "f1", beta=2.0)


# ------------------------------------------------------------------------- other namespaces


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("metric", ["f1", "gmean", "mcc", "balanced_accuracy"])
def test_namespaces_agree_with_numpy(to_xp, metric, weighted):
    y, s, w = random_case(13, weighted=weighted)
    expected = al.best_threshold(y, s, metric, sample_weight=w)
    got = al.best_threshold(to_xp(y), to_xp(s), metric, sample_weight=None if w is None else to_xp(w))
    assert got.score == pytest.approx(expected.score, rel=1e-5)
    assert same_cut(s, got.threshold, expected.threshold)
    t32 = float(np.float32(got.threshold))  # the scores may be float32 (JAX): exact there too
    assert same_cut(s.astype(np.float32), t32, expected.threshold)


# ------------------------------------------------------------------------- property


@st.composite
def labelled_scores(draw):
    n = draw(st.integers(1, 40))
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    grid = draw(st.booleans())  # a coarse grid makes many ties
    elements = st.integers(1, 9).map(lambda k: k / 10) if grid else st.floats(0.001, 0.999)
    s = draw(hnp.arrays(np.float64, n, elements=elements))
    w = draw(st.none() | hnp.arrays(np.float64, n, elements=st.floats(0.0, 5.0)))
    return y, s, w


@numpy_only
@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=labelled_scores(), metric=st.sampled_from(["f1", "accuracy", "balanced_accuracy", "gmean", "mcc",
                                                       "f2", "jaccard"]),
       probe=st.lists(st.floats(-0.1, 1.1), min_size=1, max_size=5))
def test_no_threshold_does_better(data, metric, probe):
    y, s, w = data
    got = al.best_threshold(y, s, metric, sample_weight=w)
    assert 0.0 <= got.score <= 1.0
    for t in [*probe, *s.tolist()]:
        weight = np.ones(len(y)) if w is None else w
        pred = s > t
        counts = al.Confusion(*(np.asarray(np.sum(weight * m)) for m in (
            (1 - y) * ~pred, y * ~pred, (1 - y) * pred, y * pred)))
        other = float(al.get_metric(metric)(counts, npx))
        assert got.score >= other - 1e-12
    if 0.0 < got.threshold < 1.0:
        again = float(al.score(metric, y, s, threshold=got.threshold, sample_weight=w))
        assert again == pytest.approx(got.score, rel=1e-12, abs=1e-15)
