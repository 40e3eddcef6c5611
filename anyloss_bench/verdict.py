"""``compare``'s verdict: per target metric, the best loss, and the AnyLoss loss against the best baseline.

The comparison is the Bayesian correlated t-test of Benavoli et al. (2017) on the k cross-validation
folds (``baycomp.CorrelatedTTest``): a Student posterior of the mean score difference whose variance
carries the Nadeau-Bengio correction for the folds' overlapping training sets (correlation = the fold
ratio test / train = 1 / (k - 1)).  With a region of practical equivalence (rope) of 0.01 it gives
P(AnyLoss better), P(equivalent: within 0.01), P(worse).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ROPE", "LABELS", "correlated_t_test", "verdict", "format_verdict"]

ROPE = 0.01

#: How each target metric is named in the sentences.
LABELS = {"accuracy": "Accuracy", "f1": "F1", "gmean": "G-mean", "balanced_accuracy": "Balanced accuracy"}
#: The AnyLoss loss that targets each metric.
OWN_LOSS = {"accuracy": "accuracy", "f1": "f1", "gmean": "gmean", "balanced_accuracy": "balanced_accuracy"}


def correlated_t_test(ours: Sequence[float], theirs: Sequence[float], rope: float = ROPE) -> tuple[float, float, float]:
    """``(p_better, p_equivalent, p_worse)`` of ``ours`` against ``theirs`` (per-fold scores, one CV run)."""
    import baycomp

    x, y = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    # baycomp's posterior is of mean(y - x): its left tail is "x better", its right "y better".
    left, middle, right = baycomp.two_on_single(x, y, rope=rope, runs=1)
    return float(left), float(middle), float(right)


def verdict(per_fold: Mapping[str, Mapping[str, Sequence[float]]], anyloss_names: set[str],
            metrics: Sequence[str], rope: float = ROPE) -> dict[str, dict[str, Any]]:
    """Per metric: ``{best, best_mean, anyloss, baseline, p_better, p_equivalent, p_worse, rope}``.

    ``per_fold[loss][metric]`` holds the fold scores.  ``anyloss`` is the AnyLoss loss of the metric (or, when
    it was not run, the AnyLoss loss with the best mean on it); ``baseline`` the other loss (MSE, BCE, its
    variants, SOL) with the best mean.  The probabilities are ``None`` when one side is missing or baycomp is
    not installed.
    """
    try:
        import baycomp  # noqa: F401
        have_baycomp = True
    except ImportError:
        have_baycomp = False
    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        means = {name: float(np.mean(scores[metric])) for name, scores in per_fold.items()}
        best = max(means, key=means.__getitem__)  # first of equals, in the table's order
        ours = [n for n in means if n in anyloss_names]
        theirs = [n for n in means if n not in anyloss_names]
        own = OWN_LOSS.get(metric)
        anyloss = own if own in ours else (max(ours, key=means.__getitem__) if ours else None)
        baseline = max(theirs, key=means.__getitem__) if theirs else None
        entry: dict[str, Any] = {"best": best, "best_mean": means[best], "anyloss": anyloss, "baseline": baseline,
                                 "p_better": None, "p_equivalent": None, "p_worse": None, "rope": rope}
        if anyloss and baseline and have_baycomp:
            p = correlated_t_test(per_fold[anyloss][metric], per_fold[baseline][metric], rope)
            entry.update(p_better=p[0], p_equivalent=p[1], p_worse=p[2])
        out[metric] = entry
    return out


def format_verdict(result: Mapping[str, Mapping[str, Any]]) -> str:
    """One plain sentence per metric."""
    lines = []
    for metric, v in result.items():
        label = LABELS.get(metric, metric)
        text = f"{label}: best is {v['best']} ({v['best_mean']:.3f})"
        if v["anyloss"] and v["baseline"]:
            own = label if metric in ("f1", "gmean") else label.lower()
            what = f"the {own} loss" if v["anyloss"] == OWN_LOSS.get(metric) else f"the AnyLoss {v['anyloss']} loss"
            if v["p_better"] is None:
                text += f"; {what} vs {v['baseline']}: no test (pip install baycomp)"
            else:
                text += (f"; {what} vs {v['baseline']}: P(better) {v['p_better']:.2f}, "
                         f"P(equivalent) {v['p_equivalent']:.2f}, P(worse) {v['p_worse']:.2f}")
        lines.append(text + ".")
    return "\n".join(lines)
