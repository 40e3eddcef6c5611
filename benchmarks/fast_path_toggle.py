"""One torch fast path on and off in the same process: the default F1Loss() step against BCE's, interleaved.

An A/B of two source trees runs in two processes, and on a shared machine their ratios to BCE moved by 0.1
between identical runs.  Here the two sides share one process, one allocator and one set of inputs: the named
methods of ``TorchFastPaths`` are switched to the core's default (``FastPaths``) before each "off" step and back
before each "on" step, the three steps (off, on, BCE) interleaved with their order reversed every other round,
and the 10th percentile of each compared.

    PYTHONPATH=.:backends python benchmarks/fast_path_toggle.py scaled_difference,scaled_plus 1e3,1e5,1e6 60
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

import anyloss_torch
from anyloss_core.adapters import FastPaths
from anyloss_torch._fast_paths import TorchFastPaths


def main() -> None:
    names = sys.argv[1].split(",")
    sizes = [int(float(s)) for s in (sys.argv[2] if len(sys.argv) > 2 else "1e3,1e5,1e6").split(",")]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    torch.set_num_threads(1)
    on = {name: getattr(TorchFastPaths, name) for name in names}
    off = {name: getattr(FastPaths, name) for name in names}

    def switch(methods):
        for name, method in methods.items():
            setattr(TorchFastPaths, name, method)

    print(f"TorchFastPaths.{{{', '.join(names)}}} on / off; default F1Loss() step / BCEWithLogitsLoss, one thread, "
          f"p10 of {rounds} interleaved rounds, torch {torch.__version__}")
    for n in sizes:
        rng = np.random.default_rng(0)
        x = torch.tensor(rng.normal(size=n), dtype=torch.float32, requires_grad=True)
        y = torch.tensor(rng.random(n) < 0.1, dtype=torch.float32)
        loss_fn, bce = anyloss_torch.F1Loss(), torch.nn.BCEWithLogitsLoss()

        def step(methods, loss_fn=loss_fn, x=x, y=y):
            def run():
                switch(methods)
                loss_fn(x, y).backward()
            return run

        fns = [step(off), step(on), lambda bce=bce, x=x, y=y: bce(x, y).backward()]
        for fn in fns:
            for _ in range(max(5, rounds // 3)):
                fn()
        times: list[list[float]] = [[] for _ in fns]
        for r in range(rounds):
            for i in (range(3) if r % 2 == 0 else reversed(range(3))):
                start = time.perf_counter()
                fns[i]()
                times[i].append(time.perf_counter() - start)
        off_s, on_s, bce_s = (float(np.percentile(t, 10)) for t in times)
        print(f"n = {n:<8.0e} off {off_s / bce_s:.3f}x   on {on_s / bce_s:.3f}x BCE   on / off {on_s / off_s:.3f}"
              f"   (BCE {bce_s * 1e3:.3f} ms)")
    switch(on)


if __name__ == "__main__":
    main()
