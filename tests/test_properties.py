"""Property tests (hypothesis) of the core on NumPy: range, finiteness, limits, count sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import anyloss_core as al

pytestmark = pytest.mark.backend("numpy")

BUILT_IN = ["accuracy", "f1", "precision", "recall", "specificity", "gmean", "balanced_accuracy",
            "jaccard", "mcc", "youden"]


@st.composite
def batches(draw, logits: bool = False):
    n = draw(st.integers(1, 64))
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    if logits:
        pred = draw(hnp.arrays(np.float64, n, elements=st.floats(-1e4, 1e4, allow_nan=False)))
    else:
        pred = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0, allow_nan=False)))
    return y, pred


@settings(max_examples=150, deadline=None)
@given(batch=batches(), metric=st.sampled_from(BUILT_IN), approximation=st.sampled_from(al.APPROXIMATIONS),
       scale=st.floats(1.0, 200.0))
def test_loss_is_finite_and_in_unit_interval(batch, metric, approximation, scale):
    y, p = batch
    loss = float(al.anyloss(y, p, metric, scale=scale, approximation=approximation))
    assert math.isfinite(loss)
    assert -1e-12 <= loss <= 1 + 1e-12


@settings(max_examples=100, deadline=None)
@given(batch=batches(logits=True), metric=st.sampled_from(BUILT_IN),
       dtype=st.sampled_from(["float16", "float32", "float64"]))
def test_logits_anywhere_give_a_finite_loss(batch, metric, dtype):
    y, z = batch
    loss = float(al.anyloss(y, z.astype(dtype), metric, from_logits=True))
    assert math.isfinite(loss) and -1e-6 <= loss <= 1 + 1e-6


@settings(max_examples=100, deadline=None)
@given(batch=batches(), weights=st.booleans())
def test_soft_counts_sum_to_the_total_weight(batch, weights):
    y, p = batch
    w = np.linspace(0.5, 2.0, len(y)) if weights else None
    c = al.soft_confusion(y, p, sample_weight=w)
    total = len(y) if w is None else w.sum()
    assert sum(float(v) for v in c) == pytest.approx(total, rel=1e-12)
    assert all(float(v) >= 0 for v in c)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 64), seed=st.integers(0, 2**32 - 1), metric=st.sampled_from(BUILT_IN))
def test_confident_predictions_tend_to_the_limits(n, seed, metric):
    y = np.random.default_rng(seed).integers(0, 2, n)
    y[0], y[1] = 0, 1  # both classes, so every metric is defined
    perfect = float(al.anyloss(y, 30.0 * (2 * y - 1.0), metric, from_logits=True))
    assert perfect < 1e-6
    if metric in ("accuracy", "f1", "recall", "specificity", "gmean", "balanced_accuracy", "jaccard",
                  "youden", "mcc", "precision"):
        inverted = float(al.anyloss(y, -30.0 * (2 * y - 1.0), metric, from_logits=True))
        assert inverted > 1 - 1e-6


@settings(max_examples=60, deadline=None)
@given(batch=batches(), metric=st.sampled_from(BUILT_IN))
def test_hard_score_equals_soft_score_of_decided_predictions(batch, metric):
    # The hard score is the same metric evaluated on the 0/1 decisions, which the
    # identity approximation of 0/1 "probabilities" reproduces exactly.
    y, p = batch
    decided = (p > 0.5).astype(np.float64)
    hard = float(al.score(metric, y, p))
    soft = 1 - float(al.anyloss(y, decided, metric, approximation="identity"))
    assert hard == pytest.approx(soft, abs=1e-12)
