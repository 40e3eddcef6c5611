"""What the ``anyloss`` commands share: the loss names and what they train with, the scores, the paper's batch
sizes, the cross-validation folds, the cross-validation of ``anyloss compare`` (preprocessing fitted on each
training fold, :mod:`anyloss_bench.data`), and writing JSON.

Imported by the command modules (``compare``, ``reproduce``, ``suite``, ``speed``) and by ``protocols``; it imports
none of them.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

from .baselines import INNER_FOLDS, INNER_SEED_STEP, best_thresholds, inner_splits, pooled_scores
from .data import UsageError, write_text_atomic
from .engines import LossSpec, train

SCORES = ("accuracy", "f1", "gmean", "balanced_accuracy")

#: Loss names of ``--losses`` and what they train with.
LOSSES: dict[str, LossSpec] = {
    "mse": LossSpec("mse"),
    "bce": LossSpec("bce"),
    "bce+threshold": LossSpec("bce"),
    "wbce": LossSpec("wbce"),
    "focal": LossSpec("focal"),
    "accuracy": LossSpec("anyloss", "accuracy"),
    "f1": LossSpec("anyloss", "f1"),
    "f0.5": LossSpec("anyloss", "fbeta", (("beta", 0.5),)),
    "f2": LossSpec("anyloss", "fbeta", (("beta", 2.0),)),
    "gmean": LossSpec("anyloss", "gmean"),
    "balanced_accuracy": LossSpec("anyloss", "balanced_accuracy"),
    "sol-accuracy": LossSpec("anyloss", "accuracy", approximation="sol-cosine"),
    "sol-f1": LossSpec("anyloss", "f1", approximation="sol-cosine"),
    "sol-balanced_accuracy": LossSpec("anyloss", "balanced_accuracy", approximation="sol-cosine"),
    "bce+smote": LossSpec("bce"),
    "bce+undersample": LossSpec("bce"),
}
RESAMPLED = {"bce+smote", "bce+undersample"}
#: BCE, then per target metric the threshold that maximises it on out-of-fold scores of the training fold.
THRESHOLDED = {"bce+threshold"}
#: The AnyLoss losses (the verdict sets them against the best of the others).
ANYLOSS = {n for n, s in LOSSES.items() if s.kind == "anyloss" and s.approximation == "anyloss"}


def paper_batch_size(spec: LossSpec, model: str, n_train: int) -> int:
    """The paper's batch: the whole fold for the SLP; 5% of it for the MLP, 50% for the G-mean / B-Acc losses."""
    if model == "slp":
        return n_train
    share = 0.5 if spec.kind == "anyloss" and spec.metric in ("gmean", "balanced_accuracy") else 0.05
    return max(2, int(round(share * n_train)))


def check_backend(backend: str) -> None:
    module = {"jax": "optax", "torch": "torch", "keras": "keras"}[backend]
    try:
        __import__(module)
    except ImportError:
        extra = {"jax": "jax", "torch": "torch", "keras": "keras"}[backend]
        raise UsageError(f"--backend {backend} needs {module}: pip install 'anyloss[{extra}]'"
                         + (" optax" if backend == "jax" else "")) from None


def resample(name: str, X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        from imblearn.over_sampling import SMOTE
        from imblearn.under_sampling import RandomUnderSampler
    except ImportError:
        raise UsageError(f"loss {name!r} needs imbalanced-learn: pip install imbalanced-learn") from None
    sampler = SMOTE(random_state=seed) if name == "bce+smote" else RandomUnderSampler(random_state=seed)
    if name == "bce+smote":
        sampler.k_neighbors = max(1, min(5, int(y.sum()) - 1))
    return sampler.fit_resample(X, y)


def stratified_splits(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(train_index, validation_index)`` pairs of stratified ``folds``-fold cross-validation, shuffled by
    ``seed`` (scikit-learn's ``StratifiedKFold``), as every command splits its data."""
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def tuned_thresholds(data: Any, train_index: np.ndarray, *, fit: Any, seed: int,
                     inner_folds: int = INNER_FOLDS) -> dict[str, float]:
    """Per score, the logit threshold that maximises it on out-of-fold scores of the training fold only.

    As scikit-learn's ``TunedThresholdClassifierCV``: ``inner_folds`` stratified splits of ``train_index``,
    preprocessing and model fitted on each inner training part (``fit(X_tr, y_tr, X_va, seed) -> logits``), the
    held-out logits pooled, and ``anyloss_core.best_threshold`` on them (predicted positive when the logit is
    above the threshold, its decision rule).  Nothing outside ``train_index`` is read.
    """
    y = data.y[train_index]
    pairs = inner_splits(data.y, train_index, seed=seed, inner_folds=inner_folds)
    if len(pairs) == 1:  # too few minority samples to split: the training fold's own (in-sample) scores
        X_tr, _ = data.fold(train_index, train_index[:1])
        return best_thresholds(y, fit(X_tr, y, X_tr, seed), SCORES)
    logits = []
    for j, (fit_rows, scored_rows) in enumerate(pairs):
        X_itr, X_iva = data.fold(fit_rows, scored_rows)
        logits.append(fit(X_itr, data.y[fit_rows], X_iva, seed + INNER_SEED_STEP * (j + 1)))
    return best_thresholds(*pooled_scores(data.y, train_index, pairs, logits), SCORES)


def cross_validate(
    data: Any, losses: list[str], *, model: str, folds: int, epochs: dict[str, int], lr: dict[str, float],
    batch_size: int | None, backend: str, seed: int,
) -> tuple[dict[str, Any], dict[str, dict[str, list[float]]]]:
    """Stratified k-fold scores of each loss: ``({loss: {score: {mean, std}, seconds_per_epoch}}, per_fold)``.

    ``per_fold[loss][score]`` lists the score of each fold.  ``bce+threshold`` scores each metric at the threshold
    tuned for it on the training fold (:func:`tuned_thresholds`); its ``seconds_per_epoch`` adds up its fits.
    """
    import anyloss_core as al

    splits = stratified_splits(data.y, folds, seed)
    features = [data.fold(tr, va) for tr, va in splits]  # preprocessing fitted on each training fold
    results: dict[str, Any] = {}
    all_folds: dict[str, dict[str, list[float]]] = {}
    plain: dict[tuple[Any, ...], Any] = {}  # BCE fits of each fold, shared by bce and bce+threshold
    total, done, started = len(losses) * len(splits), 0, time.perf_counter()
    for name in losses:
        spec = LOSSES[name]
        per_fold: dict[str, list[float]] = {s: [] for s in SCORES}
        seconds = []
        for k, (tr, va) in enumerate(splits):
            X_tr, X_va = features[k]
            y_tr = data.y[tr]
            if name in RESAMPLED:
                X_tr, y_tr = resample(name, X_tr, y_tr, seed + k)
            batch = batch_size or paper_batch_size(spec, model, len(y_tr))
            key = (spec, k, epochs[name], lr[name], batch)
            result = plain.get(key) if name not in RESAMPLED else None
            if result is None:
                result = train(backend, spec, X_tr, y_tr, X_va, arch=model, epochs=epochs[name], lr=lr[name],
                               batch_size=batch, seed=seed + k)
                if name not in RESAMPLED:
                    plain[key] = result
            logits = result.val_logits.astype(np.float64)
            fold_seconds = result.seconds_per_epoch
            if name in THRESHOLDED:
                inner_seconds: list[float] = []

                def fit(X_a, y_a, X_b, fit_seed, name=name, spec=spec, inner_seconds=inner_seconds):
                    inner = train(backend, spec, X_a, y_a, X_b, arch=model, epochs=epochs[name], lr=lr[name],
                                  batch_size=batch_size or paper_batch_size(spec, model, len(y_a)), seed=fit_seed)
                    inner_seconds.append(inner.seconds_per_epoch)
                    return inner.val_logits

                thresholds = tuned_thresholds(data, tr, fit=fit, seed=seed + k)
                fold_seconds += sum(inner_seconds)
                for s in SCORES:
                    hard = (logits > thresholds[s]).astype(np.float64)
                    per_fold[s].append(float(al.score(s, data.y[va], hard)))
            else:
                for s in SCORES:
                    per_fold[s].append(float(al.score(s, data.y[va], logits, from_logits=True)))
            seconds.append(fold_seconds)
            done += 1
            _progress(done, total, started)
        results[name] = {s: {"mean": float(np.mean(v)), "std": float(np.std(v))} for s, v in per_fold.items()}
        results[name]["seconds_per_epoch"] = float(np.median(seconds))
        all_folds[name] = per_fold
    return results, all_folds


def _progress(done: int, total: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    if not sys.stderr.isatty() or elapsed < 2:
        return
    width = 30
    filled = int(width * done / total)
    eta = elapsed / done * (total - done)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} runs, {eta:4.0f}s left ")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def write_json(path: str, report: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(report, indent=2))

