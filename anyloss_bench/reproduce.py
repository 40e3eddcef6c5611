"""``anyloss reproduce``: the paper's Table 6 on the datasets that load offline.

Datasets #1 (make_classification, 9:1) and #3 (breast cancer, 10:1); the paper's
protocol (10-fold CV, SLP 1,000 epochs or MLP 100 epochs, per-loss learning
rates of its Tables 17 and 18); each AnyLoss and SOL loss scored on its own
metric beside MSE and BCE, and our number printed beside the paper's.

``--protocol paper`` (the default) trains the SLP's MSE, BCE and AnyLoss losses as the
authors' code does (:mod:`anyloss_bench.protocols`: float64, zero init, full-batch plain
gradient descent, the delta rule as "MSE"); the SOL losses, which the authors trained
in Keras, and the MLP keep the Adam engine of ``anyloss compare``.  ``--protocol adam``
trains every SLP loss with Adam, as this command did before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Table 6 (and Tables 17-18 for G-mean): paper scores by (dataset, arch) and metric,
#: for (MSE, BCE, SOL, AnyLoss); SOL has no G-mean variant.
PAPER: dict[tuple[str, str], dict[str, tuple[float | None, ...]]] = {
    ("random", "slp"): {"accuracy": (.898, .921, .922, .922), "f1": (.075, .546, .634, .632),
                        "gmean": (.195, .665, None, .874), "balanced_accuracy": (.519, .714, .875, .875)},
    ("random", "mlp"): {"accuracy": (.920, .924, .923, .925), "f1": (.527, .590, .636, .637),
                        "gmean": (.651, .713, None, .867), "balanced_accuracy": (.711, .748, .858, .862)},
    ("breast_cancer", "slp"): {"accuracy": (.979, .984, .980, .987), "f1": (.863, .901, .922, .901),
                               "gmean": (.875, .919, None, .947), "balanced_accuracy": (.887, .927, .965, .963)},
    ("breast_cancer", "mlp"): {"accuracy": (.982, .995, .985, .995), "f1": (.833, .966, .955, 1.000),
                               "gmean": (.891, .968, None, .980), "balanced_accuracy": (.900, .971, .975, .983)},
}

#: Learning rates of Tables 17 (SLP) and 18 (MLP), by loss.
LEARNING_RATES: dict[tuple[str, str], dict[str, float]] = {
    ("random", "slp"): {"mse": 1e-2, "bce": 2e-1, "accuracy": 1e-2, "f1": 1e-2, "gmean": 1e-2,
                        "balanced_accuracy": 1e-2, "sol-accuracy": 1e-2, "sol-f1": 5e-3,
                        "sol-balanced_accuracy": 5e-3},
    ("random", "mlp"): {"mse": 1e-3, "bce": 5e-3, "accuracy": 4e-3, "f1": 1e-3, "gmean": 5e-3,
                        "balanced_accuracy": 5e-3, "sol-accuracy": 1e-3, "sol-f1": 1e-3,
                        "sol-balanced_accuracy": 2e-2},
    ("breast_cancer", "slp"): {"mse": 5e-2, "bce": 5e-2, "accuracy": 5e-4, "f1": 1e-3, "gmean": 3e-3,
                               "balanced_accuracy": 5e-3, "sol-accuracy": 1e-4, "sol-f1": 1e-4,
                               "sol-balanced_accuracy": 1e-4},
    ("breast_cancer", "mlp"): {"mse": 1e-3, "bce": 5e-3, "accuracy": 5e-3, "f1": 1e-2, "gmean": 1e-2,
                               "balanced_accuracy": 5e-3, "sol-accuracy": 1e-3, "sol-f1": 1e-2,
                               "sol-balanced_accuracy": 5e-3},
}

METRICS = ("accuracy", "f1", "gmean", "balanced_accuracy")
LOSSES = ("mse", "bce", "accuracy", "f1", "gmean", "balanced_accuracy", "sol-accuracy", "sol-f1",
          "sol-balanced_accuracy")
DATASET_LABELS = {"random": "#1 Random", "breast_cancer": "#3 Breast cancer"}


def epochs_for(loss: str, arch: str) -> int:
    """1,000 epochs for the SLP (100 for SOL, as the paper's Table 17 says), 100 for the MLP."""
    if arch == "mlp":
        return 100
    return 100 if loss.startswith("sol-") else 1000


def rows(results: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, arch, metric): ours and the paper's for MSE, BCE, SOL, AnyLoss, and the checks."""
    out = []
    for (dataset, arch), res in results.items():
        for metric in METRICS:
            ours = [res["mse"][metric]["mean"], res["bce"][metric]["mean"],
                    res[f"sol-{metric}"][metric]["mean"] if f"sol-{metric}" in res else None,
                    res[metric][metric]["mean"]]
            paper = PAPER[(dataset, arch)][metric]
            anyloss = ours[3]
            out.append({
                "dataset": dataset, "arch": arch, "metric": metric, "ours": ours, "paper": list(paper),
                "beats_baselines": anyloss > max(ours[0], ours[1]),
                "within_0.02_or_above": anyloss >= paper[3] - 0.02,
            })
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    """The reproduce table as markdown: 'ours (paper)' per cell."""

    def cell(ours: float | None, paper: float | None) -> str:
        if ours is None:
            return "-"
        return f"{ours:.3f} ({paper:.3f})" if paper is not None else f"{ours:.3f}"

    lines = [
        "| data | arch | metric | MSE | BCE | SOL | AnyLoss | beats MSE and BCE | within 0.02 of paper or above |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        cells = " | ".join(cell(o, p) for o, p in zip(r["ours"], r["paper"], strict=True))
        lines.append(f"| {DATASET_LABELS[r['dataset']]} | {r['arch'].upper()} | {r['metric']} | {cells} | "
                     f"{'yes' if r['beats_baselines'] else 'no'} | {'yes' if r['within_0.02_or_above'] else 'no'} |")
    return "\n".join(lines)


def paper_slp_results(data: Any, dataset: str, *, folds: int, seed: int, backend: str) -> dict[str, Any]:
    """``{loss: {metric: {mean, std}}}`` of the SLP under ``--protocol paper``: MSE, BCE and the AnyLoss losses
    by :func:`anyloss_bench.protocols.paper_slp_scores` (Table 17's learning rates), SOL by the Adam engine."""
    from sklearn.model_selection import StratifiedKFold

    from . import protocols
    from .cli import cross_validate

    lrs = LEARNING_RATES[(dataset, "slp")]
    gd_losses = [loss for loss in LOSSES if not loss.startswith("sol-")]
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(data.y)), data.y))
    scores = protocols.paper_slp_scores(data.X, data.y, gd_losses, lrs, splits, METRICS)
    results: dict[str, Any] = {loss: {m: {"mean": float(np.mean(v)), "std": float(np.std(v))} for m, v in s.items()}
                               for loss, s in scores.items()}
    sol = [loss for loss in LOSSES if loss.startswith("sol-")]
    sol_results, _ = cross_validate(data, sol, model="slp", folds=folds, epochs={n: epochs_for(n, "slp") for n in sol},
                                    lr=lrs, batch_size=None, backend=backend, seed=seed)
    results.update(sol_results)
    return results
