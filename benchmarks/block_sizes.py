"""torch's block-by-block temporaries at several block sizes, in one process: the default F1Loss() step against BCE's.

Three steps of the default loss work block by block above ``_BLOCKED_ABOVE`` samples, ``_BLOCK`` at a time,
through one reused buffer (the label check, FP's ``1 - y``, the rescue slope); below it each makes an n-element
temporary.  Each setting ``block/above`` is switched in before its step; the steps (one per setting, and BCE)
are interleaved with their order reversed every other round, and the 10th percentile of each is compared.  The
minor page faults per step (``getrusage``) are printed too: a fresh multi-megabyte temporary comes with about one
fault per 4 kB page.

    PYTHONPATH=.:backends python benchmarks/block_sizes.py 1048576/1048576,65536/262144 1e5,1e6,1e7 30

(``1048576/1048576`` is the setting before the seventh round, ``65536/262144`` the one since.)
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import torch

import anyloss_torch
from anyloss_torch import _fast_paths


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    settings = [tuple(int(v) for v in s.split("/")) for s in sys.argv[1].split(",")]
    sizes = [int(float(s)) for s in (sys.argv[2] if len(sys.argv) > 2 else "1e5,1e6,1e7").split(",")]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    torch.set_num_threads(1)
    print(f"default F1Loss() step / BCEWithLogitsLoss at _BLOCK/_BLOCKED_ABOVE settings, one thread, p10 of {rounds} "
          f"interleaved rounds, torch {torch.__version__}")
    for n in sizes:
        rng = np.random.default_rng(0)
        x = torch.tensor(rng.normal(size=n), dtype=torch.float32, requires_grad=True)
        y = torch.tensor(rng.random(n) < 0.1, dtype=torch.float32)
        loss_fn, bce = anyloss_torch.F1Loss(), torch.nn.BCEWithLogitsLoss()

        def step(setting: tuple[int, ...] | None, loss_fn=loss_fn, bce=bce, x=x, y=y):
            def run() -> None:
                x.grad = None
                if setting is None:
                    bce(x, y).backward()
                    return
                _fast_paths._BLOCK, _fast_paths._BLOCKED_ABOVE = setting
                loss_fn(x, y).backward()
            return run

        fns = [step(None), *(step(s) for s in settings)]
        for fn in fns:
            for _ in range(max(5, rounds // 3)):
                fn()
        times: list[list[float]] = [[] for _ in fns]
        faults = [0] * len(fns)
        for r in range(rounds):
            for i in (range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))):
                before, start = _faults(), time.perf_counter()
                fns[i]()
                times[i].append(time.perf_counter() - start)
                faults[i] += _faults() - before
        p10 = [float(np.percentile(t, 10)) for t in times]
        line = [f"n={n:.0e}  BCE {p10[0] * 1e3:8.3f} ms ({faults[0] / rounds:5.0f} faults)"]
        for (block, above), t, f in zip(settings, p10[1:], faults[1:], strict=True):
            line.append(f"{block}/{above}: {t / p10[0]:.2f}x ({f / rounds:5.0f} faults)")
        print("   ".join(line))


if __name__ == "__main__":
    main()
