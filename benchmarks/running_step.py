"""The torch eager step of a loss of running counts, against the plain loss and ``BCEWithLogitsLoss``.

    PYTHONPATH=.:backends OMP_NUM_THREADS=1 python benchmarks/running_step.py [sizes] [repeats]

``F1Loss(momentum=0.2)`` (running counts, :mod:`anyloss_core._running`; the state is updated every step, as in
training) and ``F1Loss()``, each forward + backward on fixed float32 logits, 10% positives, at n = 256, 1e5 and
1e6 by default.  p10 of interleaved rounds (order reversed every other round) after a warm-up of a third, as
``anyloss speed`` measures; the ratios are against BCE in the same rounds.  For an A/B of two trees run it in
each (frozen copies) and alternate.
"""

from __future__ import annotations

import sys

import torch

import anyloss_torch
from anyloss_bench.speed import _labels, _logits, interleaved


def main(sizes: list[int], repeats: int) -> None:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, one thread; p10 of interleaved rounds, float32")
    print(f"{'n':>9s}  {'running / BCE':>14s}  {'plain / BCE':>12s}  {'BCE ms':>8s}")
    for n in sizes:
        x, y = torch.tensor(_logits(n), requires_grad=True), torch.tensor(_labels(n))
        running, plain, bce = anyloss_torch.F1Loss(momentum=0.2), anyloss_torch.F1Loss(), torch.nn.BCEWithLogitsLoss()
        fns = [lambda f=f, x=x, y=y: f(x, y).backward() for f in (running, plain, bce)]
        r = repeats if n > 10_000 else 10 * repeats
        times = interleaved(fns, r, warmup=r // 3)
        base = times[-1]["p10"]
        print(f"{n:9d}  {times[0]['p10'] / base:13.2f}x  {times[1]['p10'] / base:11.2f}x  {base * 1e3:8.3f}")


if __name__ == "__main__":
    main([int(float(s)) for s in (sys.argv[1] if len(sys.argv) > 1 else "256,1e5,1e6").split(",")],
         int(sys.argv[2]) if len(sys.argv) > 2 else 60)
