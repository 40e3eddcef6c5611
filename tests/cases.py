"""Shared cases for every backend, and an independent float64 NumPy reference.

A case is a batch (labels, predictions, optional weights) plus a loss
configuration.  ``reference_loss`` recomputes the loss from the paper's formulas
with plain float64 NumPy and explicit Python branches for zero denominators:
it shares no code with ``anyloss_core``.  Every backend converts the same cases
and must agree with it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Batch:
    id: str
    y: np.ndarray  # int labels, (n,) or (n, 1)
    pred: np.ndarray  # float64 probabilities or logits
    from_logits: bool
    weight: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Case:
    batch: Batch
    metric: str
    params: tuple[tuple[str, float], ...] = ()
    approximation: str = "anyloss"
    scale: float = 73.0

    @property
    def id(self) -> str:
        extra = "".join(f"-{k}{v}" for k, v in self.params)
        return f"{self.batch.id}-{self.metric}{extra}-{self.approximation}-L{self.scale:g}"

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def config(self) -> dict[str, Any]:
        """The loss's keyword arguments: input kind, scale, approximation and the metric's parameters."""
        return {"from_logits": self.batch.from_logits, "scale": self.scale, "approximation": self.approximation,
                **self.kwargs}


def _batches() -> list[Batch]:
    rng = np.random.default_rng(20240825)
    out = []
    y = rng.integers(0, 2, 60)
    out.append(Batch("random-probs", y, rng.uniform(0, 1, 60), False))
    y = rng.integers(0, 2, 48)
    out.append(Batch("random-logits", y, rng.normal(0, 3, 48), True))
    y = (rng.uniform(size=110) < 1 / 11).astype(np.int64)
    y[:2] = 1
    out.append(Batch("imbalanced-logits", y, rng.normal(0, 2, 110) + 2.5 * (2 * y - 1), True))
    y = rng.integers(0, 2, 40)
    out.append(Batch("weighted-probs", y, rng.uniform(0, 1, 40), False, rng.uniform(0, 3, 40)))
    y = rng.integers(0, 2, 30)
    out.append(Batch("column-shape", y.reshape(-1, 1), rng.uniform(0, 1, (30, 1)), False))
    out.append(Batch("no-positives", np.zeros(9, np.int64), rng.uniform(0, 1, 9), False))
    out.append(Batch("no-negatives", np.ones(9, np.int64), rng.uniform(0, 1, 9), False))
    out.append(Batch("single-positive", np.array([1]), np.array([0.8]), False))
    out.append(Batch("single-negative", np.array([0]), np.array([-1.5]), True))
    y = rng.integers(0, 2, 20)
    out.append(Batch("no-predicted-positives", y, rng.uniform(0, 0.3, 20), False))
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    out.append(Batch("exact-0-1-probs", y, np.array([0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.5, 0.2]), False))
    out.append(Batch("extreme-logits", y, np.array([-1e4, 1e4, 1e4, -1e4, 37.0, -40.0, 0.0, 1e4]), True))
    out.append(Batch("confident-correct", y, 20.0 * (2 * y - 1.0), True))
    return out


BATCHES = _batches()
METRIC_CONFIGS: list[tuple[str, tuple[tuple[str, float], ...]]] = [
    ("accuracy", ()),
    ("f1", ()),
    ("fbeta", (("beta", 0.5),)),
    ("fbeta", (("beta", 2.0),)),
    ("precision", ()),
    ("recall", ()),
    ("specificity", ()),
    ("gmean", ()),
    ("balanced_accuracy", ()),
    ("jaccard", ()),
    ("mcc", ()),
    ("youden", ()),
]
APPROX_CONFIGS = [("anyloss", 73.0), ("anyloss", 30.0), ("identity", 73.0), ("sol-cosine", 73.0)]

CASES: list[Case] = [
    Case(batch, metric, params, approx, scale)
    for batch, (metric, params), (approx, scale) in itertools.product(BATCHES, METRIC_CONFIGS, APPROX_CONFIGS)
]
#: A smaller set for slow paths (gradcheck, compile): every metric and
#: approximation, every batch at least once.
SMALL_CASES: list[Case] = [
    Case(batch, *METRIC_CONFIGS[i % len(METRIC_CONFIGS)], *APPROX_CONFIGS[i % len(APPROX_CONFIGS)])
    for i, batch in enumerate(BATCHES * 2)
]


# --------------------------------------------------------------------------- reference


def _logistic(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def reference_yhat(case_or_batch: Case | Batch, approximation: str = "anyloss", scale: float = 73.0):
    """float64 ``(yh, 1 - yh)`` from the paper's formulas, computed independently."""
    if isinstance(case_or_batch, Case):
        batch, approximation, scale = case_or_batch.batch, case_or_batch.approximation, case_or_batch.scale
    else:
        batch = case_or_batch
    z = np.asarray(batch.pred, np.float64).reshape(-1)
    if batch.from_logits:
        p, p_c = _logistic(z), _logistic(-z)
    else:
        p, p_c = z, 1.0 - z
    if approximation == "anyloss":
        # A(p) = 1 / (1 + exp(-L (p - 0.5))); its complement 1 / (1 + exp(L (p - 0.5))).
        centred = p - 0.5 if not batch.from_logits else np.where(z >= 0, 0.5 - p_c, p - 0.5)
        return _logistic(scale * centred), _logistic(-scale * centred)
    if approximation == "identity":
        return p, p_c
    if approximation == "sol-cosine":
        mu, delta = 0.5, 0.1
        u = (p - mu) / delta
        inside = 0.5 * (1 + u + np.sin(np.pi * u) / np.pi)
        f = np.where(u <= -1, 0.0, np.where(u >= 1, 1.0, inside))
        return f, 1.0 - f
    raise ValueError(approximation)


def reference_counts(case: Case) -> tuple[float, float, float, float]:
    """(tn, fn, fp, tp) in float64."""
    yh, yh_c = reference_yhat(case)
    y = np.asarray(case.batch.y, np.float64).reshape(-1)
    w = np.ones_like(y) if case.batch.weight is None else np.asarray(case.batch.weight, np.float64)
    return (
        float(np.sum(w * (1 - y) * yh_c)),
        float(np.sum(w * y * yh_c)),
        float(np.sum(w * (1 - y) * yh)),
        float(np.sum(w * y * yh)),
    )


def _div(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def reference_metric(name: str, tn: float, fn: float, fp: float, tp: float, beta: float = 1.0) -> float:
    """The metric from its textbook formula, with the documented 0/0 conventions."""
    tpr, tnr = _div(tp, tp + fn), _div(tn, tn + fp)
    has_pos, has_neg = tp + fn > 0, tn + fp > 0
    if name == "accuracy":
        return _div(tp + tn, tp + tn + fp + fn)
    if name in ("f1", "fbeta"):
        b2 = beta * beta if name == "fbeta" else 1.0
        return _div((1 + b2) * tp, (1 + b2) * tp + fp + b2 * fn)
    if name == "precision":
        return _div(tp, tp + fp)
    if name == "recall":
        return tpr
    if name == "specificity":
        return tnr
    if name == "jaccard":
        return _div(tp, tp + fp + fn)
    if name in ("balanced_accuracy", "youden"):
        present = [r for r, ok in ((tpr, has_pos), (tnr, has_neg)) if ok]
        return sum(present) / len(present) if present else 0.0
    if name == "gmean":
        if has_pos and has_neg:
            return math.sqrt(tpr * tnr)
        return tpr if has_pos else tnr
    if name == "mcc":
        den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        corr = (tp * tn - fp * fn) / den if den > 0 else 0.0
        return (corr + 1) / 2
    raise ValueError(name)


def reference_loss(case: Case) -> float:
    return 1.0 - reference_metric(case.metric, *reference_counts(case), **case.kwargs)


def reference_f1_value_and_grad(y: np.ndarray, z: np.ndarray, w: np.ndarray | None, *, from_logits: bool,
                                rescue: float, scale: float = 73.0) -> tuple[float, np.ndarray]:
    """The F1 loss and its gradient in float64: the paper's counts (eq. 6-9) with the anyloss approximation,
    plus the rescue slope (``anyloss_core._rescue``: BCE's slope on the misclassified samples, over the total
    weight)."""
    y, z = np.asarray(y, np.float64).ravel(), np.asarray(z, np.float64).ravel()
    w = np.ones_like(y) if w is None else np.asarray(w, np.float64).ravel()
    p = _logistic(z) if from_logits else z
    a = _logistic(scale * (p - 0.5))
    tp, fp, fn = np.sum(w * y * a), np.sum(w * (1 - y) * a), np.sum(w * y * (1 - a))
    d = 2 * tp + fp + fn
    d_tp, d_fp = 2 * (d - 2 * tp) / d**2, -2 * tp / d**2  # dF1/dTP, dF1/dFP = dF1/dFN
    d_a = -w * (y * d_tp + (1 - y) * d_fp - y * d_fp)  # d loss / dA_i
    grad = d_a * scale * a * (1 - a) * (p * (1 - p) if from_logits else 1.0)
    bce_slope = (p - y) if from_logits else (p - y) / np.maximum(p * (1 - p), 1e-3)
    wrong = np.abs(p - y) > 0.5
    grad = grad + rescue * np.where(wrong, bce_slope, 0.0) * w / np.sum(w)
    return float(1.0 - 2 * tp / d), grad


def rescue_batch(n: int = 512, seed: int = 0, from_logits: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, y, w)``: ``(n, 1)`` float32 logits near the threshold (where the paper's gradient is large) with
    eight confidently wrong or exact ones first (for the rescue gradient), ``(n, 1)`` labels (30% positives)
    and ``(n,)`` weights in [0.5, 2]; with ``from_logits=False``, probabilities instead of logits."""
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(n, 1)) * 0.05).astype("float32")
    z[:8] = [[6.0], [-6.0], [4.0], [-4.0], [30.0], [-30.0], [0.0], [0.01]]
    y = (rng.random((n, 1)) < 0.3).astype("float32")
    w = rng.uniform(0.5, 2.0, size=(n,)).astype("float32")
    if not from_logits:
        z = (1.0 / (1.0 + np.exp(-z))).astype("float32")
    return z, y, w
