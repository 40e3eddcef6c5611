"""The label check of ``validate=True`` in torch: the boolean expression it replaced against the fused one.

    python benchmarks/value_check.py [n] [threads] [repeats]

Prints p10 / median microseconds of ``all((y == 0) | (y == 1))`` (the check before issue 20) and of torch's
registered fast path ``anyloss_torch._fast_paths.TorchFastPaths.all_binary`` (``aminmax(y - y*y)``, by blocks
above ``_BLOCKED_ABOVE`` labels on the CPU: ``anyloss_torch._fast_paths._block_size``) on the same float32 0/1
labels, interleaved with the order alternated; then forward +
backward of ``F1Loss()`` with the old check patched in, with the fused one, with ``validate=False``, and
``BCEWithLogitsLoss``.  ``threads`` sets ``torch.set_num_threads`` (1 gives figures a loaded machine disturbs
least).
"""

from __future__ import annotations

import inspect
import sys

import torch


def main(n: int, threads: int, repeats: int) -> None:
    torch.set_num_threads(threads)
    import array_api_compat.torch as xp

    import anyloss_core._inputs as inputs
    import anyloss_torch
    from anyloss_bench.speed import _labels, _logits, interleaved
    from anyloss_core._fast_paths import fast_paths

    y = torch.tensor(_labels(n))
    checks = {"all((y == 0) | (y == 1))": lambda: bool(xp.all((y == 0) | (y == 1))),
              "fused all_binary": lambda: fast_paths(xp).all_binary(y, xp)}
    for name, t in zip(checks, interleaved(list(checks.values()), repeats, max(5, repeats // 3)), strict=True):
        print(f"n={n:.0e} threads={threads} check {name:26s} p10 {t['p10'] * 1e6:10.1f} us   "
              f"median {t['median'] * 1e6:10.1f} us")

    fused = inputs._check_values

    def old_check(y: object, p: object, w: object, from_logits: bool, xp: object) -> None:  # HEAD before issue 20
        if y is not None and not bool(xp.all((y == 0) | (y == 1))):
            raise ValueError("y_true")
        if not from_logits and not bool(xp.all((p >= 0) & (p <= 1))):
            raise ValueError("y_pred")
        if w is not None and not bool(xp.all(w >= 0)):
            raise ValueError("sample_weight")

    # A loss term of the default path other than the check (rescue) is switched off where the class has it,
    # so that the rows differ by the check only.
    extra = {"rescue": 0.0} if "rescue" in inspect.signature(anyloss_torch.F1Loss).parameters else {}
    x = torch.tensor(_logits(n), requires_grad=True)
    losses = {"F1Loss() (defaults)": (anyloss_torch.F1Loss(), fused),
              f"F1Loss({_kw(extra)}) old check": (anyloss_torch.F1Loss(**extra), old_check),
              f"F1Loss({_kw(extra)}) fused check": (anyloss_torch.F1Loss(**extra), fused),
              f"F1Loss({_kw({**extra, 'validate': False})})": (anyloss_torch.F1Loss(validate=False, **extra), fused),
              "BCEWithLogitsLoss()": (torch.nn.BCEWithLogitsLoss(), fused)}

    def step(loss_fn: object, check: object) -> object:
        def run() -> None:
            inputs._check_values = check
            try:
                x.grad = None
                loss_fn(x, y).backward()
            finally:
                inputs._check_values = fused
        return run

    timings = interleaved([step(*v) for v in losses.values()], repeats, max(5, repeats // 3))
    bce = timings[-1]
    for name, t in zip(losses, timings, strict=True):
        print(f"n={n:.0e} threads={threads} step {name:40s} p10 {t['p10'] * 1e3:9.3f} ms "
              f"({t['p10'] / bce['p10']:.2f}x BCE)   median {t['median'] * 1e3:9.3f} ms "
              f"({t['median'] / bce['median']:.2f}x)")


def _kw(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(float(args[0])) if args else 1_000_000, int(args[1]) if len(args) > 1 else torch.get_num_threads(),
         int(args[2]) if len(args) > 2 else 60)
