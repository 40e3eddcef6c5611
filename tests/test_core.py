"""anyloss_core on NumPy and array-api-strict against the float64 reference and scikit-learn."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from cases import CASES, Case, reference_counts, reference_loss, reference_metric

import anyloss_core as al
from anyloss_core.adapters import LossConfig

NAMESPACES = [
    pytest.param("numpy", marks=pytest.mark.backend("numpy")),
    pytest.param("array_api_strict", marks=pytest.mark.backend("array_api_strict")),
]


@pytest.fixture(params=NAMESPACES)
def xp(request):
    if request.param == "numpy":
        import array_api_compat.numpy as xp_numpy

        return xp_numpy
    import array_api_strict

    return array_api_strict


def to_xp(xp, a, dtype=None):
    if a is None:
        return None
    arr = xp.asarray(np.asarray(a))
    return arr if dtype is None else xp.astype(arr, dtype)


def to_float(x) -> float:
    return float(np.asarray(x)) if not hasattr(x, "__float__") else float(x)


def assert_close(actual, expected: float, rtol: float, xp=None, dtype=None) -> None:
    """Value within ``rtol``, and (when ``xp`` is given) the namespace, dtype and 0-d shape too."""
    if xp is not None:
        assert tuple(actual.shape) == (), f"expected a 0-d array, got shape {actual.shape}"
        if dtype is not None:
            assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {dtype}"
    value = to_float(actual)
    assert math.isfinite(value)
    # abs: "1 - metric" carries an absolute rounding error of ~1e-16 in both the core and
    # the reference, which dominates the relative error of a loss near 0.
    assert value == pytest.approx(expected, rel=rtol, abs=1e-15), f"{value!r} != reference {expected!r}"


def core_loss(case: Case, xp, dtype=None):
    b = case.batch
    return al.anyloss(
        to_xp(xp, b.y),
        to_xp(xp, b.pred, dtype or xp.float64),
        case.metric,
        from_logits=b.from_logits,
        scale=case.scale,
        approximation=case.approximation,
        sample_weight=to_xp(xp, b.weight),
        **case.kwargs,
    )


# ----------------------------------------------------------------------- reference values


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_loss_matches_float64_reference(case, xp):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings from the core
        loss = core_loss(case, xp)
    assert_close(loss, reference_loss(case), 1e-12, xp=xp, dtype=xp.float64)


@pytest.mark.parametrize("case", [c for c in CASES if c.metric == "f1"], ids=lambda c: c.id)
def test_soft_counts_match_reference_and_sum_to_total(case, xp):
    b = case.batch
    c = al.soft_confusion(
        to_xp(xp, b.y),
        to_xp(xp, b.pred),
        from_logits=b.from_logits,
        scale=case.scale,
        approximation=case.approximation,
        sample_weight=to_xp(xp, b.weight),
    )
    assert isinstance(c, al.Confusion)
    for got, want in zip(c, reference_counts(case), strict=True):
        assert to_float(got) == pytest.approx(want, rel=1e-12, abs=1e-13)
    total = len(b.y) if b.weight is None else float(np.sum(b.weight))
    assert sum(to_float(v) for v in c) == pytest.approx(total, rel=1e-12)


class _LabelSums(al.adapters.FastPaths):
    """The Array API steps, with the counts taken from the label sums (as torch's fast paths take them)."""

    __slots__ = ()
    counts_from_label_sums = True


@pytest.mark.parametrize("label_sums", [False, True], ids=["four-dots", "label-sums"])
@pytest.mark.parametrize("case", [c for c in CASES if c.metric == "f1" and c.approximation != "identity"],
                         ids=lambda c: c.id)
def test_counts_as_floats_are_python_floats_of_the_reference_counts(case, label_sums, monkeypatch):
    import array_api_compat.numpy as xp

    from anyloss_core import _fast_paths

    if label_sums:  # registered for NumPy for this test only
        monkeypatch.setattr(_fast_paths, "_REGISTERED", [(lambda ns: ns is xp, _LabelSums())])
    b = case.batch
    arguments = (to_xp(xp, b.y), to_xp(xp, b.pred))
    options = dict(from_logits=b.from_logits, scale=case.scale, approximation=case.approximation,
                   sample_weight=to_xp(xp, b.weight), xp=xp)
    counts, pullback = al.soft_confusion_with_pullback(*arguments, counts_as_floats=True, **options)
    arrays, array_pullback = al.soft_confusion_with_pullback(*arguments, **options)
    assert all(type(v) is float for v in counts)
    for got, want in zip(counts, reference_counts(case), strict=True):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    g = al.Confusion(0.25, -0.5, 0.75, -1.0)
    np.testing.assert_array_equal(pullback(g), array_pullback(g))  # the pullback does not depend on the form


@pytest.mark.parametrize("case", [c for c in CASES if c.approximation == "anyloss" and c.scale == 73.0],
                         ids=lambda c: c.id)
def test_float32_close_to_reference(case, xp):
    loss = core_loss(case, xp, dtype=xp.float32)
    assert loss.dtype == xp.float32
    assert to_float(loss) == pytest.approx(reference_loss(case), abs=2e-5)


def test_float16_inputs_accumulate_in_float32():
    # 70,000 ones: a float16 sum would stop at 2048 (and overflow past 65504).
    y = np.ones(70_000, np.int64)
    p = np.full(70_000, 0.9, np.float16)
    c = al.soft_confusion(y, p)
    assert c.tp.dtype == np.float32
    assert float(c.tp) == pytest.approx(70_000 * (1 / (1 + math.exp(-73 * 0.4))), rel=1e-5)
    loss = al.f1_loss(y, p)
    assert loss.dtype == np.float32 and math.isfinite(float(loss))


def test_column_and_flat_shapes_agree(xp):
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 25), rng.uniform(size=25)
    flat = to_float(al.f1_loss(to_xp(xp, y), to_xp(xp, p)))
    for yy, pp in [(y[:, None], p), (y, p[:, None]), (y[:, None], p[:, None])]:
        assert to_float(al.f1_loss(to_xp(xp, yy), to_xp(xp, pp))) == pytest.approx(flat, rel=1e-15)


def test_segmentation_shapes_flatten(xp):
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 2, (2, 4, 5)), rng.uniform(size=(2, 4, 5, 1))
    w = rng.uniform(size=2)
    got = to_float(al.f1_loss(to_xp(xp, y), to_xp(xp, p), sample_weight=to_xp(xp, w)))
    want = to_float(al.f1_loss(y.reshape(-1), p.reshape(-1), sample_weight=np.repeat(w, 20)))
    assert got == pytest.approx(want, rel=1e-14)


def test_sample_weight_weights_the_counts_not_the_loss():
    # Integer weights are the same as repeating samples.
    rng = np.random.default_rng(2)
    y, p = rng.integers(0, 2, 30), rng.uniform(size=30)
    w = rng.integers(0, 4, 30)
    weighted = al.gmean_loss(y, p, sample_weight=w.astype(np.float64))
    repeated = al.gmean_loss(np.repeat(y, w), np.repeat(p, w))
    assert float(weighted) == pytest.approx(float(repeated), rel=1e-13)
    scaled = al.gmean_loss(y, p, sample_weight=7.0 * w)
    assert float(scaled) == pytest.approx(float(weighted), rel=1e-13)


def test_named_losses_equal_anyloss():
    rng = np.random.default_rng(3)
    y, z = rng.integers(0, 2, 40), rng.normal(size=40)
    for fn, name in [
        (al.accuracy_loss, "accuracy"),
        (al.f1_loss, "f1"),
        (al.gmean_loss, "gmean"),
        (al.balanced_accuracy_loss, "balanced_accuracy"),
    ]:
        assert float(fn(y, z, from_logits=True)) == float(al.anyloss(y, z, name, from_logits=True))
    assert float(al.fbeta_loss(y, z, beta=2.0, from_logits=True)) == float(
        al.anyloss(y, z, "fbeta", beta=2.0, from_logits=True)
    )
    assert float(al.fbeta_loss(y, z, from_logits=True)) == float(al.f1_loss(y, z, from_logits=True))


def test_logits_and_probabilities_agree():
    rng = np.random.default_rng(4)
    y, z = rng.integers(0, 2, 50), rng.normal(0, 2, 50)
    p = 1 / (1 + np.exp(-z))
    for approx in al.APPROXIMATIONS:
        a = float(al.f1_loss(y, z, from_logits=True, approximation=approx))
        b = float(al.f1_loss(y, p, approximation=approx))
        assert a == pytest.approx(b, rel=1e-12)


def test_standard_sigmoid_matches_native_fast_path():
    # The standard form (NumPy) and the native torch/jax sigmoid paths are compared in
    # the backend sessions; here the standard form against the textbook formula.
    import array_api_compat.numpy as xp

    from anyloss_core._namespace import sigmoid

    x = np.linspace(-700, 700, 2001)
    with np.errstate(over="ignore"):
        expected = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(sigmoid(x, xp), expected, rtol=1e-15, atol=0)


# ----------------------------------------------------------------------- hard metrics vs sklearn


def _label_sets():
    rng = np.random.default_rng(5)
    sets = []
    for i in range(30):
        n = int(rng.integers(1, 60))
        sets.append((f"random{i}", rng.integers(0, 2, n), rng.uniform(size=n)))
    sets += [
        ("no-positives", np.zeros(10, int), rng.uniform(size=10)),
        ("no-negatives", np.ones(10, int), rng.uniform(size=10)),
        ("no-predicted-positives", rng.integers(0, 2, 10), rng.uniform(0, 0.4, 10)),
        ("all-predicted-positive", rng.integers(0, 2, 10), rng.uniform(0.6, 1, 10)),
        ("one-sample", np.array([1]), np.array([0.3])),
        ("nothing-at-all", np.zeros(5, int), np.zeros(5)),
    ]
    return sets


LABEL_SETS = _label_sets()


@pytest.mark.parametrize("name,y,p", LABEL_SETS, ids=[s[0] for s in LABEL_SETS])
def test_hard_scores_equal_sklearn(name, y, p):
    sk = pytest.importorskip("sklearn.metrics")
    yp = (p > 0.5).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's UndefinedMetricWarning on purpose-made 0/0
        expected = {
            "accuracy": sk.accuracy_score(y, yp),
            "f1": sk.f1_score(y, yp, zero_division=0),
            "precision": sk.precision_score(y, yp, zero_division=0),
            "recall": sk.recall_score(y, yp, zero_division=0),
            "jaccard": sk.jaccard_score(y, yp, zero_division=0),
            "balanced_accuracy": sk.balanced_accuracy_score(y, yp),
        }
        for beta in (0.5, 2.0):
            expected[("fbeta", beta)] = sk.fbeta_score(y, yp, beta=beta, zero_division=0)
        mcc = sk.matthews_corrcoef(y, yp)
        both_classes = len(set(y)) == 2
        youden = (sk.balanced_accuracy_score(y, yp, adjusted=True) + 1) / 2 if both_classes else None
    for key, value in expected.items():
        got = al.score(key[0], y, p, beta=key[1]) if isinstance(key, tuple) else al.score(key, y, p)
        assert float(got) == value, f"{key}: {float(got)!r} != sklearn {value!r}"
    assert float(al.score("mcc", y, p)) == pytest.approx((mcc + 1) / 2, rel=1e-14, abs=1e-15)
    if youden is not None:
        assert float(al.score("youden", y, p)) == pytest.approx(youden, rel=1e-14)
    # A hard label array gives the same as the probabilities it came from.
    assert float(al.score("f1", y, yp)) == expected["f1"]


def test_hard_scores_with_sample_weight_equal_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(6)
    y, p, w = rng.integers(0, 2, 80), rng.uniform(size=80), rng.uniform(0, 2, 80)
    yp = (p > 0.5).astype(int)
    assert float(al.score("f1", y, p, sample_weight=w)) == pytest.approx(
        sk.f1_score(y, yp, sample_weight=w), rel=1e-14
    )
    assert float(al.score("balanced_accuracy", y, p, sample_weight=w)) == pytest.approx(
        sk.balanced_accuracy_score(y, yp, sample_weight=w), rel=1e-14
    )


def test_hard_score_from_logits_and_threshold():
    y = np.array([0, 1, 1, 0, 1])
    z = np.array([-2.0, 0.5, -0.1, 0.3, 3.0])
    p = 1 / (1 + np.exp(-z))
    assert float(al.score("f1", y, z, from_logits=True)) == float(al.score("f1", y, p))
    c = al.confusion(y, p, threshold=0.6)
    assert [int(v) for v in c] == [2, 1, 0, 2]  # only 0.62 and 0.95 pass 0.6
    assert [int(v) for v in al.confusion(y, p)] == [1, 1, 1, 2]


@pytest.mark.parametrize("name", ["f1", "balanced_accuracy", "gmean", "mcc", "accuracy"])
def test_hard_score_on_strict_namespace(name):
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(7)
    y, p = rng.integers(0, 2, 40), rng.uniform(size=40)
    got = al.score(name, xps.asarray(y), xps.asarray(p))
    assert float(got) == pytest.approx(float(al.score(name, y, p)), rel=1e-15)


def test_reference_metric_is_independent_of_the_core():
    # Guard: the reference formula for F1 from counts, by hand.
    assert reference_metric("f1", tn=5, fn=1, fp=2, tp=3) == pytest.approx(6 / 9)
    assert reference_metric("gmean", tn=0, fn=0, fp=0, tp=3) == 1.0


# ----------------------------------------------------------------------- degenerate input


DEGENERATE = {
    "no-positives": (np.zeros(6, int), np.array([0.1, 0.9, 0.5, 0.0, 1.0, 0.3])),
    "no-negatives": (np.ones(6, int), np.array([0.1, 0.9, 0.5, 0.0, 1.0, 0.3])),
    "one-sample": (np.array([1]), np.array([0.4])),
    "no-predicted-positives": (np.array([0, 1, 0, 1]), np.zeros(4)),
    "all-exact-ones": (np.array([0, 1, 0, 1]), np.ones(4)),
}


@pytest.mark.parametrize("batch", list(DEGENERATE), ids=list(DEGENERATE))
@pytest.mark.parametrize("approximation", al.APPROXIMATIONS)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_degenerate_batches_are_finite(batch, approximation, dtype):
    y, p = DEGENERATE[batch]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for metric in sorted(al.METRICS):
            if metric.startswith("_"):
                continue
            params = {"beta": 2.0} if metric == "fbeta" else {}  # "fbeta" needs its beta
            try:
                loss = al.anyloss(y, p.astype(dtype), metric, approximation=approximation, **params)
            except TypeError:  # a user metric registered by another test with parameters
                continue
            value = float(loss)
            assert math.isfinite(value) and -1e-6 <= value <= 1 + 1e-6, (metric, value)


def test_no_positive_convention():
    # Balanced accuracy and G-mean fall back to the class present; F1 is 0 as in sklearn.
    y = np.zeros(4, int)
    p = np.array([0.0, 0.0, 1.0, 1.0])  # half the negatives predicted positive
    assert float(al.balanced_accuracy_loss(y, p)) == pytest.approx(0.5, abs=1e-12)
    assert float(al.gmean_loss(y, p)) == pytest.approx(0.5, abs=1e-12)
    assert float(al.f1_loss(y, p)) == 1.0
    assert float(al.anyloss(y, p, "mcc")) == 0.5


def test_extreme_logits_are_finite_in_every_float_dtype():
    y = np.array([0, 1, 0, 1, 1])
    z = np.array([-1e4, 1e4, 1e4, -1e4, 0.0])
    for dtype in ("float16", "float32", "float64"):
        for approximation in al.APPROXIMATIONS:
            loss = al.f1_loss(y, z.astype(dtype), from_logits=True, approximation=approximation)
            assert math.isfinite(float(loss))
            # One TP, one FP, one FN, half of a TP / FN: F1 = 2 * 1.5 / (3 + 1 + 1.5)
            if approximation == "anyloss":
                assert float(loss) == pytest.approx(1 - 3 / 5.5, abs=1e-6)


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs,exc,words",
    [
        (dict(y_true=np.array([0, 1, 1]), y_pred=np.array([0.1, 0.2])), ValueError, ["(3,)", "(2,)"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([[0.1, 0.2], [0.3, 0.4]])), ValueError, ["(2, 2)"]),
        (dict(y_true=np.array([0, 1, 1]), y_pred=np.array([[0.1, 0.2, 0.3]])), ValueError, ["(1, 3)"]),
        (dict(y_true=np.array(1), y_pred=np.array(0.3)), ValueError, ["sample axis"]),
        (dict(y_true=np.array([], int), y_pred=np.array([])), ValueError, ["empty"]),
        (dict(y_true=np.array([0, 2, 1]), y_pred=np.array([0.1, 0.2, 0.3])), ValueError, ["y_true", "0 and 1"]),
        (dict(y_true=np.array([0.0, 0.5]), y_pred=np.array([0.1, 0.2])), ValueError, ["y_true"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([0, 1])), TypeError, ["y_pred", "floating", "int"]),
        (dict(y_true=np.array(["a", "b"]), y_pred=np.array([0.1, 0.2])), TypeError, ["y_true"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([-2.0, 3.0])), ValueError, ["[0, 1]", "from_logits"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([0.1, 0.2]), metric="fscore"), ValueError,
         ["'fscore'", "f1"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([0.1, 0.2]), approximation="cosine"),
         ValueError, ["'cosine'", "sol-cosine"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([0.1, 0.2]), scale=0.0), ValueError, ["scale"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([0.1, 0.2]), scale=float("nan")), ValueError, ["scale"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([0.1, 0.2]), metric="fbeta", beta=0.0),
         ValueError, ["beta"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([0.1, 0.2]), metric="f1", beta=2.0),
         TypeError, ["'f1'", "beta"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([0.1, 0.2]), sample_weight=np.array([1.0, -1.0])),
         ValueError, ["sample_weight", "non-negative"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([0.1, 0.2]), sample_weight=np.array([1.0, 1.0, 1.0])),
         ValueError, ["sample_weight", "(3,)"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([0.1, 0.2]), from_logits="yes"), TypeError,
         ["from_logits"]),
        (dict(y_true=np.array([0, 1]), y_pred=np.array([0.1, 0.2]), metric=3), TypeError, ["metric"]),
    ],
)
def test_bad_input_raises_a_clear_error(kwargs, exc, words):
    with pytest.raises(exc) as info:
        al.anyloss(**kwargs)
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"


def test_argument_checks_run_once_per_signature_and_value_checks_at_every_call(monkeypatch):
    from anyloss_core import _inputs

    calls = []
    real = _inputs._checked_signature
    monkeypatch.setattr(_inputs, "_CHECKED", {})
    monkeypatch.setattr(_inputs, "_checked_signature", lambda *a, **k: calls.append(1) or real(*a, **k))
    y, p = np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.6, 0.4])
    first = float(al.f1_loss(y, p))
    per_call = len(calls)  # the counts' checks, and the rescue term's (with the namespace given)
    assert per_call in (1, 2)
    assert float(al.f1_loss(y, p)) == first and len(calls) == per_call  # a known signature: not checked again
    al.f1_loss(y[:3], p[:3])  # another shape: checked
    al.f1_loss(y.astype(np.float32), p)  # another label dtype: checked
    assert len(calls) == 3 * per_call
    # A known signature still has its values checked: labels, probabilities, weights.
    with pytest.raises(ValueError, match="binary labels"):
        al.f1_loss(np.array([0, 2, 1, 0]), p)
    with pytest.raises(ValueError, match="outside"):
        al.f1_loss(y, np.array([0.2, 1.5, 0.6, 0.4]))
    al.f1_loss(y, p, sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="non-negative"):
        al.f1_loss(y, p, sample_weight=-np.ones(4))
    # A failed argument check is not remembered: the same wrong call fails every time.
    for _ in range(2):
        with pytest.raises(ValueError, match="same number of samples"):
            al.f1_loss(y, p[:3])
        with pytest.raises(TypeError, match="y_pred must be a floating"):
            al.f1_loss(y, np.array([0, 1, 1, 0]))
    assert float(al.f1_loss(y, p)) == first


def test_the_signature_table_is_bounded(monkeypatch):
    from anyloss_core import _inputs

    monkeypatch.setattr(_inputs, "_CHECKED", {})
    for n in range(1, 3 * _inputs._CHECKED_SIZE):
        al.f1_loss(np.ones(n), np.full(n, 0.75))
        assert 1 <= len(_inputs._CHECKED) <= _inputs._CHECKED_SIZE


def test_validate_false_accepts_soft_labels():
    loss = al.f1_loss(np.array([0.1, 0.9]), np.array([0.2, 0.8]), validate=False)
    assert math.isfinite(float(loss))


def test_hard_confusion_bad_threshold_and_logit_labels():
    with pytest.raises(ValueError, match="threshold"):
        al.confusion(np.array([0, 1]), np.array([0.2, 0.8]), threshold=1.5)
    with pytest.raises(TypeError, match="from_logits"):
        al.confusion(np.array([0, 1]), np.array([0, 1]), from_logits=True)


def test_sol_cosine_parameters_are_checked():
    with pytest.raises(ValueError, match="delta"):
        al.SolCosineApproximation(delta=0.0)
    wide = al.SolCosineApproximation(mu=0.5, delta=0.5)
    y, p = np.array([0, 1]), np.array([0.25, 0.75])
    # F(0.75) with u = 0.5: (1 + 0.5 + 1/pi) / 2
    expected_tp = 0.5 * (1.5 + 1 / math.pi)
    assert float(al.soft_confusion(y, p, approximation=wide).tp) == pytest.approx(expected_tp, rel=1e-14)


# ----------------------------------------------------------------------- registry


def test_register_metric_works_everywhere_a_name_does():
    def npv(c, xp):
        return al.ratio(c.tn, c.tn + c.fn, xp)

    al.register_metric("test_npv", npv)
    assert "test_npv" in al.METRICS
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.9])
    # Hard: tn = 2, fn = 1 -> npv = 2/3
    assert float(al.score("test_npv", y, p)) == pytest.approx(2 / 3)
    assert float(al.anyloss(y, p, "test_npv")) == pytest.approx(float(al.anyloss(y, p, npv)))
    tn, fn, *_ = al.soft_confusion(y, p)
    assert float(al.anyloss(y, p, "test_npv")) == pytest.approx(1 - float(tn) / float(tn + fn))
    with pytest.raises(ValueError, match="already registered"):
        al.register_metric("test_npv", lambda c, xp: c.tp)


def test_builtin_metric_names():
    expected = {"accuracy", "f1", "fbeta", "precision", "recall", "specificity", "gmean",
                "balanced_accuracy", "jaccard", "mcc", "youden", "tss"}
    assert expected <= set(al.METRICS)


# ----------------------------------------------------------------------- scale range


@pytest.mark.parametrize(
    "t,lmin,lmax",
    [(0.1, 5.50, 91.84), (0.01, 9.38, 74.97), (0.001, 13.85, 73.62),
     (1e-14, 64.48, 73.47), (1e-15, 69.08, 73.47), (1e-16, 73.69, 73.47)],
)
def test_scale_range_reproduces_table_1(t, lmin, lmax):
    assert al.scale_range("float64", t) == (lmin, lmax)


def test_scale_range_conditions_hold_in_the_dtype():
    # At L_max the amplified extreme is still < 1 in the dtype; a little above it rounds to 1.
    for dtype, t in [("float64", 0.001), ("float32", 0.01), ("float16", 0.01)]:
        lo, hi = al.scale_range(dtype, t, resolution=None)
        one = np.array(1.0, dtype)

        def a(L, p):
            x = np.array(-L * (p - 0.5), dtype)
            return one / (one + np.exp(x))

        assert a(hi * 0.999, 1 - t) < 1 and a(hi * 1.01, 1 - t) == 1, dtype
        assert a(lo * 1.001, t) <= t and a(lo * 0.99, t) > t, dtype
    assert al.scale_range("bfloat16", 0.01)[1] < al.scale_range("float16", 0.01)[1]
    with pytest.raises(ValueError, match="floating"):
        al.scale_range("int32")
    with pytest.raises(ValueError, match="accuracy"):
        al.scale_range("float64", 0.7)


# ----------------------------------------------------------------------- packaging


def test_importing_the_core_imports_no_framework():
    code = (
        "import sys, numpy as np, anyloss_core as al; "
        "print(al.f1_loss(np.array([0,1,1]), np.array([0.2,0.7,0.9]))); "
        "assert not {'torch','jax','tensorflow','keras'} & set(sys.modules), sorted(sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(0.0, abs=1e-6)


# --- argument checks on every path (issue 16, item 4) ----------------------------------------------


def _configured(metric="f1", **keywords):
    """An adapter's loss configuration without a framework: LossConfig from a constructor's keywords."""
    return LossConfig.from_dict({"metric": metric, **keywords})


_Y2, _P2 = np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.3, 0.4])
_IDS3 = np.array([0, 1, 2, 1])
_LOGITS3 = np.array([[2.0, 0.1, -1.0], [0.0, 1.0, 0.5], [0.3, -0.2, 1.5], [1.0, 0.2, 0.0]])
_MULTIHOT, _PROBS3 = np.array([[1, 0, 1], [0, 1, 0]]), np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.4]])

_SCALE_PATHS = {
    "binary": lambda s: al.anyloss(_Y2, _P2, scale=s),
    "multilabel": lambda s: al.anyloss(_MULTIHOT, _PROBS3, task="multilabel", scale=s),
    "multiclass-ovr": lambda s: al.anyloss(_IDS3, _LOGITS3, from_logits=True, task="multiclass",
                                           approximation="ovr", scale=s),
    "multiclass-softmax": lambda s: al.anyloss(_IDS3, _LOGITS3, from_logits=True, task="multiclass", scale=s),
    "soft_confusion-multilabel": lambda s: al.soft_confusion(_MULTIHOT, _PROBS3, task="multilabel", scale=s),
    "soft_class_confusion-ovr": lambda s: al.soft_class_confusion(_IDS3, _LOGITS3, from_logits=True,
                                                                  approximation="ovr", scale=s),
    "soft_class_confusion-multilabel": lambda s: al.soft_class_confusion(_MULTIHOT, _PROBS3, task="multilabel",
                                                                         scale=s),
    "class-multilabel": lambda s: _configured("f1", task="multilabel", scale=s),
    "class-multiclass-ovr": lambda s: _configured("f1", task="multiclass", approximation="ovr", scale=s),
}


@pytest.mark.parametrize("scale", [0, -5, float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("path", list(_SCALE_PATHS))
def test_scale_is_checked_on_every_path_with_the_binary_error(path, scale):
    with pytest.raises(ValueError) as binary:
        al.anyloss(_Y2, _P2, scale=scale)
    assert "scale must be finite and > 0" in str(binary.value)
    with pytest.raises(ValueError) as info:
        _SCALE_PATHS[path](scale)
    assert str(info.value) == str(binary.value)


def test_configured_loss_takes_the_multiclass_approximations():
    # "ovr" / "softmax" are multi-class names: the class must accept them there (and only there).
    for approximation in ("ovr", "softmax", al.SharpenedSoftmax(2.0)):
        _configured("f1", task="multiclass", approximation=approximation)
    with pytest.raises(ValueError, match="unknown approximation 'ovr'"):
        _configured("f1", approximation="ovr")


_NAN = float("nan")


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda xp: al.anyloss(to_xp(xp, [0, 1, 1]), to_xp(xp, [0.2, _NAN, 0.7])), "y_pred contains NaN"),
        # NaN next to a value out of range is still reported as NaN.
        (lambda xp: al.anyloss(to_xp(xp, [0, 1, 1]), to_xp(xp, [_NAN, 3.0, 0.7])), "y_pred contains NaN"),
        (lambda xp: al.anyloss(to_xp(xp, [0.0, _NAN, 1.0]), to_xp(xp, [0.2, 0.5, 0.7])), "y_true contains NaN"),
        (lambda xp: al.anyloss(to_xp(xp, [0, 1, 1]), to_xp(xp, [0.2, 0.5, 0.7]),
                               sample_weight=to_xp(xp, [1.0, _NAN, 2.0])), "sample_weight contains NaN"),
        (lambda xp: al.anyloss(to_xp(xp, [0, 1, 1]), to_xp(xp, [0.2, 0.5, 0.7]),
                               sample_weight=to_xp(xp, [-1.0, _NAN, 2.0])), "sample_weight contains NaN"),
        (lambda xp: al.score("f1", to_xp(xp, [0, 1, 1]), to_xp(xp, [0.2, _NAN, 0.7])), "y_pred contains NaN"),
        (lambda xp: al.anyloss(to_xp(xp, [[1, 0], [0, 1]]), to_xp(xp, [[0.9, _NAN], [0.2, 0.6]]),
                               task="multilabel"), "y_pred contains NaN"),
        (lambda xp: al.anyloss(to_xp(xp, [[1.0, 0.0], [_NAN, 1.0]]), to_xp(xp, [[0.9, 0.1], [0.2, 0.6]]),
                               task="multilabel"), "y_true contains NaN"),
        (lambda xp: al.anyloss(to_xp(xp, [0, 1]), to_xp(xp, [[0.9, 0.1], [_NAN, 0.6]]), task="multiclass"),
         "y_pred contains NaN"),
        (lambda xp: al.anyloss(to_xp(xp, [0, 1]), to_xp(xp, [[2.0, 0.1], [0.0, 0.6]]), task="multiclass",
                               from_logits=True, sample_weight=to_xp(xp, [_NAN, 1.0])),
         "sample_weight contains NaN"),
    ],
)
def test_nan_is_reported_as_nan(xp, call, message):
    with pytest.raises(ValueError) as info:
        call(xp)
    assert str(info.value) == message


def test_nan_is_found_without_isnan_in_the_namespace():
    # A namespace may lack isnan (the Keras ops shim does): the check must not need it.
    import array_api_compat.numpy as np_xp

    class NoIsnan:
        def __getattr__(self, name):
            if name == "isnan":
                raise AttributeError(name)
            return getattr(np_xp, name)

    for task, y, p in (("binary", _Y2, np.array([0.1, _NAN, 0.3, 0.4])),
                       ("multilabel", _MULTIHOT, np.array([[0.9, 0.2, _NAN], [0.1, 0.7, 0.4]]))):
        with pytest.raises(ValueError, match="^y_pred contains NaN$"):
            al.anyloss(y, p, task=task, xp=NoIsnan())


def test_nan_is_not_looked_for_without_validate_or_in_logits():
    # validate=False: no check at all (the loss is then NaN, as the input).
    assert math.isnan(float(al.anyloss(_Y2, np.array([0.1, _NAN, 0.3, 0.4]), validate=False)))
    # Logits are not scanned for NaN (documented): NaN in, NaN out, like the frameworks' BCE.
    assert math.isnan(float(al.anyloss(_Y2, np.array([0.1, _NAN, 0.3, 0.4]), from_logits=True)))
    assert "NaN" in al.anyloss.__doc__ and "from_logits=True" in al.anyloss.__doc__


_BUILT_IN_METRICS = ("accuracy", "balanced_accuracy", "f1", "fbeta", "gmean", "jaccard", "mcc", "precision",
                     "recall", "specificity", "tss", "youden")


@pytest.mark.parametrize(
    "argument,name,suggestion,valid",
    [
        ("metric", "F1", "f1", _BUILT_IN_METRICS),
        ("metric", "f-1", "f1", _BUILT_IN_METRICS),
        ("metric", "balanced-accuracy", "balanced_accuracy", _BUILT_IN_METRICS),
        ("metric", "Balanced Accuracy", "balanced_accuracy", _BUILT_IN_METRICS),
        ("metric", "gmaen", "gmean", _BUILT_IN_METRICS),
        ("metric", "F2", "f2", _BUILT_IN_METRICS),
        ("task", "multi-class", "multiclass", ("binary", "multiclass", "multilabel")),
        ("task", "Multilabel", "multilabel", ("binary", "multiclass", "multilabel")),
        ("average", "Macro", "macro", ("micro", "macro", "weighted", "none")),
        ("average", "wieghted", "weighted", ("micro", "macro", "weighted", "none")),
        ("approximation", "sol_cosine", "sol-cosine", ("anyloss", "identity", "sol-cosine")),
        ("approximation", "Identity", "identity", ("anyloss", "identity", "sol-cosine")),
    ],
)
def test_unknown_names_suggest_the_valid_spelling(argument, name, suggestion, valid):
    kwargs = {"metric": "f1", "task": "multilabel", "average": "macro", "approximation": "anyloss", argument: name}
    for call in (lambda: al.anyloss(_MULTIHOT, _PROBS3, **kwargs),
                 lambda: _configured(**kwargs)):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"unknown {argument} {name!r} (did you mean {suggestion!r}?)"), message
        for valid_name in valid:
            assert valid_name in message, (valid_name, message)


def test_unknown_names_elsewhere_suggest_too():
    with pytest.raises(ValueError, match=r"unknown metric 'F1' \(did you mean 'f1'\?\)"):
        al.get_metric("F1")
    with pytest.raises(ValueError, match=r"unknown metric 'Accuracy' \(did you mean 'accuracy'\?\)"):
        al.score("Accuracy", _Y2, _P2)
    with pytest.raises(ValueError, match=r"unknown approximation 'OVR' \(did you mean 'ovr'\?\)"):
        al.anyloss(_IDS3, _LOGITS3, from_logits=True, task="multiclass", approximation="OVR")
    with pytest.raises(ValueError, match=r"unknown task 'multi-label' \(did you mean 'multilabel'\?\)"):
        al.soft_confusion(_MULTIHOT, _PROBS3, task="multi-label")
    # Nothing close: no suggestion, the list of valid names only.
    with pytest.raises(ValueError) as info:
        al.anyloss(_Y2, _P2, "zzz")
    assert "did you mean" not in str(info.value) and "balanced_accuracy" in str(info.value)


_BATCH = {c.batch.id: c.batch for c in CASES}


@pytest.mark.parametrize("alias,beta", [("f2", 2.0), ("f0.5", 0.5), ("f1.5", 1.5), ("f3", 3.0), ("f1.0", 1.0)])
@pytest.mark.parametrize("batch", ["random-probs", "weighted-probs", "random-logits"])
def test_fbeta_aliases_are_fbeta_with_that_beta(alias, beta, batch, xp):
    b = _BATCH[batch]
    expected = reference_loss(Case(b, "fbeta", (("beta", beta),)))
    got = al.anyloss(to_xp(xp, b.y), to_xp(xp, b.pred, xp.float64), alias, from_logits=b.from_logits,
                     sample_weight=to_xp(xp, b.weight))
    assert_close(got, expected, 1e-12, xp, xp.float64)
    counts = al.Confusion(*(xp.asarray(v) for v in (5.0, 1.0, 2.0, 3.0)))  # tn, fn, fp, tp
    b2 = beta * beta
    assert to_float(al.get_metric(alias)(counts, xp)) == pytest.approx((1 + b2) * 3 / ((1 + b2) * 3 + 2 + b2 * 1))


def test_fbeta_aliases_equal_sklearn_and_round_trip_in_a_config():
    sk = pytest.importorskip("sklearn.metrics")
    y, p = LABEL_SETS[0][1], LABEL_SETS[0][2]
    for alias, beta in (("f2", 2.0), ("f0.5", 0.5)):
        assert float(al.score(alias, y, p)) == sk.fbeta_score(y, (p > 0.5).astype(int), beta=beta, zero_division=0)
        probs = _softmax_rows(_LOGITS3)
        assert float(al.score(alias, _IDS3, probs, task="multiclass")) == pytest.approx(
            sk.fbeta_score(_IDS3, probs.argmax(1), beta=beta, average="macro", zero_division=0), rel=1e-14)
        loss = _configured(alias, task="multiclass", from_logits=True)
        again = _configured(**loss.to_dict())
        assert again.to_dict() == loss.to_dict() and again.metric == alias


def _softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_fbeta_alias_with_beta_is_an_error():
    for call in (lambda: al.anyloss(_Y2, _P2, "f2", beta=3.0), lambda: al.get_metric("f0.5", beta=0.5),
                 lambda: _configured("f2", beta=2.0)):
        with pytest.raises(ValueError) as info:
            call()
        assert "beta" in str(info.value) and "'fbeta'" in str(info.value)


def test_fbeta_without_beta_is_an_error_but_fbeta_loss_defaults_to_one():
    for call in (lambda: al.anyloss(_Y2, _P2, "fbeta"), lambda: al.get_metric("fbeta"),
                 lambda: al.score("fbeta", _Y2, _P2), lambda: _configured("fbeta"),
                 lambda: al.anyloss(_IDS3, _LOGITS3, "fbeta", from_logits=True, task="multiclass")):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert "'fbeta' needs beta=" in message and "'f2'" in message, message
    # fbeta_loss documents beta=1.0: F1, from the textbook formula on the soft counts.
    tn, fn, fp, tp = (float(v) for v in al.soft_confusion(_Y2, _P2))
    assert float(al.fbeta_loss(_Y2, _P2)) == pytest.approx(1 - 2 * tp / (2 * tp + fp + fn), rel=1e-12)


def _overshoot(c, xp):
    return 1.5 + 0.0 * c.tp


def _undershoot(c, xp):
    return c.tp / (c.tp + c.fp) - 1.2


def _nan_metric(c, xp):
    return c.tp * float("nan")


def _rounding(c, xp):  # 1 + 1e-7: within the tolerance for rounding
    return (c.tp + c.tn + c.fp + c.fn) / (c.tp + c.tn + c.fp + c.fn) + 1e-7


@pytest.mark.parametrize("metric,shown", [(_overshoot, "1.5"), (_undershoot, "-"), (_nan_metric, "nan")])
def test_a_user_metric_outside_0_1_is_an_error(metric, shown, xp):
    y, p = to_xp(xp, _Y2), to_xp(xp, _P2)
    calls = [
        lambda: al.anyloss(y, p, metric),
        lambda: al.score(metric, y, p),
        lambda: al.confusion_loss(al.soft_confusion(y, p), metric),
        lambda: al.anyloss(to_xp(xp, _MULTIHOT), to_xp(xp, _PROBS3), metric, task="multilabel", average="none"),
        lambda: al.anyloss(to_xp(xp, _MULTIHOT), to_xp(xp, _PROBS3), metric, task="multilabel", average="micro"),
        lambda: al.score(metric, to_xp(xp, _IDS3), to_xp(xp, _LOGITS3), task="multiclass"),
    ]
    # (The torch adapter's float path: tests/test_torch_scalar_grad.py.)
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert f"metric {metric.__name__!r} returned {shown}" in message and "[0, 1]" in message, message


def test_a_registered_user_metric_is_named_by_its_name():
    al.register_metric("_test_overshoot", _overshoot, overwrite=True)
    with pytest.raises(ValueError, match=r"metric '_test_overshoot' returned 1\.5"):
        al.anyloss(_Y2, _P2, "_test_overshoot")


def test_user_metric_range_check_tolerates_rounding_and_skips_what_is_not_concrete():
    assert float(al.anyloss(_Y2, _P2, _rounding)) == pytest.approx(-1e-7, abs=1e-12)
    import array_api_compat.numpy as np_xp

    class Traced:  # a namespace whose values cannot be read (as under jit): nothing is checked
        def __getattr__(self, name):
            return getattr(np_xp, name)

        @staticmethod
        def values_available(x):
            return False

    assert float(al.anyloss(_Y2, _P2, _overshoot, xp=Traced())) == pytest.approx(-0.5)
    # Built-ins are not checked (they lie in [0, 1] by construction).
    from anyloss_core._metrics import check_metric_value

    check_metric_value("f1", al.get_metric("f1"), 1.5, np_xp)
    with pytest.raises(ValueError):
        check_metric_value("mine", _overshoot, 1.5, np_xp)


# The default scale lives in one place ---------------------------------------------------------------------

_ADAPTERS = {"anyloss_torch": "torch", "anyloss_jax": "jax", "anyloss_keras": "keras"}
# Public names whose ``scale`` defaults to ``None``, which means DEFAULT_SCALE (resolved inside).
_SCALE_NONE_MEANS_DEFAULT = {"anyloss_core.soft_class_confusion"}


def _public_scale_defaults(module):
    """``{"module.name": default}`` for every public function or class of ``module`` with a ``scale`` default.

    A required ``scale`` (``check_scale(scale)``) has no default to keep in line.
    """
    import inspect

    defaults = {}
    for name in module.__all__:
        obj = getattr(module, name)
        if not callable(obj):
            continue
        try:
            parameters = inspect.signature(obj).parameters
        except (TypeError, ValueError):  # a builtin or extension callable without a signature
            continue
        if "scale" in parameters and parameters["scale"].default is not inspect.Parameter.empty:
            defaults[f"{module.__name__}.{name}"] = parameters["scale"].default
    return defaults


@pytest.mark.parametrize("module_name", ["anyloss_core", *_ADAPTERS])
def test_every_public_scale_defaults_to_the_one_constant(module_name):
    import importlib
    import importlib.util

    from anyloss_core._scale import DEFAULT_SCALE

    for needed in (module_name, _ADAPTERS.get(module_name)):
        if needed is not None and importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not installed in this session")
    defaults = _public_scale_defaults(importlib.import_module(module_name))
    expected = {
        # (soft_confusion_with_pullback takes soft_confusion's keywords as **options.)
        "anyloss_core": {"anyloss", "f1_loss", "fbeta_loss", "soft_confusion"},
        "anyloss_torch": {"AnyLoss", "F1Loss", "anyloss", "f1_loss"},
        "anyloss_jax": {"anyloss", "f1_loss"},
        "anyloss_keras": {"AnyLoss", "F1Loss"},
    }[module_name]
    missing = {f"{module_name}.{name}" for name in expected} - set(defaults)
    assert not missing, f"no scale parameter found on {sorted(missing)}"  # the check is not vacuous
    wrong = {
        name: default
        for name, default in defaults.items()
        if not (default is None and name in _SCALE_NONE_MEANS_DEFAULT)
        and not (type(default) is float and default == DEFAULT_SCALE)
    }
    assert not wrong, f"scale defaults other than DEFAULT_SCALE = {DEFAULT_SCALE!r}: {wrong}"
    assert DEFAULT_SCALE == 73.0  # the paper's L; reprs and docs show scale=73.0


# --- per-backend fast paths (anyloss_core._fast_paths): Array API defaults, a registered override ---------


def test_fast_path_defaults_are_the_array_api_formulas():
    import array_api_compat.numpy as xp

    from anyloss_core._fast_paths import FastPaths, fast_paths

    fast = fast_paths(xp)
    assert type(fast) is FastPaths  # nothing registered for NumPy
    x, p = np.array([-2.0, 0.5, 3.0]), np.array([0.25, 0.5, 1.0])
    np.testing.assert_array_equal(fast.times_one_minus(x.copy(), p, xp), x * (1 - p))
    np.testing.assert_array_equal(fast.scale_temporary(x.copy(), 4.0, xp), x * 4.0)
    np.testing.assert_allclose(fast.sigmoid_of_temporary(x.copy(), xp), 1 / (1 + np.exp(-x)), rtol=1e-15)
    assert float(fast.dot(x, p, xp)) == float(np.sum(x * p))
    np.testing.assert_array_equal(fast.shrink(x, 1.0, xp), [-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(fast.clip(x, -1.0, None, xp), [-1.0, 0.5, 3.0])
    assert fast.all_binary(np.array([0.0, 1.0]), xp) and not fast.all_binary(np.array([0.0, np.nan]), xp)
    # the multi-class indexing hooks: each row's entry at its class, a 1-D take, and an add at each row's class
    table, ids, values = np.arange(12.0).reshape(4, 3), np.array([2, 0, 1, 2]), np.array([10.0, 20.0, 30.0, 40.0])
    np.testing.assert_array_equal(fast.take_by_row(table, ids, xp), [2.0, 3.0, 7.0, 11.0])
    np.testing.assert_array_equal(fast.take(values, ids, xp), [30.0, 10.0, 20.0, 30.0])
    expected = table.copy()
    expected[np.arange(4), ids] += values
    np.testing.assert_array_equal(fast.add_by_row_temporary(table.copy(), ids, values, xp), expected)


def test_registered_fast_paths_are_used_for_their_namespace_only(monkeypatch):
    import array_api_compat.numpy as xp

    from anyloss_core import _fast_paths

    monkeypatch.setattr(_fast_paths, "_REGISTERED", [])  # leave the process's registry as it was
    calls = []

    class Counting(_fast_paths.FastPaths):
        def dot(self, a, b, xp):
            calls.append("dot")
            return super().dot(a, b, xp)

    y, p = np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.3, 0.4])
    expected = float(al.f1_loss(y, p))
    _fast_paths.register_fast_paths(lambda ns: ns is xp, Counting())
    assert float(al.f1_loss(y, p)) == expected  # the same value through the override
    assert calls.count("dot") == 4  # one per count
    assert type(_fast_paths.fast_paths(object())) is _fast_paths.FastPaths  # other namespaces: the defaults
    with pytest.raises(TypeError, match="hooks must be a FastPaths instance"):
        _fast_paths.register_fast_paths(lambda ns: True, object())
