"""Would NumPy run a small eager torch call's arithmetic faster than torch?  A trial, not the library's code.

    PYTHONPATH=.:backends python benchmarks/numpy_small_batches.py [n] [repeats] [epochs]

On a CPU a torch kernel at n = 32 costs 1-3 us of dispatch, a NumPy ufunc about 0.3 us, and a CPU tensor's
``.numpy()`` is a view, no copy.  The trial runs ``F1Loss()``'s one-node path (``anyloss_torch._autograd``)
with the core's counts and pullback computed on NumPy views of the CPU tensors, with NumPy forms of the fast
paths written here (in place where the core allows it, ``np.dot``, the core's overflow-free sigmoid with
``out=``), and the pullback's array handed back through ``torch.from_numpy``.  The rest of the call (the
checks, the metric on floats, the autograd node) is unchanged.  "As it is" below is the library's path behind
the same pass-through wrapper of ``anyloss_core.soft_confusion_with_pullback`` (one Python call more).

First the trial's gradient is checked against the library's at n, 256 and 4096 (``torch.testing.assert_close``,
float32 tolerances).  Then it prints:

* warm, the least of 9 timeit runs: the core's forward (the counts, and the pullback made) and the pullback
  called, on torch tensors and on NumPy views;
* one call, forward + backward, interleaved with BCE (order alternated, p10): ``F1Loss()`` as it is and with
  the trial;
* MLP epochs: the MLP and data of ``anyloss speed``'s training rows (32 -> 64 -> 64 -> 1, Adam, 4096 samples,
  one thread), with the batches sliced in order (no ``DataLoader``); ``epochs`` epochs at batch 32 and four
  times as many at batch 256; the three losses' epochs interleaved, p10.
"""

from __future__ import annotations

import sys
import time
import timeit
from typing import Any

import array_api_compat.numpy as npx
import numpy as np
import torch

import anyloss_core as al
import anyloss_torch
from anyloss_bench.speed import _labels, _logits, _torch_mlp, interleaved, percentile, training_data
from anyloss_core.adapters import FastPaths, register_fast_paths

OPTIONS = {"from_logits": True, "scale": 73.0, "approximation": "anyloss", "validate": True}
#: Up to this many logits the trial runs the core on NumPy views.
SMALL = 4096


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """sigma(x) in the core's form, 1 / (1 + e) for x >= 0 and e / (1 + e) below, e = exp(-|x|)
    (no overflow, and the same values as the core's and torch's up to rounding)."""
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)
    inv = np.add(e, 1.0)
    np.reciprocal(inv, out=inv)
    np.multiply(e, inv, out=e)
    return np.where(x >= 0, inv, e)


class NumpyFastPaths(FastPaths):
    """The core's replaceable steps for NumPy: in place on the core's temporaries, BLAS dot products."""

    __slots__ = ()
    counts_from_label_sums = True

    def sigmoid_of_temporary(self, x: Any, xp: Any) -> Any:
        return _sigmoid(x)

    def scale_temporary(self, x: Any, scale: float, xp: Any) -> Any:
        x *= scale
        return x

    def scaled_difference(self, x: Any, shift: float, scale: float, xp: Any) -> Any:
        out = np.multiply(x, scale)
        out -= shift * scale
        return out

    def scaled_plus(self, x: Any, scale: Any, offset: Any, xp: Any) -> Any:
        out = np.multiply(x, scale)
        out += offset
        return out

    def multiply_temporary(self, x: Any, factor: Any, xp: Any) -> Any:
        x *= factor
        return x

    def add_temporary(self, x: Any, term: Any, xp: Any) -> Any:
        x += term
        return x

    def add_scaled_temporary(self, x: Any, term: Any, factor: Any, xp: Any) -> Any:
        x += term * factor
        return x

    def times_sigmoid_slope(self, x: Any, s: Any, xp: Any) -> Any:
        x *= s
        x *= 1.0 - s  # not x - x s, which cancels where s is near 1
        return x

    def dot(self, a: Any, b: Any, xp: Any) -> Any:
        return np.dot(a, b)

    def dot_of_one_minus(self, y: Any, a: Any, xp: Any) -> Any:
        return np.dot(np.subtract(1.0, y), a)

    def add_scaled_shrunk_difference(self, x: Any, a: Any, b: Any, threshold: float, factor: Any, xp: Any) -> Any:
        d = np.subtract(a, b)
        d[np.abs(d) <= threshold] = 0.0
        return self.add_scaled_temporary(x, d, factor, xp)

    def all_binary(self, y: Any, xp: Any) -> bool:
        return not np.any(y - y * y)  # NaN and infinities leave a NaN, which any() counts


register_fast_paths(lambda xp: getattr(xp, "__name__", None) in ("array_api_compat.numpy", "numpy"),
                    NumpyFastPaths())
npx.sigmoid = _sigmoid  # the core's sigmoid(x, xp) takes a namespace's own

_library = al.soft_confusion_with_pullback
TRIAL = {"on": False}


def _with_numpy(y_true: Any, y_pred: Any, **kwargs: Any) -> Any:
    """The core's counts and pullback, on NumPy views of small float32 CPU tensors while the trial is on."""
    if not (TRIAL["on"] and isinstance(y_pred, torch.Tensor) and y_pred.is_cpu and y_pred.numel() <= SMALL
            and y_pred.dtype == torch.float32 and kwargs.get("sample_weight") is None):
        return _library(y_true, y_pred, **kwargs)
    counts, pull = _library(y_true.numpy(), y_pred.numpy(), **kwargs)

    def pullback(g: al.Confusion, rescue_scale: Any = 1.0) -> torch.Tensor:
        return torch.from_numpy(pull(g, rescue_scale=rescue_scale))

    return counts, pullback


al.soft_confusion_with_pullback = _with_numpy  # what anyloss_torch._autograd calls, as al.soft_confusion_with_pullback


def _trial(loss_fn: Any) -> Any:
    def call(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        TRIAL["on"] = True
        try:
            return loss_fn(input, target)
        finally:
            TRIAL["on"] = False
    return call


def _gradient(loss_fn: Any, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z.grad = None
    loss_fn(z, y).backward()
    assert z.grad is not None
    return z.grad.clone()


def _check(sizes: tuple[int, ...]) -> None:
    """The trial's gradient against the library's, at float32 tolerances, before anything is timed."""
    for n in sizes:
        z = torch.tensor(_logits(n), requires_grad=True)
        y = torch.tensor(_labels(n))
        library = _gradient(anyloss_torch.F1Loss(), z, y)
        torch.testing.assert_close(_gradient(_trial(anyloss_torch.F1Loss()), z, y), library)


def _warm(n: int) -> None:
    z, y = torch.tensor(_logits(n)), torch.tensor(_labels(n))
    g = al.Confusion(0.1, 0.2, 0.3, 0.4)
    for name, (yy, zz) in {"torch": (y, z), "NumPy views": (y.numpy(), z.numpy())}.items():
        def forward(yy: Any = yy, zz: Any = zz) -> Any:
            return _library(yy, zz, rescue=0.1, counts_as_floats=True, **OPTIONS)
        _, pull = forward()
        times = [min(timeit.repeat(f, number=2000, repeat=9)) / 2000 * 1e6
                 for f in (forward, lambda pull=pull: pull(g, rescue_scale=1.0))]
        print(f"n={n} warm, core on {name:11s}: the counts (forward) {times[0]:6.1f} us, "
              f"the pullback {times[1]:6.1f} us")


def _call(n: int, repeats: int) -> None:
    z = torch.tensor(_logits(n), requires_grad=True)
    y = torch.tensor(_labels(n))
    losses = {"BCEWithLogitsLoss()": torch.nn.BCEWithLogitsLoss(), "F1Loss()": anyloss_torch.F1Loss(),
              "F1Loss(), core on NumPy": _trial(anyloss_torch.F1Loss())}

    def call(loss_fn: Any) -> Any:
        return lambda: _gradient(loss_fn, z, y)

    timings = interleaved([call(f) for f in losses.values()], repeats, max(50, repeats // 6))
    base = timings[0]["p10"]
    for name, t in zip(losses, timings, strict=True):
        print(f"n={n} one call {name:26s} p10 {t['p10'] * 1e6:7.1f} us ({t['p10'] / base:.2f}x BCE)")


def _epochs(epochs: int) -> None:
    X_np, y_np = training_data()
    X, Y = torch.tensor(X_np), torch.tensor(y_np)
    names = ("BCEWithLogitsLoss()", "F1Loss()", "F1Loss(), core on NumPy")
    for batch in (32, 256):
        runs = {}
        for name, loss_fn in zip(names, (torch.nn.BCEWithLogitsLoss(), anyloss_torch.F1Loss(),
                                         _trial(anyloss_torch.F1Loss())), strict=True):
            torch.manual_seed(0)
            model = _torch_mlp(X.shape[1])
            runs[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), loss_fn)
        seconds: dict[str, list[float]] = {name: [] for name in names}
        count = epochs if batch == 32 else 4 * epochs  # about a second of epochs at each batch size
        for epoch in range(count + 2):  # two warm-up epochs
            for name in (names if epoch % 2 else names[::-1]):
                model, optimizer, loss_fn = runs[name]
                start = time.perf_counter()
                for i in range(0, X.shape[0], batch):
                    optimizer.zero_grad(set_to_none=True)
                    loss_fn(model(X[i:i + batch])[:, 0], Y[i:i + batch]).backward()
                    optimizer.step()
                if epoch >= 2:
                    seconds[name].append(time.perf_counter() - start)
        base = percentile(seconds[names[0]], 10)
        for name in names:
            p10 = percentile(seconds[name], 10)
            print(f"batch {batch:3d} epoch {name:26s} p10 {p10 * 1e3:7.2f} ms ({p10 / base:.2f}x BCE, {count} epochs)")


if __name__ == "__main__":
    args = sys.argv[1:]
    size = int(float(args[0])) if args else 32
    torch.set_num_threads(1)
    _check((size, 256, 4096))
    _warm(size)
    _call(size, int(args[1]) if len(args) > 1 else 3000)
    _epochs(int(args[2]) if len(args) > 2 else 12)
