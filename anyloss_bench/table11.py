"""``anyloss reproduce --table 11``: the paper's large-data experiment, on an analogue of Kaggle's "Huge Titanic".

The paper (section 5.2, Table 11) trains its SLP and MLP on Huge Titanic, 799,603 rows x 7 features after
dropping rows with missing values, 62:38 negatives to positives.  That file needs a Kaggle download, so by
default this command builds an **analogue**: 1,000,000 rows (``--rows``) of ``make_classification`` with a
fixed seed, 7 columns, 38% positives, of which 3 are turned into categorical columns (quantile bins: 3, 2 and 3
levels, like Pclass, Sex and Embarked), one-hot encoded (scikit-learn's ``OneHotEncoder``; numeric columns
standardized by its ``StandardScaler``), both fitted on the training rows only: 4 + 3 + 2 + 3 = 12 model inputs.

With ``--data-dir DIR`` holding the Kaggle file :data:`TITANIC_FILE`, that file is used instead: target
``Survived``; features Pclass, Sex, Age, SibSp, Parch, Fare, Embarked (Pclass, Sex, Embarked categorical); rows
with a missing value in any of them dropped, as the paper did.  When the folder lacks the file, one line names
it and the analogue is used.

Protocol (ours; the paper does not give one for Table 11): one stratified hold-out split, 20% of the rows for
validation; Adam, mini-batches of 4,096 rows (``--batch-size``) streamed from the arrays (a seeded permutation per
epoch, each batch gathered into buffers allocated once: :class:`anyloss_bench.engines.BatchGatherer`), 5 epochs
(``--epochs``), learning rate 0.01 for every loss.  Losses: MSE, BCE, the
AnyLoss accuracy, F1 and balanced-accuracy losses, and the strong baselines BCE+threshold (BCE refitted on 80% of
the training rows, its threshold per metric tuned on the other 20% by ``anyloss_core.best_threshold``) and WBCE
(balanced class weights).  Each is scored on accuracy, F1 and balanced accuracy of the validation rows.  The
table sets each AnyLoss loss, on its own metric, beside MSE and BCE, with the paper's figures in parentheses.

Throughput: rows/s of each loss (training rows / median epoch wall time after the first), AnyLoss against BCE.
``--compile`` (torch) runs each step's forward pass and loss as one ``torch.compile`` program.  For figures
robust to a shared machine, ``python -m anyloss_bench.table11 --rounds 5`` (:func:`throughput`) interleaves the
losses and reports the 10th percentile of the epoch times.

Memory, as reported (:func:`memory_report`): the process's peak resident memory during the run minus its resident
memory after the framework, the adapter and scikit-learn were imported and a 64-row warm-up fit ran (so lazily
loaded framework code is not counted as data), before the data are made; beside the size of the float32 model
inputs (training + validation arrays).  On Linux the peak is reset (``/proc/self/clear_refs``) at that point, so
it is the peak of the run itself; rank 0 under ``--nproc``.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any

import numpy as np

from .data import UsageError

#: Table 11 of the paper: (MSE, BCE, AnyLoss) by architecture and metric.
PAPER = {
    "slp": {"accuracy": (.800, .806, .814), "f1": (.726, .734, .739), "balanced_accuracy": (.780, .786, .788)},
    "mlp": {"accuracy": (.807, .814, .822), "f1": (.730, .729, .746), "balanced_accuracy": (.783, .784, .796)},
}
METRICS = ("accuracy", "f1", "balanced_accuracy")
LOSSES = ("mse", "bce", "accuracy", "f1", "balanced_accuracy", "bce+threshold", "wbce")
ROWS = 1_000_000
POSITIVE_RATE = 0.38
EPOCHS = 5
BATCH_SIZE = 4096
LR = 0.01
VALIDATION = 0.2
#: Rows encoded at a time (bounds the encoder's temporary arrays).
ENCODE_CHUNK = 65_536
#: The file of Kaggle's "Titanic Huge Dataset - 1M Passengers" (the paper's reference [15]).
TITANIC_FILE = "huge_1M_titanic.csv"
TITANIC_URL = "https://www.kaggle.com/datasets/marcpaulo/titanic-huge-dataset-1m-passengers"
TITANIC_TARGET = "Survived"
TITANIC_NUMERIC = ("Age", "SibSp", "Parch", "Fare")
TITANIC_CATEGORICAL = ("Pclass", "Sex", "Embarked")


def analogue(rows: int = ROWS, seed: int = 0) -> tuple[Any, np.ndarray]:
    """``(frame, y)``: the Huge Titanic analogue, ``rows`` x 7 columns (4 numeric, 3 categorical), 38% positive.

    ``make_classification`` (5 informative features, 1 redundant, 2 clusters per class, 5% of labels flipped,
    ``random_state=seed``, rows in class order: the split and the batches shuffle them); columns 4-6 cut at their
    quantiles into 3, 2 and 3 categories.

    >>> frame, y = analogue(10_000)
    >>> frame.shape, sorted(frame.dtypes.astype(str).unique()), round(float(y.mean()), 2)
    ((10000, 7), ['category', 'float32'], 0.38)
    """
    import pandas as pd
    from sklearn.datasets import make_classification

    flip = 0.05
    # flip_y relabels that share of rows at random (half of them positive): draw fewer positives to end at 38%.
    drawn = (POSITIVE_RATE - flip / 2) / (1 - flip)
    X, y = make_classification(n_samples=rows, n_features=7, n_informative=5, n_redundant=1, n_repeated=0,
                               n_clusters_per_class=2, weights=[1 - drawn], flip_y=flip, class_sep=0.8,
                               shuffle=False, random_state=seed)  # no shuffle: two fewer copies of X
    # float32 columns: half the frame's memory; the model inputs are float32 anyway.
    frame = pd.DataFrame({f"num_{i}": X[:, i].astype(np.float32) for i in range(4)})
    for col, levels in zip(range(4, 7), (3, 2, 3), strict=True):
        frame[f"cat_{col - 4}"] = pd.qcut(X[:, col], levels, labels=[chr(97 + k) for k in range(levels)])
    return frame, y.astype(np.int64)


def load_titanic(path: str) -> tuple[Any, np.ndarray]:
    """``(frame, y)`` from the Kaggle file: the 7 features, rows with a missing value dropped (the paper: 799,603
    of 1,000,000)."""
    import pandas as pd

    columns = (TITANIC_TARGET, *TITANIC_NUMERIC, *TITANIC_CATEGORICAL)
    try:
        frame = pd.read_csv(path, usecols=lambda c: c in columns)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise UsageError(f"{path}: column {absent[0]!r} not found (expected the Kaggle file, {TITANIC_URL})")
    frame = frame.dropna(subset=list(columns))
    y = frame.pop(TITANIC_TARGET).to_numpy().astype(np.int64)
    if not np.isin(y, (0, 1)).all():
        raise UsageError(f"{path}: {TITANIC_TARGET} holds values other than 0 and 1")
    for c in TITANIC_CATEGORICAL:
        frame[c] = frame[c].astype(str).astype("category")
    return frame.reset_index(drop=True), y


def encode(frame: Any, train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 model inputs of the training and validation rows: numeric columns standardized (scikit-learn's
    ``StandardScaler``), categorical ones one-hot encoded (``OneHotEncoder``), both fitted on the training rows
    only, numeric columns first.

    What a ``ColumnTransformer`` does, but its ``fit`` is a ``fit_transform`` that materializes the whole encoded
    training set in float64 (95 MiB more peak memory at 1,000,000 rows): here each transformer is fitted on its
    columns alone and the rows are transformed in chunks into one float32 array.
    """
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = [c for c in frame.columns if str(frame[c].dtype) == "category"]
    numeric = [c for c in frame.columns if c not in categorical]
    fit_rows = frame.iloc[train]
    scaler = StandardScaler().fit(fit_rows[numeric]) if numeric else None
    onehot = (OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)
              .fit(fit_rows[categorical]) if categorical else None)
    del fit_rows
    width = len(numeric) + (sum(len(c) for c in onehot.categories_) if onehot is not None else 0)

    def apply(rows: np.ndarray) -> np.ndarray:
        out = aligned_empty((len(rows), width), np.float32)
        for i in range(0, len(rows), ENCODE_CHUNK):
            part = frame.iloc[rows[i: i + ENCODE_CHUNK]]
            if scaler is not None:
                out[i: i + ENCODE_CHUNK, : len(numeric)] = scaler.transform(part[numeric])
            if onehot is not None:
                out[i: i + ENCODE_CHUNK, len(numeric):] = onehot.transform(part[categorical])
        return out

    return apply(train), apply(val)


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def aligned_empty(shape: tuple[int, ...], dtype: Any, align: int = 64) -> np.ndarray:
    """``numpy.empty(shape, dtype)`` whose data start on an ``align``-byte boundary: JAX's ``device_put`` then
    uses the array in place on the CPU instead of copying it (NumPy aligns to 16 bytes only).

    >>> aligned_empty((3, 5), np.float32).ctypes.data % 64
    0
    """
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(size + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start: start + size].view(dtype).reshape(shape)


def peak_memory_mb() -> float:
    """The process's peak resident memory in MiB (``VmHWM`` of /proc/self/status; ``ru_maxrss`` elsewhere)."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def resident_memory_mb() -> float:
    """The process's resident memory now, in MiB (``VmRSS``; the peak where /proc is missing)."""
    rss = _status_mb("VmRSS")
    return rss if rss is not None else peak_memory_mb()


def reset_peak_memory() -> bool:
    """Make ``VmHWM`` the current resident memory (Linux: ``5`` into ``/proc/self/clear_refs``); False where the
    peak cannot be reset (then :func:`peak_memory_mb` is the peak since the process started)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def memory_report(baseline_mb: float, peak_mb: float, arrays_bytes: int, peak_reset: bool) -> dict[str, Any]:
    """``added_mb = peak_mb - baseline_mb`` (the run's peak over the resident memory before the data) beside the
    model inputs' size, and their ratio (the target: under 4).

    >>> memory_report(300.0, 420.0, 40 * 2**20, True)["added_over_arrays"]
    3.0
    """
    arrays_mb = arrays_bytes / 2**20
    added = peak_mb - baseline_mb
    return {"peak_mb": peak_mb, "before_data_mb": baseline_mb, "added_mb": added, "arrays_mb": arrays_mb,
            "added_over_arrays": added / arrays_mb if arrays_mb else float("nan"), "peak_reset": peak_reset}


def import_stack(backend: str) -> None:
    """Import the framework of ``backend``, its adapter, pandas and scikit-learn (what the run uses)."""
    import importlib

    import pandas  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.preprocessing  # noqa: F401

    for module in {"torch": ("torch", "anyloss_torch"), "jax": ("jax", "optax", "anyloss_jax"),
                   "keras": ("keras", "anyloss_keras")}.get(backend, ()):
        importlib.import_module(module)


def warm_up(backend: str, compile: bool = False) -> None:
    """Train 64 rows for one epoch (BCE and an AnyLoss loss, SLP and MLP), so that code the framework loads on
    first use is resident before the memory baseline is taken (torch's first ``Adam.step`` imports
    ``torch._dynamo``, ``torch._inductor`` and sympy: about 80 MiB)."""
    from .common import LOSSES as SPECS
    from .engines import train

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 12)).astype(np.float32)
    y = np.arange(64) % 2
    for arch in ("slp", "mlp"):
        for name in ("bce", "f1"):
            train(backend, SPECS[name], X, y, X[:8], arch=arch, epochs=1, lr=LR, batch_size=32, seed=0,
                  compile=compile)


def one_thread_per_process() -> None:
    """torch on ``OMP_NUM_THREADS`` threads (default 1): rows/s per core, and no slowdown by threads that wait
    on each other when the cores are shared (two threads on 2 busy cores trained 100x slower here)."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def _progress(label: str, epochs: int, rank: int) -> Any:
    """``on_epoch`` for the engines: one status line per epoch with the rows/s of that epoch (rank 0 only)."""

    live = rank == 0 and sys.stderr.isatty()

    def on_epoch(epoch: int, seconds: float, rows: int) -> None:
        if live:
            sys.stderr.write(f"\r  {label}: epoch {epoch + 1}/{epochs}, {rows / max(seconds, 1e-9):,.0f} rows/s   ")
            sys.stderr.flush()

    return on_epoch


def run(args: Any, nproc: int) -> dict[str, Any]:
    """Train and score every loss of :data:`LOSSES` on the analogue (or the Kaggle file); print and return."""
    import anyloss_core as al

    from . import parallel
    from .baselines import best_thresholds
    from .common import LOSSES as SPECS
    from .common import check_backend, write_json
    from .engines import train

    rows = args.rows if args.rows is not None else ROWS
    if rows < 100:
        raise UsageError(f"--rows must be at least 100, got {rows}")
    epochs = args.epochs or EPOCHS
    batch = args.batch_size or BATCH_SIZE
    archs = ("slp", "mlp") if args.arch == "both" else (args.arch,)
    source = "analogue"
    path = None
    if args.data_dir is not None:
        path = os.path.join(args.data_dir, TITANIC_FILE)
        if os.path.isfile(path):
            source = "kaggle"
        else:
            print(f"Table 11: {TITANIC_FILE} not in {args.data_dir} (Kaggle: {TITANIC_URL}); using the "
                  "make_classification analogue", file=sys.stderr)
    if source == "kaggle" and args.rows is not None:
        raise UsageError("--rows sizes the analogue; the Kaggle file is used whole")
    compile = bool(getattr(args, "compile", False))
    if compile and args.backend != "torch":
        raise UsageError(f"--compile (torch.compile) is for --backend torch, not {args.backend}")
    if compile and nproc > 1:
        raise UsageError("--compile runs in one process (leave out --nproc)")
    check_backend(args.backend)
    launched, result = parallel.maybe_parallel(args, nproc)
    if launched:
        return result

    rank, size = parallel.world()
    if args.backend == "torch":
        one_thread_per_process()
    started = time.perf_counter()
    import_stack(args.backend)
    imported_mb = resident_memory_mb()
    warm_up(args.backend, compile)
    baseline_mb = resident_memory_mb()
    peak_reset = reset_peak_memory()
    frame, y = load_titanic(path) if source == "kaggle" else analogue(rows, args.seed)
    from sklearn.model_selection import train_test_split

    tr, va = train_test_split(np.arange(len(y)), test_size=VALIDATION, stratify=y, random_state=args.seed)
    X_tr, X_va = encode(frame, tr, va)
    y_tr, y_va = y[tr], y[va]
    data_mb = (frame.memory_usage(deep=True).sum()) / 2**20
    n_rows, positive_rate = len(y), float(y.mean())
    del frame, y, tr, va  # only the encoded arrays from here on
    # bce+threshold: BCE refitted on 80% of the training rows, its thresholds tuned on the other 20%.
    fit_rows, tune_rows = train_test_split(np.arange(len(y_tr)), test_size=0.2, stratify=y_tr,
                                           random_state=args.seed + 1)
    results: dict[str, dict[str, Any]] = {}
    speed: dict[str, dict[str, float]] = {}
    for arch in archs:
        results[arch], speed[arch] = {}, {}
        for name in LOSSES:
            label = f"{arch.upper()} {name}"
            spec = SPECS[name]
            loss_started = time.perf_counter()
            if name == "bce+threshold":
                bce_logits = results[arch]["bce"]["logits"]
                # rows=: the fit rows are gathered from X_tr batch by batch, not copied out first.
                tune = train(args.backend, spec, X_tr, y_tr, X_tr[tune_rows], arch=arch, rows=fit_rows,
                             epochs=epochs, lr=LR, batch_size=batch, seed=args.seed + 1, compile=compile,
                             on_epoch=_progress(label + " (tuning fit)", epochs, rank))
                cut = best_thresholds(y_tr[tune_rows], tune.val_logits.astype(np.float64), METRICS)
                scores = {m: float(al.score(m, y_va, (bce_logits > cut[m]).astype(np.float64))) for m in METRICS}
                results[arch][name] = {"scores": scores, "thresholds": cut}
            else:
                out = train(args.backend, spec, X_tr, y_tr, X_va, arch=arch, epochs=epochs, lr=LR, batch_size=batch,
                            seed=args.seed, compile=compile, on_epoch=_progress(label, epochs, rank))
                logits = out.val_logits.astype(np.float64)
                scores = {m: float(al.score(m, y_va, logits, from_logits=True)) for m in METRICS}
                rate = len(y_tr) / out.seconds_per_epoch
                results[arch][name] = {"scores": scores}
                if name == "bce":  # bce+threshold thresholds them; the other losses' logits are not kept
                    results[arch][name]["logits"] = logits
                del out, logits
                speed[arch][name] = rate
            if rank == 0:
                tail = f", {speed[arch][name]:,.0f} rows/s" if name in speed[arch] else ""
                sys.stderr.write(f"\r  {label}: {time.perf_counter() - loss_started:.1f} s{tail}"
                                 + " " * 20 + "\n")
    for arch in archs:
        for r in results[arch].values():
            r.pop("logits", None)
    table = rows_of(results)
    report = {
        "table": 11, "data": source, "rows": n_rows, "columns": 7, "features": int(X_tr.shape[1]),
        "positive_rate": positive_rate, "train_rows": int(len(y_tr)), "validation_rows": int(len(y_va)),
        "epochs": epochs, "batch_size": batch, "lr": LR, "backend": args.backend, "compile": compile,
        "nproc": size, "seed": args.seed, "results": results, "rows_per_second": speed, "table_rows": table,
        "memory": {**memory_report(baseline_mb, peak_memory_mb(), X_tr.nbytes + X_va.nbytes, peak_reset),
                   "data_mb": float(data_mb), "imported_mb": imported_mb,
                   "added_since_import_mb": peak_memory_mb() - imported_mb},
        "wall_seconds": time.perf_counter() - started,
    }
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
    if args.markdown:
        from .data import write_text_atomic

        write_text_atomic(args.markdown, markdown(table) + "\n")
    return report


def rows_of(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (arch, metric): ours for MSE, BCE, the AnyLoss loss of that metric, BCE+threshold, WBCE; the paper's."""
    out = []
    for arch, res in results.items():
        for m in METRICS:
            ours = [res["mse"]["scores"][m], res["bce"]["scores"][m], res[m]["scores"][m]]
            out.append({"arch": arch, "metric": m, "ours": ours, "paper": list(PAPER[arch][m]),
                        "strong": {b: res[b]["scores"][m] for b in ("bce+threshold", "wbce") if b in res},
                        "beats_baselines": ours[2] > max(ours[:2])})
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    """'ours (paper)' per cell for MSE, BCE, AnyLoss; ours for the strong baselines."""
    lines = ["| arch | metric | MSE | BCE | AnyLoss | AnyLoss above MSE and BCE | BCE+threshold | WBCE |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        cells = " | ".join(f"{o:.3f} ({p:.3f})" for o, p in zip(r["ours"], r["paper"], strict=True))
        strong = " | ".join(f"{r['strong'][b]:.3f}" if b in r["strong"] else "-" for b in ("bce+threshold", "wbce"))
        lines.append(f"| {r['arch'].upper()} | {r['metric']} | {cells} | "
                     f"{'yes' if r['beats_baselines'] else 'no'} | {strong} |")
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    """The table, then rows/s (AnyLoss beside BCE) and the peak memory."""
    what = ("Huge Titanic (Kaggle file)" if report["data"] == "kaggle"
            else "the make_classification ANALOGUE of Huge Titanic (not the Kaggle data)")
    head = (f"Table 11, ours (paper), on {what}: {report['rows']:,} rows x {report['columns']} columns "
            f"({report['features']} inputs after one-hot encoding), positive rate {report['positive_rate']:.3f}; "
            f"hold-out {report['validation_rows']:,} rows; {report['epochs']} epochs, batch {report['batch_size']}, "
            f"backend {report['backend']}{' (torch.compile)' if report.get('compile') else ''}, "
            f"{report['nproc']} process{'es' if report['nproc'] > 1 else ''}\n")
    lines = [head, markdown(report["table_rows"]), ""]
    for arch, rates in report["rows_per_second"].items():
        anyloss = [rates[m] for m in METRICS if m in rates]
        if "bce" in rates and anyloss:
            mean = float(np.mean(anyloss))
            lines.append(f"{arch.upper()} rows/s: BCE {rates['bce']:,.0f}, AnyLoss (mean of 3) {mean:,.0f} "
                         f"({mean / rates['bce']:.2f}x BCE); MSE {rates.get('mse', float('nan')):,.0f}")
    mem = report["memory"]
    lines.append(f"memory: peak {mem['peak_mb']:,.0f} MiB, {mem['before_data_mb']:,.0f} MiB resident before the "
                 f"data (framework imported, warm-up fit done): the run added {mem['added_mb']:,.0f} MiB = "
                 f"{mem['added_over_arrays']:.1f}x the {mem['arrays_mb']:,.0f} MiB of float32 model inputs "
                 f"(the data: {mem['data_mb']:,.0f} MiB as a DataFrame; {mem['added_since_import_mb']:,.0f} MiB "
                 f"over the {mem['imported_mb']:,.0f} MiB right after the imports, before the warm-up); "
                 f"wall time {report['wall_seconds']:.0f} s")
    return "\n".join(lines)


def throughput(rows: int = ROWS, *, backend: str = "torch", arch: str = "slp", compile: bool = False,
               rounds: int = 5, epochs: int = 3, batch_size: int = BATCH_SIZE, seed: int = 0,
               losses: tuple[str, ...] = ("bce", "accuracy", "f1", "balanced_accuracy", "mse")) -> dict[str, Any]:
    """Rows/s of each loss on the analogue's training rows, robust to a shared machine: ``rounds`` rounds, each
    training every loss for ``epochs`` epochs in a rotated order (so a burst of load hits every loss alike);
    rows/s = training rows / the 10th percentile of all epoch times after each fit's first (compilation out).

    Returns ``{"rows_per_second": {loss: rate}, "over_bce": {loss: rate / BCE's}, "load": (before, after)}``
    (1-minute load averages).  Example: ``python -m anyloss_bench.table11 --rows 1000000 --compile``.
    """
    from sklearn.model_selection import train_test_split

    from .common import LOSSES as SPECS
    from .engines import train

    if backend == "torch":
        one_thread_per_process()
    frame, y = analogue(rows, seed)
    tr, va = train_test_split(np.arange(len(y)), test_size=VALIDATION, stratify=y, random_state=seed)
    X_tr, _ = encode(frame, tr, va[:1])
    y_tr = y[tr]
    del frame, y, tr, va
    load_before = os.getloadavg()[0]
    seconds: dict[str, list[float]] = {name: [] for name in losses}
    for r in range(rounds):
        for name in losses[r % len(losses):] + losses[: r % len(losses)]:
            out = train(backend, SPECS[name], X_tr, y_tr, X_tr[:8], arch=arch, epochs=epochs, lr=LR,
                        batch_size=batch_size, seed=seed + r, compile=compile)
            seconds[name] += out.epoch_seconds[1:]
    rates = {name: len(y_tr) / float(np.percentile(s, 10)) for name, s in seconds.items()}
    over = {name: rate / rates["bce"] for name, rate in rates.items()} if "bce" in rates else {}
    return {"rows_per_second": rates, "over_bce": over, "load": (load_before, os.getloadavg()[0]),
            "train_rows": int(len(y_tr)), "backend": backend, "arch": arch, "compile": compile, "rounds": rounds,
            "epochs": epochs, "batch_size": batch_size}


def _main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m anyloss_bench.table11",
                                     description="Table 11's rows/s per loss, interleaved, 10th percentile")
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--backend", choices=("torch", "jax"), default="torch")
    parser.add_argument("--arch", choices=("slp", "mlp"), default="slp")
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward pass and loss")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args(argv)
    out = throughput(args.rows, backend=args.backend, arch=args.arch, compile=args.compile, rounds=args.rounds,
                     epochs=args.epochs, batch_size=args.batch_size)
    mode = args.backend + (" compiled" if args.compile else "")
    print(f"{args.arch.upper()}, {mode}, {out['train_rows']:,} training rows, batch {args.batch_size}, "
          f"{args.rounds} rounds x {args.epochs} epochs; 1-min load {out['load'][0]:.2f} -> {out['load'][1]:.2f}")
    for name, rate in out["rows_per_second"].items():
        print(f"  {name:18s} {rate:12,.0f} rows/s  {out['over_bce'].get(name, float('nan')):.2f}x BCE")


if __name__ == "__main__":
    _main()
