"""Time of the torch adapter's float evaluator: a metric's value and gradient at four counts (Python floats).

    PYTHONPATH=.:backends python benchmarks/metric_on_floats.py [calls]

``anyloss_torch._scalar_grad.metric_value_and_grad`` runs once per eager loss call on the
CPU (the one-node path).  Prints the p10 of single calls, after a warm-up, per metric, in
microseconds; run it in two trees (frozen copies) to compare them.
"""

from __future__ import annotations

import sys
import time

import anyloss_core as al
from anyloss_torch._scalar_grad import metric_value_and_grad

COUNTS = al.Confusion(tn=20.3, fn=1.7, fp=2.2, tp=7.8)


def p10_us(fn, calls: int) -> float:
    for _ in range(calls // 5):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 10] * 1e6


def main(calls: int) -> None:
    rows = []
    for name in ("f1", "accuracy", "balanced_accuracy", "gmean", "mcc"):
        metric = al.get_metric(name)
        rows.append(f"{name} {p10_us(lambda m=metric: metric_value_and_grad(m, COUNTS), calls):.2f} us")
    print("  ".join(rows))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
