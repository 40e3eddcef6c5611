"""One torch eager call (forward + backward) of the F1 loss at small n against ``BCEWithLogitsLoss``.

    python benchmarks/call_overhead.py [n] [threads] [repeats]

Interleaved, order alternated, p10 and median microseconds of ``F1Loss()`` (default arguments),
``F1Loss(validate=False)``, the same with ``rescue=0.0`` where the class has that argument, and BCE.
``threads`` sets ``torch.set_num_threads``: 1 keeps a loaded machine's scheduling out of the figures (with two
threads on an oversubscribed machine every parallel region waits for a time slice).  For where the time goes,
run it under ``python -m cProfile -s tottime``.
"""

from __future__ import annotations

import inspect
import sys

import torch


def main(n: int, threads: int, repeats: int) -> None:
    torch.set_num_threads(threads)
    import anyloss_torch
    from anyloss_bench.speed import _labels, _logits, interleaved

    x = torch.tensor(_logits(n), requires_grad=True)
    y = torch.tensor(_labels(n))
    losses = {"F1Loss()": anyloss_torch.F1Loss(), "F1Loss(validate=False)": anyloss_torch.F1Loss(validate=False)}
    if "rescue" in inspect.signature(anyloss_torch.F1Loss).parameters:
        losses["F1Loss(rescue=0.0)"] = anyloss_torch.F1Loss(rescue=0.0)
        losses["F1Loss(rescue=0.0, validate=False)"] = anyloss_torch.F1Loss(rescue=0.0, validate=False)
    losses["BCEWithLogitsLoss()"] = torch.nn.BCEWithLogitsLoss()

    def call(loss_fn: object) -> object:
        def run() -> None:
            x.grad = None
            loss_fn(x, y).backward()
        return run

    timings = interleaved([call(f) for f in losses.values()], repeats, max(50, repeats // 3))
    bce = timings[-1]
    for name, t in zip(losses, timings, strict=True):
        print(f"n={n} threads={threads} {name:36s} p10 {t['p10'] * 1e6:8.1f} us ({t['p10'] / bce['p10']:.2f}x BCE)"
              f"   median {t['median'] * 1e6:8.1f} us ({t['median'] / bce['median']:.2f}x)")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(float(args[0])) if args else 32, int(args[1]) if len(args) > 1 else torch.get_num_threads(),
         int(args[2]) if len(args) > 2 else 1000)
