"""``anyloss speed``: AnyLoss against each framework's own BCE, where users feel the difference.

Every figure is a ratio of two timings taken side by side in one process, so that the
noise of a shared machine cancels as far as it can.  The measuring rules: a long
warm-up (compilation, allocator, caches), then the two sides interleaved with their
order alternated every round, and each side's **10th percentile** compared (the low
percentiles are what the code costs; the upper ones are what the machine's other
users cost).  Medians are kept in the JSON too.

* **loss step** (``steps``): forward + backward of the AnyLoss loss with its default
  arguments (``validate=True``) and of the framework's own binary cross-entropy with
  logits, on the same float32 logits and float32 0/1 labels (10% positives), at
  1e3-1e7 samples; in eager modes also ``validate=False``, as a second row;
* **bandwidth reference**: one elementwise pass that reads the logits and the labels
  and writes an n-element float32 result (``logits + labels``), the least memory
  traffic any loss step with a gradient needs;
* **extra memory**: the peak memory a step allocates beyond its inputs (the gradient
  included), in logits' bytes, at the largest size; peak resident memory
  (``/proc/self/status`` VmHWM after a reset) on a CPU, the allocator's on a device and
  for TensorFlow (whose CPU allocator, where oneDNN is on, keeps a pool the resident set
  does not show: that count is of whole chunks, ``memory_from`` says so); for
  JAX's compiled steps (``jax.jit``, Keras on JAX) XLA's own plan on every platform;
* **one call** (``calls``): the same step at 32, 256 and 1024 samples, where it is
  per-call overhead (argument checks, dispatch), not arithmetic;
* **training** (``training``): an epoch of the code users write, an MLP (two hidden
  layers of 64, ReLU) trained with Adam on mini-batches of 32 and 256 of one synthetic
  data set (4096 samples, 32 features), AnyLoss against BCE with the same model, data
  and initial weights: a ``DataLoader`` loop in torch eager and with the forward and
  loss under ``torch.compile``, a ``jax.jit`` step with optax, ``model.fit`` in Keras;
  ``--train-epochs`` epochs per loss, more where they are short (about a second of
  epochs each, at most 10x as many: ``--train-seconds``);
* **multi-class step** (``multiclass``): forward + backward of the macro-averaged
  AnyLoss of ``--metric`` on ``(n, C)`` float32 logits and integer class ids (default
  n = 1e5, C = 10), against the framework's own softmax cross-entropy
  (``nn.CrossEntropyLoss``, ``optax.softmax_cross_entropy_with_integer_labels``), with
  the default arguments and, in eager modes, ``validate=False``; torch eager,
  ``torch.compile`` and ``jax.jit`` (Keras: not measured);
* **paper epochs** (``epochs``): the paper's SLP (full batch) and MLP (mini-batches of
  5%) on the bundled breast-cancer data, median epoch time after the first.

Each backend group runs in its own subprocess (Keras picks its backend once per
process; torch must be imported before TensorFlow; memory peaks stay separate).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .data import UsageError

#: ``--backends`` names: each one subprocess, and the step modes it measures.
GROUPS: dict[str, tuple[str, ...]] = {
    "torch": ("torch eager", "torch.compile"),
    "jax": ("jax.jit",),
    "keras-tensorflow": ("keras-tf eager", "keras-tf tf.function", "keras-tf xla"),
    "keras-jax": ("keras-jax jit",),
    "keras-torch": ("keras-torch eager",),
}
#: The modes of the one-call rows: the step modes, and op-by-op JAX (``jax.grad`` without ``jit``).
CALL_MODES: dict[str, tuple[str, ...]] = {**GROUPS, "jax": ("jax eager", "jax.jit")}
#: The modes of the training rows.
TRAIN_MODES: dict[str, tuple[str, ...]] = {
    "torch": ("torch eager", "torch.compile"),
    "jax": ("jax.jit",),
    "keras-tensorflow": ("keras-tf fit",),
    "keras-jax": ("keras-jax fit",),
    "keras-torch": ("keras-torch fit",),
}
#: Modes whose values are concrete, so ``validate=True`` runs its checks (a second row with ``validate=False``).
VALIDATING = ("torch eager", "keras-tf eager", "keras-torch eager")
#: What each group's module needs, for a one-line message when it is missing.
_NEEDS = {"torch": "torch", "jax": "optax", "keras-tensorflow": "tensorflow", "keras-jax": "jax",
          "keras-torch": "torch"}
DEFAULT_SIZES = (1_000, 100_000, 1_000_000, 10_000_000)
DEFAULT_CALL_SIZES = (32, 256, 1024)
DEFAULT_BATCH_SIZES = (32, 256)
#: ``--quick``: a smoke run (tests), every kind of row once, figures meaningless.
QUICK = {"sizes": "1000", "call_sizes": "32", "batch_sizes": "32", "repeats": 3, "call_repeats": 5,
         "train_epochs": 1, "train_seconds": 0.0, "epoch_repeats": 0, "train_samples": 256, "multiclass_n": "1000"}
#: The multi-class step's default samples and classes, and its target (AnyLoss / the framework's cross-entropy).
MULTICLASS_N, MULTICLASS_CLASSES, MULTICLASS_TARGET = 100_000, 10, 1.5
#: The groups with a multi-class row.
MULTICLASS_GROUPS = ("torch", "jax")
TRAIN_SAMPLES, TRAIN_FEATURES, HIDDEN = 4096, 32, 64
#: The training rows' timed epochs last at least about this many seconds per loss (``--train-seconds``): an epoch of
#: a few milliseconds (``jax.jit``, 2.5 ms at batch 256) gets more epochs than ``--train-epochs``, at most
#: ``TRAIN_EPOCHS_CAP`` times as many.  With 6 epochs of 2.4-2.8 ms the p10 read 1.00x-1.15x between runs of the same
#: code (docs/performance.md, sixteenth round).
TRAIN_SECONDS, TRAIN_EPOCHS_CAP = 1.0, 10
#: Targets of the speed issue: step ratio to BCE per mode family, and the rest.
STEP_TARGETS = {"compiled": 1.0, "eager": 1.5}
CALL_TARGETS = {"compiled": 1.2, "eager": 2.0}
TRAIN_TARGET = 1.05
BANDWIDTH_TARGET = 3.0  # loss step / bandwidth reference at the largest size, compiled modes
MEMORY_TARGET = 3.0  # extra bytes / logits' bytes
EPOCH_TARGET = 1.03
_COMPILED = ("torch.compile", "jax.jit", "keras-tf xla", "keras-jax jit", "keras-jax fit")
#: The packages whose versions a group's figures depend on (distribution names), recorded with them.
_PACKAGES = {"torch": ("torch",), "jax": ("jax", "jaxlib", "optax"), "keras-tensorflow": ("keras", "tensorflow"),
             "keras-jax": ("keras", "jax", "jaxlib"), "keras-torch": ("keras", "torch")}


def step_target(mode: str) -> float:
    return STEP_TARGETS["compiled" if mode in _COMPILED else "eager"]


def call_target(mode: str) -> float:
    return CALL_TARGETS["compiled" if mode in _COMPILED else "eager"]


# --- measurement helpers -----------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation, as ``numpy.percentile``."""
    return float(np.percentile(np.asarray(values), q))


def interleaved(fns: list[Callable[[], Any]], repeats: int, warmup: int) -> list[dict[str, float]]:
    """``{"p10", "median"}`` seconds of each function: ``warmup`` calls each, then ``repeats`` rounds.

    Every round calls each function once, in turn, the order reversed every other
    round, so that a function never profits from always following the same one
    (caches, the allocator, frequency scaling).
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    for r in range(repeats):
        for i in (order if r % 2 == 0 else order[::-1]):
            times[i].append(_timed(fns[i]))
    return [{"p10": percentile(t, 10), "median": statistics.median(t)} for t in times]


def _rss_peak_extra(fn: Callable[[], Any], runs: int = 3) -> int | None:
    """Peak resident bytes ``fn`` adds over the current resident set (Linux), the least of ``runs`` calls;
    ``None`` elsewhere.

    The least, because the resident set also depends on where the C allocator put earlier temporaries: an
    allocation under glibc's mmap threshold (up to 32 MiB) comes from a heap whose pages may or may not be
    resident already.  Keras on TensorFlow's eager step at n = 1e7 read 2.5x-3.5x the logits from one call to
    the next (its label check's three boolean temporaries, 0.25x each), and 3.0x every time without them.
    """
    peaks = []
    try:
        for _ in range(runs):
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # resets VmHWM to the current VmRSS
            before = _proc_status_kb("VmRSS")
            fn()
            peaks.append((_proc_status_kb("VmHWM") - before) * 1024)
    except OSError:
        return None
    return min(peaks)


def _keras_peak_extra(backend: str, fn: Callable[[], Any]) -> int | None:
    """Peak bytes one step adds.  TensorFlow: its allocator's own count (after the warm-up it serves steps from a
    pool it keeps, so the resident set does not grow and VmHWM sees only the result); else the resident set.

    On a CPU, TensorFlow's allocator keeps a count where it is a BFC pool: oneDNN's ``mklcpu`` allocator where
    oneDNN is on (TensorFlow's default on CPUs with AVX-512 and the like), or ``TF_CPU_ALLOCATOR_USE_BFC=1``.
    Its peak counts chunks, and a free chunk of up to twice the size asked for (and less than 128 MiB over) is
    handed out whole: ``F1Loss()``'s step at n = 1e7 asks for 3.00x the logits at its peak and the pool counts
    3.36x (3.80x at n = 3e6; ``benchmarks/tf_pool_requests.py``, docs/performance.md, sixteenth round).  The
    report says so under the table (``memory_from``).  A GPU's figure is its BFC pool's count too."""
    device = _tf_pool_device() if backend == "tensorflow" else None
    if device is not None:
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats(device)
        before = tf.config.experimental.get_memory_info(device)["current"]
        fn()
        return int(tf.config.experimental.get_memory_info(device)["peak"] - before)
    return _rss_peak_extra(fn)


def _tf_pool_device() -> str | None:
    """TensorFlow's device of the steps (the first GPU, else the CPU) where its allocator keeps statistics (a BFC
    pool), ``None`` where it keeps none (TensorFlow's plain CPU allocator)."""
    import tensorflow as tf

    device = "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"
    try:
        tf.config.experimental.get_memory_info(device)
    except (ValueError, RuntimeError):  # an allocator without statistics
        return None
    return device


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _step_record(mode: str, n: int, variant: str, a: dict[str, float], b: dict[str, float],
                 c: dict[str, float]) -> dict[str, Any]:
    return {"mode": mode, "n": n, "variant": variant,
            "anyloss_ms": a["p10"] * 1e3, "bce_ms": b["p10"] * 1e3, "copy_ms": c["p10"] * 1e3,
            "ratio_bce": a["p10"] / b["p10"], "ratio_copy": a["p10"] / c["p10"],
            "anyloss_median_ms": a["median"] * 1e3, "bce_median_ms": b["median"] * 1e3,
            "ratio_bce_median": a["median"] / b["median"], "target_bce": step_target(mode)}


def _call_record(mode: str, n: int, variant: str, a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    return {"mode": mode, "n": n, "variant": variant, "anyloss_us": a["p10"] * 1e6, "bce_us": b["p10"] * 1e6,
            "ratio_bce": a["p10"] / b["p10"], "anyloss_median_us": a["median"] * 1e6,
            "bce_median_us": b["median"] * 1e6, "ratio_bce_median": a["median"] / b["median"],
            "target_bce": call_target(mode)}


def _train_record(mode: str, batch: int, steps: int, a: list[float], b: list[float]) -> dict[str, Any]:
    a10, b10 = percentile(a, 10), percentile(b, 10)
    am, bm = statistics.median(a), statistics.median(b)
    return {"mode": mode, "batch_size": batch, "steps_per_epoch": steps, "epochs": len(a),
            "anyloss_ms": a10 * 1e3, "bce_ms": b10 * 1e3, "ratio_bce": a10 / b10,
            "anyloss_median_ms": am * 1e3, "bce_median_ms": bm * 1e3, "ratio_bce_median": am / bm,
            "target_bce": TRAIN_TARGET}


def _multiclass_record(mode: str, n: int, classes: int, variant: str, a: dict[str, float],
                       b: dict[str, float]) -> dict[str, Any]:
    return {"mode": mode, "n": n, "classes": classes, "variant": variant, "anyloss_ms": a["p10"] * 1e3,
            "ce_ms": b["p10"] * 1e3, "ratio_ce": a["p10"] / b["p10"], "anyloss_median_ms": a["median"] * 1e3,
            "ce_median_ms": b["median"] * 1e3, "ratio_ce_median": a["median"] / b["median"],
            "target_ce": MULTICLASS_TARGET}


def _class_data(n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 logits ``(n, classes)`` and int64 class ids ``(n,)``, every class equally likely."""
    rng = np.random.default_rng(2)
    return rng.standard_normal((n, classes)).astype(np.float32), rng.integers(0, classes, n)


def _labels(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random(n) < 0.1).astype(np.float32)


def _logits(n: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(n).astype(np.float32)


def training_data(samples: int = TRAIN_SAMPLES, features: int = TRAIN_FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """A fixed synthetic binary task: standard normal features, about 15% positives from a noisy linear rule."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((samples, features)).astype(np.float32)
    score = X @ rng.standard_normal(features) / np.sqrt(features) + 0.5 * rng.standard_normal(samples)
    y = (score > np.quantile(score, 0.85)).astype(np.float32)
    return X, y


def _interleaved_epochs(run_a: Callable[[int], float], run_b: Callable[[int], float], epochs: int,
                        seconds: float = 0.0, warmup: int = 2) -> tuple[list[float], list[float]]:
    """Seconds per epoch of two trainings, epochs interleaved and their order alternated; ``run(epoch)`` runs one
    and returns its seconds.  ``epochs`` timed epochs each, or more where they are short (:func:`epoch_count`)."""
    last = [0.0, 0.0]
    for e in range(warmup):
        last = [run_a(e), run_b(e)]
    a: list[float] = []
    b: list[float] = []
    for e in range(warmup, warmup + epoch_count(epochs, seconds, max(last))):
        first, second = ((run_a, a), (run_b, b)) if e % 2 == 0 else ((run_b, b), (run_a, a))
        for run, bucket in (first, second):
            bucket.append(run(e))
    return a, b


def epoch_count(epochs: int, seconds: float, epoch_seconds: float) -> int:
    """Timed epochs per loss: ``epochs``, or enough for ``seconds`` of epochs of ``epoch_seconds`` each (the slower
    loss's last warm-up epoch), at most ``TRAIN_EPOCHS_CAP`` times ``epochs``."""
    cap = TRAIN_EPOCHS_CAP * epochs
    if not (seconds > 0.0 and epoch_seconds > 0.0 and math.isfinite(epoch_seconds)):
        return epochs
    if seconds >= epoch_seconds * cap:  # also an infinite time asked for: no ceil() of an infinite quotient
        return cap
    return max(epochs, math.ceil(seconds / epoch_seconds))


# --- torch ---------------------------------------------------------------------------------------


def _torch_device() -> tuple[str, Callable[[], None]]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.cuda.synchronize
    return "cpu", (lambda: None)


#: ``--torch-guard-filter``: the ``guard_filter_fn`` of every ``torch.compile`` row, AnyLoss's and BCE's alike
#: (``"anyloss"``: ``anyloss_torch.skip_guard_on_anyloss_globals``; ``"none"``: the default guards).  Set by the
#: per-group worker from its settings.
TORCH_GUARD_FILTERS = ("none", "anyloss")
_torch_guard_filter = "none"
#: The guard filters the ``torch.compile`` rows of this process were compiled with (what the worker reports).
_torch_guard_filters_used: set[str] = set()


def _torch_compile(fn: Any) -> Any:
    """``torch.compile(fn, dynamic=False)``, with the run's guard filter (a fresh options dict per call:
    ``torch.compile`` pops ``guard_filter_fn`` out of the one it is given)."""
    import torch

    _torch_guard_filters_used.add(_torch_guard_filter)
    if _torch_guard_filter == "anyloss":
        import anyloss_torch

        return torch.compile(fn, dynamic=False,
                             options={"guard_filter_fn": anyloss_torch.skip_guard_on_anyloss_globals})
    return torch.compile(fn, dynamic=False)


def _torch_wrap(mode: str) -> Callable[[Any], Any]:
    if mode == "torch.compile":
        return _torch_compile
    return lambda m: m


def _torch_backward(loss_fn: Any, x: Any, y: Any, sync: Callable[[], None]) -> Callable[[], None]:
    """One timed loss step on fixed logits ``x``: forward, backward to ``x.grad``, then wait for the device."""
    def run() -> None:
        x.grad = None
        loss_fn(x, y).backward()
        sync()
    return run


def _torch_steps(metric: str, sizes: list[int], repeats: int) -> tuple[list[dict], dict]:
    import torch

    import anyloss_torch

    device, sync = _torch_device()
    anyloss = anyloss_torch.AnyLoss(metric)
    unchecked = anyloss_torch.AnyLoss(metric, validate=False)
    bce = torch.nn.BCEWithLogitsLoss()
    records, memory = [], {}
    for mode in GROUPS["torch"]:
        for n in sizes:
            torch._dynamo.reset()  # one fresh compilation per size: no recompile limit, no dynamic shapes
            x = torch.tensor(_logits(n), device=device, requires_grad=True)
            y = torch.tensor(_labels(n), device=device)
            out = torch.empty_like(x)
            wrap = _torch_wrap(mode)

            def copy(x: Any = x, y: Any = y, out: Any = out) -> None:
                torch.add(x.detach(), y, out=out)
                sync()

            fns = [_torch_backward(wrap(anyloss), x, y, sync), _torch_backward(wrap(bce), x, y, sync), copy]
            if mode in VALIDATING:
                fns.append(_torch_backward(wrap(unchecked), x, y, sync))
            timings = interleaved(fns, repeats, warmup=max(3, repeats // 3))
            records.append(_step_record(mode, n, "default", timings[0], timings[1], timings[2]))
            if mode in VALIDATING:
                records.append(_step_record(mode, n, "validate=False", timings[3], timings[1], timings[2]))
            if n == max(sizes):
                memory[mode] = {"anyloss": _torch_peak(fns[0], device) / (4 * n),
                                "bce": _torch_peak(fns[1], device) / (4 * n)}
    torch._dynamo.reset()
    return records, memory


def _torch_multiclass(metric: str, n: int, classes: int, repeats: int) -> list[dict]:
    import torch

    import anyloss_torch

    device, sync = _torch_device()
    z, ids = _class_data(n, classes)
    x = torch.tensor(z, device=device, requires_grad=True)
    y = torch.tensor(ids, device=device)
    records = []
    for mode in GROUPS["torch"]:
        torch._dynamo.reset()
        wrap = _torch_wrap(mode)
        losses = [anyloss_torch.AnyLoss(metric, task="multiclass", num_classes=classes),
                  torch.nn.CrossEntropyLoss()]
        if mode in VALIDATING:
            losses.append(anyloss_torch.AnyLoss(metric, task="multiclass", num_classes=classes, validate=False))
        timings = interleaved([_torch_backward(wrap(f), x, y, sync) for f in losses], repeats,
                              warmup=max(3, repeats // 3))
        records.append(_multiclass_record(mode, n, classes, "default", timings[0], timings[1]))
        if mode in VALIDATING:
            records.append(_multiclass_record(mode, n, classes, "validate=False", timings[2], timings[1]))
    torch._dynamo.reset()
    return records


def _torch_peak(fn: Callable[[], None], device: str) -> float:
    import torch

    if device == "cuda":
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        return float(torch.cuda.max_memory_allocated() - base)
    extra = _rss_peak_extra(fn)
    return float("nan") if extra is None else float(extra)


def _torch_calls(metric: str, sizes: list[int], repeats: int) -> list[dict]:
    import torch

    import anyloss_torch

    device, sync = _torch_device()
    records = []
    for mode in CALL_MODES["torch"]:
        for n in sizes:
            torch._dynamo.reset()
            wrap = _torch_wrap(mode)
            x = torch.tensor(_logits(n), device=device, requires_grad=True)
            y = torch.tensor(_labels(n), device=device)
            losses = [wrap(anyloss_torch.AnyLoss(metric)), wrap(torch.nn.BCEWithLogitsLoss())]
            if mode in VALIDATING:
                losses.append(wrap(anyloss_torch.AnyLoss(metric, validate=False)))
            timings = interleaved([_torch_backward(f, x, y, sync) for f in losses], repeats,
                                  warmup=max(20, repeats // 2))
            records.append(_call_record(mode, n, "default", timings[0], timings[1]))
            if mode in VALIDATING:
                records.append(_call_record(mode, n, "validate=False", timings[2], timings[1]))
    torch._dynamo.reset()
    return records


def _torch_training(metric: str, batches: list[int], epochs: int, samples: int, seconds: float = 0.0) -> list[dict]:
    import torch

    import anyloss_torch

    device, sync = _torch_device()
    X_np, y_np = training_data(samples)
    data = torch.utils.data.TensorDataset(torch.tensor(X_np), torch.tensor(y_np))
    records = []
    for mode in TRAIN_MODES["torch"]:
        for batch in batches:
            torch._dynamo.reset()
            torch.manual_seed(0)
            init = _torch_mlp(X_np.shape[1])
            runs = []
            for loss_fn in (anyloss_torch.AnyLoss(metric), torch.nn.BCEWithLogitsLoss()):
                model = _torch_mlp(X_np.shape[1]).to(device)
                model.load_state_dict(init.state_dict())  # the same initial weights for both losses
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

                def forward_loss(xb: Any, yb: Any, model: Any = model, loss_fn: Any = loss_fn) -> Any:
                    return loss_fn(model(xb).squeeze(-1), yb)

                compute = _torch_compile(forward_loss) if mode == "torch.compile" else forward_loss
                # drop_last: every step has one shape, so torch.compile compiles once (both losses alike).
                loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, drop_last=True,
                                                     generator=torch.Generator().manual_seed(0))

                def epoch(_: int, loader: Any = loader, compute: Any = compute, optimizer: Any = optimizer) -> float:
                    start = time.perf_counter()
                    for xb, yb in loader:
                        xb, yb = xb.to(device), yb.to(device)
                        optimizer.zero_grad(set_to_none=True)
                        compute(xb, yb).backward()
                        optimizer.step()
                    sync()
                    return time.perf_counter() - start

                runs.append(epoch)
            a, b = _interleaved_epochs(runs[0], runs[1], epochs, seconds)
            records.append(_train_record(mode, batch, samples // batch, a, b))
    torch._dynamo.reset()
    return records


def _torch_mlp(features: int) -> Any:
    import torch

    return torch.nn.Sequential(torch.nn.Linear(features, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, HIDDEN),
                               torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1))


# --- JAX -------------------------------------------------------------------------------------------


def _jax_losses(metric: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    import optax

    import anyloss_jax

    return (lambda z, y: anyloss_jax.anyloss(z, y, metric),
            lambda z, y: optax.sigmoid_binary_cross_entropy(z, y).mean())


def _jax_steps(metric: str, sizes: list[int], repeats: int) -> tuple[list[dict], dict]:
    import jax
    import jax.numpy as jnp

    anyloss, bce = _jax_losses(metric)
    records, memory = [], {}
    for n in sizes:
        z, y = jnp.asarray(_logits(n)), jnp.asarray(_labels(n))
        grad_a, grad_b = jax.jit(jax.grad(anyloss)), jax.jit(jax.grad(bce))
        copy = jax.jit(lambda z, y: z + y)
        fns = [lambda f=f, z=z, y=y: f(z, y).block_until_ready() for f in (grad_a, grad_b, copy)]
        a, b, c = interleaved(fns, repeats, warmup=max(3, repeats // 3))
        records.append(_step_record("jax.jit", n, "default", a, b, c))
        if n == max(sizes):
            memory["jax.jit"] = {"anyloss": _jax_peak(grad_a, z, y) / (4 * n), "bce": _jax_peak(grad_b, z, y) / (4 * n)}
    return records, memory


def _jax_multiclass(metric: str, n: int, classes: int, repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import optax

    import anyloss_jax

    z_np, ids = _class_data(n, classes)
    z, y = jnp.asarray(z_np), jnp.asarray(ids)
    grad_a = jax.jit(jax.grad(lambda z, y: anyloss_jax.anyloss(z, y, metric, task="multiclass", num_classes=classes)))
    grad_b = jax.jit(jax.grad(lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y).mean()))
    fns = [lambda f=f: f(z, y).block_until_ready() for f in (grad_a, grad_b)]
    a, b = interleaved(fns, repeats, warmup=max(3, repeats // 3))
    return [_multiclass_record("jax.jit", n, classes, "default", a, b)]


def _jax_peak(jitted: Any, *args: Any) -> float:
    """Bytes one step of ``jitted`` allocates: XLA's own plan (temporaries and output), on every platform.

    Exact for a compiled step, where the resident set of a CPU is not: for the same step at n = 1e7 it read
    0.00x to 2.00x the logits from one run to the next (glibc and XLA's CPU client reuse freed blocks).
    """
    stats = jitted.lower(*args).compile().memory_analysis()
    return float(stats.temp_size_in_bytes + stats.output_size_in_bytes)


def _jax_calls(metric: str, sizes: list[int], repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp

    anyloss, bce = _jax_losses(metric)
    records = []
    for mode in CALL_MODES["jax"]:
        wrap = jax.jit if mode == "jax.jit" else (lambda f: f)
        # jax eager does every primitive as its own dispatch: far fewer repeats suffice.
        reps = repeats if mode == "jax.jit" else max(3, repeats // 10)
        for n in sizes:
            z, y = jnp.asarray(_logits(n)), jnp.asarray(_labels(n))
            grads = [wrap(jax.value_and_grad(f)) for f in (anyloss, bce)]
            fns = [lambda g=g, z=z, y=y: jax.block_until_ready(g(z, y)) for g in grads]
            a, b = interleaved(fns, reps, warmup=max(5, reps // 2))
            records.append(_call_record(mode, n, "default", a, b))
    return records


def _jax_training(metric: str, batches: list[int], epochs: int, samples: int, seconds: float = 0.0) -> list[dict]:
    import jax
    import optax

    from .jax_engine import optimizer_step

    anyloss, bce = _jax_losses(metric)
    X, y = training_data(samples)
    params0 = _jax_mlp_init(X.shape[1], jax.random.PRNGKey(0))
    optimizer = optax.adam(1e-3)
    records = []
    for batch in batches:
        runs = []
        for loss in (anyloss, bce):
            def objective(params: Any, aux: Any, xb: Any, yb: Any, loss: Any = loss) -> Any:
                return loss(_jax_mlp(params, xb), yb), aux

            step = jax.jit(optimizer_step(objective, optimizer))  # the command's JAX step (jax_engine)
            state = {"carry": (params0, {}, optimizer.init(params0))}

            def epoch(e: int, step: Any = step, state: dict = state, batch: int = batch) -> float:
                begin = time.perf_counter()
                order = np.random.default_rng(e).permutation(len(y))
                carry = state["carry"]
                for start in range(0, len(y) - batch + 1, batch):  # drop_last, as in torch
                    index = order[start:start + batch]
                    carry, value = step(carry, (X[index], y[index]))
                jax.block_until_ready(value)
                state["carry"] = carry
                return time.perf_counter() - begin

            runs.append(epoch)
        a, b = _interleaved_epochs(runs[0], runs[1], epochs, seconds)
        records.append(_train_record("jax.jit", batch, samples // batch, a, b))
    return records


def _jax_mlp_init(features: int, key: Any) -> list[tuple[Any, Any]]:
    import jax

    params = []
    for fan_in, fan_out in ((features, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 1)):
        key, sub = jax.random.split(key)
        bound = 1.0 / np.sqrt(fan_in)  # torch.nn.Linear's default range
        params.append((jax.random.uniform(sub, (fan_in, fan_out), minval=-bound, maxval=bound),
                       jax.numpy.zeros(fan_out)))
    return params


def _jax_mlp(params: list[tuple[Any, Any]], x: Any) -> Any:
    import jax

    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return (x @ w + b)[:, 0]


# --- Keras ---------------------------------------------------------------------------------------


def _keras_losses(metric: str) -> tuple[Any, Any, Any]:
    import keras

    import anyloss_keras

    return (anyloss_keras.AnyLoss(metric, from_logits=True), keras.losses.BinaryCrossentropy(from_logits=True),
            anyloss_keras.AnyLoss(metric, from_logits=True, validate=False))


def _keras_steps(group: str, metric: str, sizes: list[int], repeats: int) -> tuple[list[dict], dict]:
    import keras

    anyloss, bce, unchecked = _keras_losses(metric)
    backend = keras.backend.backend()
    records, memory = [], {}
    for mode in GROUPS[group]:
        for n in sizes:
            z_np, y_np = _logits(n).reshape(-1, 1), _labels(n).reshape(-1, 1)
            losses = [anyloss, bce] + ([unchecked] if mode in VALIDATING else [])
            grads, copy, z, y = _keras_step_fns(backend, mode, losses, z_np, y_np)
            fns = [lambda f=f, z=z, y=y: f(z, y) for f in [grads[0], grads[1], copy, *grads[2:]]]
            timings = interleaved(fns, repeats, warmup=max(3, repeats // 3))
            records.append(_step_record(mode, n, "default", timings[0], timings[1], timings[2]))
            if mode in VALIDATING:
                records.append(_step_record(mode, n, "validate=False", timings[3], timings[1], timings[2]))
            if n == max(sizes):
                peaks = [_jax_peak(g.jitted, z, y) for g in grads[:2]] if backend == "jax" \
                    else [_keras_peak_extra(backend, fn) for fn in fns[:2]]
                memory[mode] = {k: float("nan") if p is None else p / (4 * n)
                                for k, p in zip(("anyloss", "bce"), peaks, strict=True)}
    return records, memory


def _keras_calls(group: str, metric: str, sizes: list[int], repeats: int) -> list[dict]:
    import keras

    anyloss, bce, unchecked = _keras_losses(metric)
    backend = keras.backend.backend()
    records = []
    for mode in CALL_MODES[group]:
        for n in sizes:
            z_np, y_np = _logits(n).reshape(-1, 1), _labels(n).reshape(-1, 1)
            losses = [anyloss, bce] + ([unchecked] if mode in VALIDATING else [])
            grads, _, z, y = _keras_step_fns(backend, mode, losses, z_np, y_np)
            timings = interleaved([lambda f=f, z=z, y=y: f(z, y) for f in grads], repeats,
                                  warmup=max(20, repeats // 2))
            records.append(_call_record(mode, n, "default", timings[0], timings[1]))
            if mode in VALIDATING:
                records.append(_call_record(mode, n, "validate=False", timings[2], timings[1]))
    return records


def _keras_step_fns(backend: str, mode: str, losses: list[Any], z_np: np.ndarray, y_np: np.ndarray) -> Any:
    """``(steps, copy, z, y)``: for each loss, its gradient w.r.t. the logits in ``backend``'s way."""
    if backend == "tensorflow":
        import tensorflow as tf

        def grad_of(loss: Any) -> Any:
            def step(z: Any, y: Any) -> Any:
                with tf.GradientTape() as tape:
                    tape.watch(z)
                    value = loss(y, z)
                return tape.gradient(value, z)

            if mode == "keras-tf eager":
                return lambda z, y: step(z, y).numpy()
            compiled = tf.function(step, jit_compile=mode == "keras-tf xla")
            return lambda z, y: compiled(z, y).numpy()

        add = tf.function(lambda z, y: z + y, jit_compile=mode == "keras-tf xla")
        return ([grad_of(loss) for loss in losses], lambda z, y: add(z, y).numpy(), tf.constant(z_np),
                tf.constant(y_np))
    if backend == "jax":
        import jax

        def grad_of(loss: Any) -> Any:
            compiled = jax.jit(jax.grad(lambda z, y: loss(y, z)))

            def step(z: Any, y: Any) -> Any:
                return compiled(z, y).block_until_ready()

            step.jitted = compiled  # type: ignore[attr-defined]  # for its memory plan (_jax_peak)
            return step

        add = jax.jit(lambda z, y: z + y)
        z, y = jax.numpy.asarray(z_np), jax.numpy.asarray(y_np)
        return [grad_of(loss) for loss in losses], lambda z, y: add(z, y).block_until_ready(), z, y
    import torch

    device, sync = _torch_device()
    z = torch.tensor(z_np, device=device, requires_grad=True)
    y = torch.tensor(y_np, device=device)
    out = torch.empty_like(z)

    def grad_of(loss: Any) -> Any:
        def step(z: Any, y: Any) -> None:
            z.grad = None
            loss(y, z).backward()
            sync()
        return step

    def copy(z: Any, y: Any) -> None:
        torch.add(z.detach(), y, out=out)
        sync()

    return [grad_of(loss) for loss in losses], copy, z, y


def _keras_training(group: str, metric: str, batches: list[int], epochs: int, samples: int,
                    seconds: float = 0.0) -> list[dict]:
    import keras

    anyloss, bce, _ = _keras_losses(metric)
    X, y = training_data(samples)
    y = y.reshape(-1, 1)
    (mode,) = TRAIN_MODES[group]
    records = []
    for batch in batches:
        keras.utils.set_random_seed(0)
        init = _keras_mlp(keras, X.shape[1])
        runs = []
        for loss in (anyloss, bce):
            model = _keras_mlp(keras, X.shape[1])
            model.set_weights(init.get_weights())
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
            timer = _epoch_timer(keras)

            def epoch(e: int, model: Any = model, timer: Any = timer, batch: int = batch) -> float:
                # Timed by the callback: the epoch itself, without fit's per-call setup.
                model.fit(X, y, batch_size=batch, epochs=1, shuffle=True, verbose=0, callbacks=[timer])
                return float(timer.last)

            runs.append(epoch)
        # The warm-up traces and compiles the train function.
        a, b = _interleaved_epochs(runs[0], runs[1], epochs, seconds)
        records.append(_train_record(mode, batch, samples // batch, a, b))
    return records


def _keras_mlp(keras: Any, features: int) -> Any:
    return keras.Sequential([keras.Input((features,)), keras.layers.Dense(HIDDEN, activation="relu"),
                             keras.layers.Dense(HIDDEN, activation="relu"), keras.layers.Dense(1)])


def _epoch_timer(keras: Any) -> Any:
    """A Keras callback whose ``last`` holds the last epoch's seconds (``on_epoch_begin`` to ``on_epoch_end``)."""

    class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        last = float("nan")
        _start = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.last = time.perf_counter() - self._start

    return EpochTimer()


# --- the paper's epochs ------------------------------------------------------------------------


def _epochs(engine: str, metric: str, repeats: int) -> list[dict[str, Any]]:
    """Median epoch time of the SLP and the MLP trained with AnyLoss and with BCE (interleaved runs)."""
    from .data import load_dataset, standardize
    from .engines import LossSpec, train

    data = load_dataset("breast_cancer", seed=0)
    X, _ = standardize(data.X, data.X)
    specs = {"anyloss": LossSpec("anyloss", metric), "bce": LossSpec("bce")}
    records = []
    for arch, epochs, batch in (("slp", 60, len(data.y)), ("mlp", 6, max(2, round(0.05 * len(data.y))))):
        per_epoch: dict[str, list[float]] = {k: [] for k in specs}
        for r in range(repeats):
            for kind, spec in specs.items():
                result = train(engine, spec, X, data.y, X[:4], arch=arch, epochs=epochs, lr=0.01, batch_size=batch,
                               seed=r)
                per_epoch[kind].append(result.seconds_per_epoch)
        a, b = (statistics.median(per_epoch[k]) for k in ("anyloss", "bce"))
        records.append({"arch": arch, "batch_size": batch, "anyloss_ms": a * 1e3, "bce_ms": b * 1e3,
                        "ratio_bce": a / b, "target_bce": EPOCH_TARGET})
    return records


def run_group(group: str, metric: str, sizes: list[int], repeats: int, epoch_repeats: int,
              call_sizes: list[int] | None = None, call_repeats: int = 0, batch_sizes: list[int] | None = None,
              train_epochs: int = 0, train_samples: int = TRAIN_SAMPLES, train_seconds: float = 0.0,
              multiclass_n: int = 0,
              classes: int = MULTICLASS_CLASSES) -> dict[str, Any]:
    """Every figure of one backend group, in this process."""
    # The torch and JAX measurements take (metric, ...); the Keras ones (group, metric, ...), group = its backend.
    if group in ("torch", "jax"):
        engine, first = group, (metric,)
        step_fn, call_fn, train_fn = {"torch": (_torch_steps, _torch_calls, _torch_training),
                                      "jax": (_jax_steps, _jax_calls, _jax_training)}[group]
    else:
        engine, first = "keras", (group, metric)
        step_fn, call_fn, train_fn = _keras_steps, _keras_calls, _keras_training
    steps, memory = step_fn(*first, sizes, repeats)
    pooled = group == "keras-tensorflow" and bool(memory) and _tf_pool_device() == "CPU:0"
    calls = call_fn(*first, call_sizes, call_repeats) if call_sizes and call_repeats else []
    training = train_fn(*first, batch_sizes, train_epochs, train_samples, train_seconds) \
        if batch_sizes and train_epochs else []
    epochs = _epochs(engine, metric, epoch_repeats) if epoch_repeats > 0 else []
    multiclass = []
    if multiclass_n and group in MULTICLASS_GROUPS:
        multiclass_fn = {"torch": _torch_multiclass, "jax": _jax_multiclass}[group]
        multiclass = multiclass_fn(metric, multiclass_n, classes, repeats)
    return {"group": group, "versions": package_versions(group), "steps": steps, "memory": memory, "calls": calls,
            "training": training, "epochs": epochs, "multiclass": multiclass,
            **({"memory_from": "CPU BFC pool"} if pooled else {})}


def package_versions(group: str) -> dict[str, str]:
    """The installed versions of the packages ``group``'s figures depend on (``_PACKAGES``), by distribution name;
    one that is not installed is left out (TensorFlow may come as ``tensorflow-cpu``, for one)."""
    from importlib import metadata

    versions = {}
    for name in _PACKAGES[group]:
        for distribution in (name, f"{name}-cpu"):
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


# --- the command -------------------------------------------------------------------------------


def parse_sizes(text: str, option: str = "--sizes", least: int = 2) -> list[int]:
    """Comma-separated whole numbers (``1e5`` allowed); an empty text or ``none`` is the empty list."""
    if text.strip().lower() in ("", "none"):
        return []
    sizes = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise UsageError(f"{option}: {part!r} is not a number") from None
        if value < least or value != int(value):
            raise UsageError(f"{option}: {part!r} is not a whole number of at least {least}")
        sizes.append(int(value))
    return sizes


def parse_groups(text: str) -> list[str]:
    names = [g.strip() for g in text.split(",") if g.strip()]
    for name in names:
        if name not in GROUPS:
            raise UsageError(f"unknown backend {name!r}; choose from {', '.join(GROUPS)}")
    return names


def _available(group: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(_NEEDS[group]) is not None and (
        not group.startswith("keras") or importlib.util.find_spec("keras") is not None)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings: the options given, ``--quick``'s values for those not given, else the defaults."""
    defaults = {"sizes": ",".join(map(str, DEFAULT_SIZES)), "call_sizes": ",".join(map(str, DEFAULT_CALL_SIZES)),
                "batch_sizes": ",".join(map(str, DEFAULT_BATCH_SIZES)), "repeats": 30, "call_repeats": 300,
                "train_epochs": 10, "train_seconds": TRAIN_SECONDS, "epoch_repeats": 3, "train_samples": TRAIN_SAMPLES,
                "multiclass_n": str(MULTICLASS_N), "classes": MULTICLASS_CLASSES}
    chosen = {**defaults, **QUICK} if getattr(args, "quick", False) else defaults
    out = {key: getattr(args, key, None) if getattr(args, key, None) is not None else chosen[key]
           for key in defaults}
    if not getattr(args, "quick", False) and getattr(args, "repeats", None) is not None:
        # --repeats alone scales the whole run: 10 calls and 1/3 epoch per step repeat, as the defaults.
        if getattr(args, "call_repeats", None) is None:
            out["call_repeats"] = 10 * args.repeats
        if getattr(args, "train_epochs", None) is None:
            out["train_epochs"] = max(1, args.repeats // 3)
    for key in ("repeats", "call_repeats"):
        if out[key] < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be at least 1, got {out[key]}")
    for key in ("train_epochs", "epoch_repeats", "train_seconds"):
        if not 0 <= out[key] < math.inf:  # NaN and infinity too
            raise UsageError(f"--{key.replace('_', '-')} must be a number of at least 0, got {out[key]}")
    out["torch_guard_filter"] = getattr(args, "torch_guard_filter", None) or "none"
    out["sizes"] = parse_sizes(out["sizes"])
    if not out["sizes"]:
        raise UsageError("--sizes: give at least one size")
    out["call_sizes"] = parse_sizes(out["call_sizes"], "--call-sizes", least=1)
    out["batch_sizes"] = parse_sizes(out["batch_sizes"], "--batch-sizes", least=1)
    multiclass_n = parse_sizes(str(out["multiclass_n"]), "--multiclass-n")
    if len(multiclass_n) > 1:
        raise UsageError(f"--multiclass-n: one number of samples (or 'none'), got {out['multiclass_n']!r}")
    out["multiclass_n"] = multiclass_n[0] if multiclass_n else 0
    if out["classes"] < 2:
        raise UsageError(f"--classes must be at least 2, got {out['classes']}")
    for batch in out["batch_sizes"]:
        if batch > out["train_samples"]:
            raise UsageError(f"--batch-sizes: {batch} is more than the {out['train_samples']} training samples")
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import anyloss_core as al

    try:
        al.get_metric(args.metric)  # an unknown name fails here, before any subprocess
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--metric: {exc}") from None
    settings = _settings(args)
    groups = parse_groups(args.backends) if args.backends else [g for g in GROUPS if _available(g)]
    for group in groups:
        if not _available(group):
            packages = " ".join(["keras"] * group.startswith("keras-") + [_NEEDS[group]])
            raise UsageError(f"--backends {group} needs {packages}: pip install {packages}")
    results = []
    load = _load_average()
    for group in groups:
        print(f"measuring {group} ...", file=sys.stderr, flush=True)
        results.append(_run_in_subprocess(group, args.metric, settings))
    report = {"metric": args.metric, "sizes": settings["sizes"], "repeats": settings["repeats"],
              "call_repeats": settings["call_repeats"], "train_epochs": settings["train_epochs"],
              "train_seconds": settings["train_seconds"],
              "train_samples": settings["train_samples"], "torch_guard_filter": settings["torch_guard_filter"],
              "machine": {**_machine(), "load_before": load, "load_after": _load_average()}, "groups": results}
    print(format_report(report))
    if args.json:
        from .common import write_json

        write_json(args.json, report)
    return report


def _run_in_subprocess(group: str, metric: str, settings: dict[str, Any]) -> dict:
    env = dict(os.environ)
    if group.startswith("keras-"):
        env["KERAS_BACKEND"] = group.removeprefix("keras-")
    command = [sys.executable, "-m", "anyloss_bench.speed", json.dumps({"group": group, "metric": metric,
                                                                         **settings})]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {group} measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _machine() -> dict[str, Any]:
    import platform

    return {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
            "cpu": cpu_model(), "cpus": os.cpu_count()}


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, as Linux's ``cpuinfo`` gives it ("AMD EPYC", "Intel(R) Xeon(R) ..."): figures from
    different hosts differ by more than their noise, so a report names its host.  Elsewhere, or where the file
    has no model name, ``platform.processor()`` (or the machine type)."""
    import platform

    try:
        with open(cpuinfo) as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISS"


def _label(rec: dict[str, Any]) -> str:
    variant = rec.get("variant", "default")
    return rec["mode"] if variant == "default" else f"{rec['mode']} {variant}"


def format_report(report: dict[str, Any]) -> str:
    """The terminal tables: every ratio against its target."""
    sizes = report["sizes"]
    lines = [f"loss step: forward+backward of the {report['metric']} AnyLoss (default arguments) / the framework's "
             f"BCE-with-logits (p10 of {report['repeats']}, interleaved, float32)",
             f"{'mode':<37}" + "".join(f"{f'n={n:.0e}':>10}" for n in sizes) + f"{'target':>8}"
             + f"{'/copy@' + f'{max(sizes):.0e}':>13}"]
    if report.get("torch_guard_filter", "none") != "none":
        lines.insert(0, "every torch.compile row, both losses: guard_filter_fn="
                        "anyloss_torch.skip_guard_on_anyloss_globals (--torch-guard-filter anyloss)")
    for group in report["groups"]:
        rows: dict[str, dict[int, dict]] = {}
        for rec in group["steps"]:
            rows.setdefault(_label(rec), {})[rec["n"]] = rec
        for label, by_n in rows.items():
            cells = []
            for n in sizes:
                rec = by_n[n]
                flag = "" if n < 100_000 or rec["ratio_bce"] <= rec["target_bce"] else "!"
                cells.append(f"{rec['ratio_bce']:.2f}x{flag}".rjust(10))
            big = by_n[max(sizes)]
            lines.append(f"{label:<37}" + "".join(cells) + f"{'<=' + format(big['target_bce'], '.1f') + 'x':>8}"
                         + f"{big['ratio_copy']:>12.2f}x")
    lines.append("! over the target (targets apply at n >= 1e5); /copy = step time / one elementwise pass over the "
                 "same bytes")
    calls = [rec for group in report["groups"] for rec in group.get("calls", [])]
    if calls:
        call_sizes = sorted({rec["n"] for rec in calls})
        lines += ["", f"one call: forward+backward of one loss call / the framework's BCE "
                      f"(p10 of {report.get('call_repeats', '?')}; anyloss / bce microseconds)",
                  f"{'mode':<37}" + "".join(f"{f'n={n}':>24}" for n in call_sizes) + f"{'target':>8}"]
        rows = {}
        for rec in calls:
            rows.setdefault(_label(rec), {})[rec["n"]] = rec
        for label, by_n in rows.items():
            cells = []
            for n in call_sizes:
                rec = by_n.get(n)
                if rec is None:
                    cells.append(" " * 24)
                    continue
                flag = "" if n != min(call_sizes) or rec["ratio_bce"] <= rec["target_bce"] else "!"
                cells.append(f"{rec['ratio_bce']:.2f}x{flag} {rec['anyloss_us']:.0f}/{rec['bce_us']:.0f}".rjust(24))
            target = next(iter(by_n.values()))["target_bce"]
            lines.append(f"{label:<37}" + "".join(cells) + f"{'<=' + format(target, '.1f') + 'x':>8}")
        lines.append("! over the target (which applies at the smallest size)")
    multiclass = [rec for group in report["groups"] for rec in group.get("multiclass", [])]
    if multiclass:
        first = multiclass[0]
        lines += ["", f"multi-class step: forward+backward of the macro {report['metric']} AnyLoss / the framework's "
                      f"softmax cross-entropy, n={first['n']:.0e}, C={first['classes']} "
                      f"(p10 of {report['repeats']}, interleaved; target <= {MULTICLASS_TARGET}x)"]
        for rec in multiclass:
            lines.append(f"  {_label(rec):<32} {rec['anyloss_ms']:9.2f} ms / {rec['ce_ms']:9.2f} ms = "
                         f"{rec['ratio_ce']:.2f}x   {_verdict(rec['ratio_ce'], rec['target_ce'])}")
    training = [(group["group"], rec) for group in report["groups"] for rec in group.get("training", [])]
    if training:
        lines += ["", f"training epoch: MLP {TRAIN_FEATURES}-{HIDDEN}-{HIDDEN}-1, Adam, "
                      f"{report.get('train_samples', TRAIN_SAMPLES)} samples, AnyLoss / BCE "
                      f"(p10 of the interleaved epochs, at least {report.get('train_epochs', '?')}; target <= "
                      f"{TRAIN_TARGET}x)"]
        for _, rec in training:
            lines.append(f"  {rec['mode']:<20} batch {rec['batch_size']:>4}   {rec['anyloss_ms']:9.2f} ms / "
                         f"{rec['bce_ms']:9.2f} ms = {rec['ratio_bce']:.2f}x   "
                         f"{_verdict(rec['ratio_bce'], rec['target_bce'])}   ({rec.get('epochs', '?')} epochs)")
    lines.append("")
    lines.append(f"extra memory of one step at n={max(sizes):.0e}, in logits' bytes (target <= {MEMORY_TARGET:.0f}x)")
    for group in report["groups"]:
        for mode, mem in group["memory"].items():
            lines.append(f"  {mode:<22} anyloss {mem['anyloss']:5.2f}x   bce {mem['bce']:5.2f}x   "
                         f"{_verdict(mem['anyloss'], MEMORY_TARGET)}")
        if group.get("memory_from") == "CPU BFC pool":
            lines.append("  (TensorFlow: its CPU pool's count (oneDNN's where it is on), whole chunks, up to twice "
                         "each tensor; benchmarks/tf_pool_requests.py prints the bytes the step asks for)")
    epochs = [(group["group"], rec) for group in report["groups"] for rec in group["epochs"]]
    if epochs:
        lines.append("")
        lines.append(f"paper epochs on breast_cancer, AnyLoss / BCE (median; target <= {EPOCH_TARGET}x)")
        for name, rec in epochs:
            lines.append(f"  {name:<18} {rec['arch']:<4} batch {rec['batch_size']:>4}   "
                         f"{rec['anyloss_ms']:8.3f} ms / {rec['bce_ms']:8.3f} ms = {rec['ratio_bce']:.2f}x   "
                         f"{_verdict(rec['ratio_bce'], EPOCH_TARGET)}")
    machine = report.get("machine", {})
    load = machine.get("load_before")
    if load:
        lines.append("")
        lines.append(f"load average before the run: {' '.join(map(str, load))} "
                     f"({machine.get('cpus')} CPUs; figures from a loaded machine are noisier)")
    if machine.get("cpu"):
        versions = "; ".join(f"{group['group']}: " + ", ".join(f"{k} {v}" for k, v in group["versions"].items())
                             for group in report["groups"] if group.get("versions"))
        lines.append(f"host: {machine['cpu']}, Python {machine.get('python')}" + (f"; {versions}" if versions else ""))
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    """``anyloss speed``'s options, on the ``anyloss`` command's subparsers ``sub``."""
    spd = sub.add_parser("speed", help="time the loss step, one call and a training epoch against the framework's "
                                       "own BCE")
    spd.add_argument("--backends", help=f"comma-separated, from: {', '.join(GROUPS)} "
                                        "(default: every one installed)")
    spd.add_argument("--sizes", help="comma-separated numbers of samples of the loss step (default: 1e3,1e5,1e6,1e7)")
    spd.add_argument("--call-sizes", help="numbers of samples of the one-call rows (default: 32,256,1024; "
                                          "'none' skips them)")
    spd.add_argument("--batch-sizes", help="mini-batch sizes of the training rows (default: 32,256; 'none' skips)")
    spd.add_argument("--metric", default="f1")
    spd.add_argument("--repeats", type=int, help="timed steps per loss and size (default 30)")
    spd.add_argument("--call-repeats", type=int, help="timed calls per loss and size (default 10 x --repeats)")
    spd.add_argument("--train-epochs", type=int, help="at least this many timed epochs per loss in the training rows "
                                                      "(default --repeats / 3; 0 skips them)")
    spd.add_argument("--train-seconds", type=float,
                     help=f"more epochs (up to {TRAIN_EPOCHS_CAP}x) where they are short, until each loss's last "
                          f"about this long (default {TRAIN_SECONDS:g}; 0: exactly --train-epochs)")
    spd.add_argument("--train-samples", type=int, help=f"samples of the training data (default {TRAIN_SAMPLES})")
    spd.add_argument("--epoch-repeats", type=int,
                     help="runs per loss of the paper's SLP and MLP epochs (default 3; 0 skips them)")
    spd.add_argument("--multiclass-n", help=f"samples of the multi-class step (default {MULTICLASS_N:.0e}; "
                                            "'none' skips it)")
    spd.add_argument("--classes", type=int, help=f"classes of the multi-class step (default {MULTICLASS_CLASSES})")
    spd.add_argument("--quick", action="store_true",
                     help="a smoke run of every kind of row with tiny sizes and repeats (for tests; the figures "
                          "mean nothing); options given explicitly still apply")
    spd.add_argument("--torch-guard-filter", choices=TORCH_GUARD_FILTERS,
                     help="the guard filter of every torch.compile row, both losses: 'anyloss' compiles with "
                          "guard_filter_fn=anyloss_torch.skip_guard_on_anyloss_globals (default: none)")
    spd.add_argument("--json", help="write every figure as JSON")
    spd.set_defaults(func=run)


if __name__ == "__main__":  # the per-group worker: one JSON argument in, one JSON line out
    config = json.loads(sys.argv[1])
    if config["group"] in ("torch", "keras-torch"):
        import torch  # noqa: F401  (before TensorFlow, see the README)
    _torch_guard_filter = config.get("torch_guard_filter", "none")
    result = run_group(config["group"], config["metric"], config["sizes"], config["repeats"],
                       config["epoch_repeats"], call_sizes=config["call_sizes"], call_repeats=config["call_repeats"],
                       batch_sizes=config["batch_sizes"], train_epochs=config["train_epochs"],
                       train_samples=config["train_samples"], train_seconds=config["train_seconds"],
                       multiclass_n=config["multiclass_n"],
                       classes=config["classes"])
    if _torch_guard_filters_used:  # what this group's torch.compile rows ran with (torch only)
        result["torch_guard_filters"] = sorted(_torch_guard_filters_used)
    print(json.dumps(result))
