"""``anyloss speed``: the AnyLoss step and training epoch against each framework's own BCE.

Every figure is a ratio measured side by side in one process, so that the noise of a
shared machine cancels as far as it can:

* **loss step**: forward + backward of the AnyLoss loss and of the framework's own
  binary cross-entropy with logits, on the same float32 logits and float32 0/1 labels
  (10% positives), interleaved, median of ``repeats``;
* **bandwidth reference**: one elementwise pass that reads the logits and the labels
  and writes an n-element float32 result (``logits + labels`` into a buffer), the
  least memory traffic any loss step with a gradient needs;
* **extra memory**: the peak memory a loss step allocates beyond its inputs (the
  gradient it returns included), relative to the logits' bytes, at the largest size;
  peak resident memory (``/proc/self/status`` VmHWM after a reset) on a CPU, the
  allocator's peak on a CUDA device;
* **training epoch**: the paper's SLP (full batch) and MLP (mini-batches of 5%) on the
  bundled breast-cancer data, median epoch time after the first (compilation).

Each backend group runs in its own subprocess (Keras picks its backend once per
process; torch must be imported before TensorFlow; memory peaks stay separate).
"""

from __future__ import annotations

import argparse
import json
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
#: What each group's module needs, for a one-line message when it is missing.
_NEEDS = {"torch": "torch", "jax": "optax", "keras-tensorflow": "tensorflow", "keras-jax": "jax",
          "keras-torch": "torch"}
DEFAULT_SIZES = (1_000, 100_000, 1_000_000, 10_000_000)
#: Targets of the speed issue: step ratio to BCE per mode family, and the rest.
STEP_TARGETS = {"compiled": 1.0, "eager": 1.5}
BANDWIDTH_TARGET = 3.0  # loss step / bandwidth reference at the largest size, compiled modes
MEMORY_TARGET = 3.0  # extra bytes / logits' bytes
EPOCH_TARGET = 1.03
_COMPILED = ("torch.compile", "jax.jit", "keras-tf xla", "keras-jax jit")


def step_target(mode: str) -> float:
    return STEP_TARGETS["compiled" if mode in _COMPILED else "eager"]


# --- measurement helpers -----------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_medians(fns: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Median seconds of each function, run in turn ``repeats`` times after one warm-up each."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times, strict=True):
            bucket.append(_timed(fn))
    return [statistics.median(t) for t in times]


def _rss_peak_extra(fn: Callable[[], Any]) -> int | None:
    """Peak resident bytes ``fn`` adds over the current resident set (Linux), ``None`` elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current VmRSS
        before = _proc_status_kb("VmRSS")
        fn()
        return (_proc_status_kb("VmHWM") - before) * 1024
    except OSError:
        return None


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _step_record(mode: str, n: int, anyloss_s: float, bce_s: float, copy_s: float) -> dict[str, Any]:
    return {"mode": mode, "n": n, "anyloss_ms": anyloss_s * 1e3, "bce_ms": bce_s * 1e3, "copy_ms": copy_s * 1e3,
            "ratio_bce": anyloss_s / bce_s, "ratio_copy": anyloss_s / copy_s, "target_bce": step_target(mode)}


def _labels(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random(n) < 0.1).astype(np.float32)


def _logits(n: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(n).astype(np.float32)


# --- the backend groups (each runs in its own process) -------------------------------------------


def _torch_steps(metric: str, sizes: list[int], repeats: int) -> tuple[list[dict], dict]:
    import torch

    import anyloss_torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    anyloss = anyloss_torch.AnyLoss(metric, validate=False)
    bce = torch.nn.BCEWithLogitsLoss()
    records, memory = [], {}
    for mode in GROUPS["torch"]:
        for n in sizes:
            x = torch.tensor(_logits(n), device=device, requires_grad=True)
            y = torch.tensor(_labels(n), device=device)
            out = torch.empty_like(x)
            wrap = (lambda m: torch.compile(m, dynamic=False)) if mode == "torch.compile" else (lambda m: m)
            a_fn, b_fn = wrap(anyloss), wrap(bce)

            def step(loss_fn: Any, x: Any = x, y: Any = y) -> Callable[[], None]:
                def run() -> None:
                    x.grad = None
                    loss_fn(x, y).backward()
                    sync()
                return run

            def copy(x: Any = x, y: Any = y, out: Any = out) -> None:
                torch.add(x.detach(), y, out=out)
                sync()

            a, b, c = interleaved_medians([step(a_fn), step(b_fn), copy], repeats)
            records.append(_step_record(mode, n, a, b, c))
            if n == max(sizes):
                memory[mode] = {"anyloss": _torch_peak(step(a_fn), device) / (4 * n),
                                "bce": _torch_peak(step(b_fn), device) / (4 * n)}
    return records, memory


def _torch_peak(fn: Callable[[], None], device: str) -> float:
    import torch

    if device == "cuda":
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        return float(torch.cuda.max_memory_allocated() - base)
    extra = _rss_peak_extra(fn)
    return float("nan") if extra is None else float(extra)


def _jax_steps(metric: str, sizes: list[int], repeats: int) -> tuple[list[dict], dict]:
    import jax
    import jax.numpy as jnp
    import optax

    import anyloss_jax

    records, memory = [], {}
    for n in sizes:
        z, y = jnp.asarray(_logits(n)), jnp.asarray(_labels(n))
        grad_a = jax.jit(jax.grad(lambda z, y: anyloss_jax.anyloss(z, y, metric, validate=False)))
        grad_b = jax.jit(jax.grad(lambda z, y: optax.sigmoid_binary_cross_entropy(z, y).mean()))
        copy = jax.jit(lambda z, y: z + y)
        fns = [lambda f=f, z=z, y=y: f(z, y).block_until_ready() for f in (grad_a, grad_b, copy)]
        a, b, c = interleaved_medians(fns, repeats)
        records.append(_step_record("jax.jit", n, a, b, c))
        if n == max(sizes):
            memory["jax.jit"] = {"anyloss": _jax_peak(grad_a, fns[0], z, y) / (4 * n),
                                 "bce": _jax_peak(grad_b, fns[1], z, y) / (4 * n)}
    return records, memory


def _jax_peak(jitted: Any, run: Callable[[], Any], *args: Any) -> float:
    import jax

    if jax.default_backend() == "cpu":
        extra = _rss_peak_extra(run)
        return float("nan") if extra is None else float(extra)
    stats = jitted.lower(*args).compile().memory_analysis()  # XLA's own plan on an accelerator
    return float(stats.temp_size_in_bytes + stats.output_size_in_bytes)


def _keras_steps(group: str, metric: str, sizes: list[int], repeats: int) -> tuple[list[dict], dict]:
    import keras

    import anyloss_keras

    anyloss = anyloss_keras.AnyLoss(metric, from_logits=True, validate=False)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    backend = keras.backend.backend()
    records, memory = [], {}
    for mode in GROUPS[group]:
        for n in sizes:
            z_np, y_np = _logits(n).reshape(-1, 1), _labels(n).reshape(-1, 1)
            step_a, step_b, copy, z, y = _keras_step_fns(backend, mode, anyloss, bce, z_np, y_np)
            fns = [lambda f=f, z=z, y=y: f(z, y) for f in (step_a, step_b, copy)]
            a, b, c = interleaved_medians(fns, repeats)
            records.append(_step_record(mode, n, a, b, c))
            if n == max(sizes):
                peaks = [_rss_peak_extra(fn) for fn in fns[:2]]
                memory[mode] = {k: float("nan") if p is None else p / (4 * n)
                                for k, p in zip(("anyloss", "bce"), peaks, strict=True)}
    return records, memory


def _keras_step_fns(backend: str, mode: str, anyloss: Any, bce: Any, z_np: np.ndarray, y_np: np.ndarray) -> Any:
    """``(anyloss_step, bce_step, copy, z, y)``: gradient of each loss w.r.t. the logits, in ``backend``'s way."""
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
        return grad_of(anyloss), grad_of(bce), lambda z, y: add(z, y).numpy(), tf.constant(z_np), tf.constant(y_np)
    if backend == "jax":
        import jax

        def grad_of(loss: Any) -> Any:
            compiled = jax.jit(jax.grad(lambda z, y: loss(y, z)))
            return lambda z, y: compiled(z, y).block_until_ready()

        add = jax.jit(lambda z, y: z + y)
        z, y = jax.numpy.asarray(z_np), jax.numpy.asarray(y_np)
        return grad_of(anyloss), grad_of(bce), lambda z, y: add(z, y).block_until_ready(), z, y
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
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

    return grad_of(anyloss), grad_of(bce), copy, z, y


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


def run_group(group: str, metric: str, sizes: list[int], repeats: int, epoch_repeats: int) -> dict[str, Any]:
    """Every figure of one backend group, in this process."""
    if group == "torch":
        steps, memory = _torch_steps(metric, sizes, repeats)
        engine = "torch"
    elif group == "jax":
        steps, memory = _jax_steps(metric, sizes, repeats)
        engine = "jax"
    else:
        steps, memory = _keras_steps(group, metric, sizes, repeats)
        engine = "keras"
    epochs = _epochs(engine, metric, epoch_repeats) if epoch_repeats > 0 else []
    return {"group": group, "steps": steps, "memory": memory, "epochs": epochs}


# --- the command -------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise UsageError(f"--sizes: {part!r} is not a number") from None
        if value < 2 or value != int(value):
            raise UsageError(f"--sizes: {part!r} is not a whole number of at least 2")
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    import anyloss_core as al

    try:
        al.get_metric(args.metric)  # an unknown name fails here, before any subprocess
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--metric: {exc}") from None
    sizes = parse_sizes(args.sizes)
    groups = parse_groups(args.backends) if args.backends else [g for g in GROUPS if _available(g)]
    if args.repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {args.repeats}")
    for group in groups:
        if not _available(group):
            packages = " ".join(["keras"] * group.startswith("keras-") + [_NEEDS[group]])
            raise UsageError(f"--backends {group} needs {packages}: pip install {packages}")
    results = []
    for group in groups:
        print(f"measuring {group} ...", file=sys.stderr, flush=True)
        results.append(_run_in_subprocess(group, args.metric, sizes, args.repeats, args.epoch_repeats))
    report = {"metric": args.metric, "sizes": sizes, "repeats": args.repeats, "machine": _machine(),
              "groups": results}
    print(format_report(report))
    if args.json:
        from .common import write_json

        write_json(args.json, report)
    return report


def _run_in_subprocess(group: str, metric: str, sizes: list[int], repeats: int, epoch_repeats: int) -> dict:
    env = dict(os.environ)
    if group.startswith("keras-"):
        env["KERAS_BACKEND"] = group.removeprefix("keras-")
    command = [sys.executable, "-m", "anyloss_bench.speed", group, metric, ",".join(map(str, sizes)), str(repeats),
               str(epoch_repeats)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {group} measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _machine() -> dict[str, Any]:
    import platform

    return {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count()}


def _verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISS"


def format_report(report: dict[str, Any]) -> str:
    """The terminal table: step ratios per mode and size, memory, epochs, each against its target."""
    sizes = report["sizes"]
    lines = [f"loss step: forward+backward of the {report['metric']} AnyLoss / the framework's BCE-with-logits "
             f"(median of {report['repeats']}, float32)",
             f"{'mode':<22}" + "".join(f"{f'n={n:.0e}':>12}" for n in sizes) + f"{'target':>9}"
             + f"{'/copy@' + f'{max(sizes):.0e}':>13}"]
    for group in report["groups"]:
        modes: dict[str, dict[int, dict]] = {}
        for rec in group["steps"]:
            modes.setdefault(rec["mode"], {})[rec["n"]] = rec
        for mode, by_n in modes.items():
            cells = []
            for n in sizes:
                rec = by_n[n]
                flag = "" if n < 100_000 or rec["ratio_bce"] <= rec["target_bce"] else "!"
                cells.append(f"{rec['ratio_bce']:.2f}x{flag}".rjust(12))
            big = by_n[max(sizes)]
            lines.append(f"{mode:<22}" + "".join(cells) + f"{'<=' + format(big['target_bce'], '.1f') + 'x':>9}"
                         + f"{big['ratio_copy']:>12.2f}x")
    lines.append("! over the target (targets apply at n >= 1e5); /copy = step time / one elementwise pass over the "
                 "same bytes")
    lines.append("")
    lines.append(f"extra memory of one step at n={max(sizes):.0e}, in logits' bytes (target <= {MEMORY_TARGET:.0f}x)")
    for group in report["groups"]:
        for mode, mem in group["memory"].items():
            lines.append(f"  {mode:<22} anyloss {mem['anyloss']:5.2f}x   bce {mem['bce']:5.2f}x   "
                         f"{_verdict(mem['anyloss'], MEMORY_TARGET)}")
    lines.append("")
    lines.append(f"training epoch on breast_cancer, AnyLoss / BCE (target <= {EPOCH_TARGET}x)")
    for group in report["groups"]:
        for rec in group["epochs"]:
            lines.append(f"  {group['group']:<18} {rec['arch']:<4} batch {rec['batch_size']:>4}   "
                         f"{rec['anyloss_ms']:8.3f} ms / {rec['bce_ms']:8.3f} ms = {rec['ratio_bce']:.2f}x   "
                         f"{_verdict(rec['ratio_bce'], EPOCH_TARGET)}")
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    """``anyloss speed``'s options, on the ``anyloss`` command's subparsers ``sub``."""
    spd = sub.add_parser("speed", help="time the loss step and the training epoch against the framework's own BCE")
    spd.add_argument("--backends", help=f"comma-separated, from: {', '.join(GROUPS)} "
                                        "(default: every one installed)")
    spd.add_argument("--sizes", default=",".join(str(n) for n in DEFAULT_SIZES),
                     help="comma-separated numbers of samples (default: 1e3,1e5,1e6,1e7)")
    spd.add_argument("--metric", default="f1")
    spd.add_argument("--repeats", type=int, default=30, help="timed steps per loss and size (median)")
    spd.add_argument("--epoch-repeats", type=int, default=3,
                     help="training runs per loss for the epoch ratio (0: skip the epochs)")
    spd.add_argument("--json", help="write every figure as JSON")
    spd.set_defaults(func=run)


if __name__ == "__main__":  # the per-group worker: prints one JSON line
    group_name, metric_name, size_text, repeat_text, epoch_text = sys.argv[1:6]
    if group_name == "torch" or group_name == "keras-torch":
        import torch  # noqa: F401  (before TensorFlow, see the README)
    result = run_group(group_name, metric_name, [int(s) for s in size_text.split(",")], int(repeat_text),
                       int(epoch_text))
    print(json.dumps(result))
