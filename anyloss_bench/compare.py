"""``anyloss compare``: which loss gives the best F1 (or balanced accuracy, G-mean,
accuracy) on your data?  Stratified k-fold cross-validation of the paper's SLP or
MLP trained with each loss; the features' preprocessing (imputation, one-hot
encoding, standardization) is fitted on each training fold only.  A verdict per
metric ends the table (``verdict.py``: Bayesian correlated t-test over the folds).
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

import numpy as np

from . import parallel
from . import verdict as verdict_module
from .common import ANYLOSS, LOSSES, RESAMPLED, SCORES, check_backend, cross_validate, write_json
from .data import UsageError, check_writable, load_csv, load_dataset, parse_sep
from .engines import BACKENDS


def _parse_losses(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOSSES]
    if unknown:
        raise UsageError(f"unknown loss {unknown[0]!r}; choose from {', '.join(LOSSES)}")
    if not names:
        raise UsageError("--losses is empty")
    return names


def _default_losses(backend: str = "jax") -> list[str]:
    """Every loss whose packages are installed."""
    names = list(LOSSES)
    try:
        import imblearn  # noqa: F401
    except ImportError:
        names = [n for n in names if n not in RESAMPLED]
    if backend == "torch" and not _has_torchvision():
        names.remove("focal")
    return names


def _has_torchvision() -> bool:
    try:
        import torchvision.ops  # noqa: F401
    except ImportError:
        return False
    return True


def _check_loss_packages(losses: list[str], backend: str) -> None:
    if "focal" in losses and backend == "torch" and not _has_torchvision():
        raise UsageError("loss 'focal' on --backend torch needs torchvision (its sigmoid_focal_loss): "
                         "pip install torchvision")



def compare_multiclass(args: argparse.Namespace) -> dict[str, Any]:
    """``compare --task multiclass``: macro-F1 AnyLoss against cross-entropy (JAX, folds vectorized)."""
    from . import multiclass

    if args.backend != "jax":
        raise UsageError("--task multiclass runs on the JAX backend (--backend jax)")
    if args.positive is not None:
        raise UsageError("--positive is for a binary target; --task multiclass scores every class")
    names = [n.strip() for n in (args.losses or ",".join(multiclass.LOSSES)).split(",") if n.strip()]
    unknown = [n for n in names if n not in multiclass.LOSSES]
    if unknown:
        raise UsageError(f"unknown multiclass loss {unknown[0]!r}; choose from {', '.join(multiclass.LOSSES)}")
    check_backend("jax")
    dropped, preprocessor = 0, None
    if args.csv:
        data = load_csv(args.csv, args.target, multiclass=True, sep=args.sep)
        name, X, y, d = data.name, data.X, data.y, data.n_features
        dropped, preprocessor = data.dropped_rows, data.preprocessor()
    else:
        name = args.dataset if args.dataset != "breast_cancer" else "digits"
        X, y = multiclass.load(name, seed=args.seed)
        d = X.shape[1]
    arch = "linear" if args.model == "slp" else "mlp"
    epochs = args.epochs or 1000
    if min(np.bincount(y)) < args.folds:
        raise UsageError(f"the smallest class has {min(np.bincount(y))} samples, fewer than --folds {args.folds}")
    results = multiclass.compare(X, y, names, arch=arch, folds=args.folds, epochs=epochs, lr=args.lr, seed=args.seed,
                                 preprocessor=preprocessor)
    print(multiclass.format_table(name, d, y, results, arch, args.folds, dropped=dropped))
    report = {"dataset": name, "task": "multiclass", "n_samples": int(len(y)), "n_features": int(d),
              "classes": int(y.max()) + 1, "model": arch, "folds": args.folds, "epochs": epochs, "lr": args.lr,
              "dropped_missing_target": dropped, "results": results}
    if args.json:
        write_json(args.json, report)
    return report


def _check_options(args: argparse.Namespace) -> None:
    """``compare``'s option values, checked before any data is read or model trained."""
    if args.csv and not args.target:
        raise UsageError("--csv needs --target COLUMN")
    if not args.csv and (args.target or args.sep):
        raise UsageError(f"{'--target' if args.target else '--sep'} goes with --csv FILE")
    args.sep = parse_sep(args.sep)
    if args.folds < 2:
        raise UsageError(f"--folds must be at least 2, got {args.folds}")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a positive number, got {args.lr:g}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_writable(args.json, "--json")
    check_writable(args.plot, "--plot")
    if args.csv and not os.path.isfile(args.csv):
        raise UsageError(f"no such file: {args.csv}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    _check_options(args)
    nproc = parallel.check_nproc(getattr(args, "nproc", None), args.backend)
    if nproc > 1 and args.task == "multiclass":
        raise UsageError("--nproc runs --task binary (the multi-class comparison trains its folds in one JAX "
                         "program)")
    if args.task == "multiclass":
        return compare_multiclass(args)
    losses = _parse_losses(args.losses) if args.losses else _default_losses(args.backend)
    if args.csv:
        data = load_csv(args.csv, args.target, args.positive, sep=args.sep)
    else:
        data = load_dataset(args.dataset, seed=args.seed)
        if args.positive is not None and args.positive != data.positive_class:
            raise UsageError(f"--positive {args.positive!r}: the positive class of --dataset {data.name} is "
                             f"{data.positive_class!r} (--positive chooses one for --csv)")
    minority = int(min(data.y.sum(), len(data.y) - data.y.sum()))
    if minority < args.folds:
        raise UsageError(f"the minority class has {minority} samples, fewer than --folds {args.folds}")
    check_backend(args.backend)
    _check_loss_packages(losses, args.backend)
    # Every option and the data checked here, before any worker starts; each worker runs this function again.
    launched, report = parallel.maybe_parallel(args, nproc)
    if launched:
        return report

    epochs = args.epochs or (1000 if args.model == "slp" else 100)
    results, per_fold = cross_validate(
        data, losses, model=args.model, folds=args.folds, epochs={n: epochs for n in losses},
        lr={n: args.lr for n in losses}, batch_size=args.batch_size, backend=args.backend, seed=args.seed,
    )
    report = {
        "dataset": data.name,
        "n_samples": int(len(data.y)),
        "n_features": int(data.n_features),
        "positive_class": data.positive_class,
        "positive_rate": data.positive_rate,
        "dropped_missing_target": data.dropped_rows,
        "model": args.model,
        "folds": args.folds,
        "backend": args.backend,
        "epochs": epochs,
        "nproc": parallel.world()[1],
        "results": results,
        "verdict": verdict_module.verdict(per_fold, ANYLOSS, SCORES),
    }
    print(format_table(report))
    print()
    print(verdict_module.format_verdict(report["verdict"]))
    if args.json:
        write_json(args.json, report)
    if args.plot:
        _plot(args.plot, per_fold, report)
    return report



def format_table(report: dict[str, Any]) -> str:
    """Losses x scores as mean +- std, best per score marked with *, time relative to BCE."""
    results = report["results"]
    best = {s: max(r[s]["mean"] for r in results.values()) for s in SCORES}
    base = results.get("bce", {}).get("seconds_per_epoch")
    dropped = report.get("dropped_missing_target") or 0
    head = (f"{report['dataset']}: n={report['n_samples']}"
            + (f" ({dropped} row{'s' if dropped != 1 else ''} without a target dropped)" if dropped else "")
            + f", d={report['n_features']}, positive class {report.get('positive_class')!r} "
            f"(rate {report['positive_rate']:.3f}), {report['model'].upper()}, "
            f"{report['folds']}-fold CV, backend {report.get('backend', '?')}")
    lines = [head, f"{'loss':<22}" + "".join(f"{s:>20}" for s in SCORES) + f"{'time/BCE':>10}"]
    for name, r in results.items():
        cells = []
        for s in SCORES:
            mark = "*" if math.isclose(r[s]["mean"], best[s]) else " "
            cells.append(f"{r[s]['mean']:.3f} ± {r[s]['std']:.3f}{mark}".rjust(20))
        rel = f"{r['seconds_per_epoch'] / base:.2f}x" if base else "-"
        lines.append(f"{name:<22}" + "".join(cells) + f"{rel:>10}")
    lines.append("* best mean for that score")
    return "\n".join(lines)



def _plot(path: str, per_fold: dict[str, dict[str, list[float]]], report: dict[str, Any]) -> None:
    """Per metric, each loss's fold scores (box and points), the verdict's AnyLoss / baseline pair in colour."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib") from None
    names = list(per_fold)
    fig, axes = plt.subplots(len(SCORES), 1, figsize=(max(6.0, 0.55 * len(names) + 2), 2.6 * len(SCORES)),
                             sharex=True)
    rng = np.random.default_rng(0)
    for ax, s in zip(np.atleast_1d(axes), SCORES, strict=True):
        data = [per_fold[n][s] for n in names]
        ax.boxplot(data, widths=0.5, showfliers=False)
        v = report.get("verdict", {}).get(s, {})
        for i, (n, values) in enumerate(zip(names, data, strict=True), start=1):
            color = "tab:red" if n == v.get("anyloss") else "tab:blue" if n == v.get("baseline") else "0.4"
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=10, color=color, zorder=3)
        ax.set_ylabel(verdict_module.LABELS.get(s, s) + " per fold")
        if v:
            title = f"best {v['best']} ({v['best_mean']:.3f})"
            if v.get("p_better") is not None:
                title += (f"; {v['anyloss']} (red) vs {v['baseline']} (blue): P(better) {v['p_better']:.2f}, "
                          f"P(equivalent) {v['p_equivalent']:.2f}, P(worse) {v['p_worse']:.2f}")
            ax.set_title(title, fontsize=8)
    np.atleast_1d(axes)[-1].set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right", fontsize=8)
    fig.suptitle(f"{report['dataset']}, {report['model'].upper()}, {report['folds']}-fold CV")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)



def add_parser(sub: Any) -> None:
    """``anyloss compare``'s options, on the ``anyloss`` command's subparsers ``sub``."""
    cmp = sub.add_parser("compare", help="compare losses by cross-validation on a dataset or CSV file")
    src = cmp.add_mutually_exclusive_group()
    src.add_argument("--dataset", default="breast_cancer", help="bundled dataset: breast_cancer, random, digits")
    src.add_argument("--csv", help="a CSV file with a header row")
    cmp.add_argument("--target", help="the class column of --csv")
    cmp.add_argument("--sep", help="the field separator of --csv, one character or \\t (default: sniffed from "
                                   "',', ';', tab and '|')")
    cmp.add_argument("--positive", help="the value of --target that is the positive class, the one F1 and "
                                        "precision / recall score (default: the minority class); named in the "
                                        "table header and the JSON")
    cmp.add_argument("--task", choices=("binary", "multiclass"), default="binary",
                     help="multiclass: --dataset digits, digits_imbalanced or mnist (or a CSV), losses ce, "
                          "macro_f1, macro_f1_sharp2, macro_f1_sharp4, macro_f1_ovr; slp = softmax regression, "
                          "mlp = 32 ReLU units")
    cmp.add_argument("--losses", help=f"comma-separated, from: {', '.join(LOSSES)} (default: all)")
    cmp.add_argument("--model", choices=("slp", "mlp"), default="slp")
    cmp.add_argument("--folds", type=int, default=10)
    cmp.add_argument("--epochs", type=int, default=None, help="default: 1000 for slp, 100 for mlp (the paper)")
    cmp.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate, > 0 (default: 0.01)")
    cmp.add_argument("--batch-size", type=int, default=None,
                     help="default: the whole training fold for slp, 5%% of it for mlp (50%% for gmean/B-Acc)")
    cmp.add_argument("--backend", choices=BACKENDS, default="jax")
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--nproc", type=int, default=None,
                     help="train data-parallel in N processes (torch.distributed: gloo on CPU, NCCL on GPUs; "
                          "needs --backend torch): each takes its shard of every batch, the AnyLoss counts are "
                          "all-reduced every step, so the models equal one process's up to rounding; under "
                          "torchrun leave it out (default: 1, or torchrun's WORLD_SIZE)")
    cmp.add_argument("--json", help="write the results as JSON")
    cmp.add_argument("--plot", help="write each loss's per-fold scores, per metric, as PNG")
    cmp.set_defaults(func=run)
