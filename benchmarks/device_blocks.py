"""The eager torch step on a GPU at large n, by the block size of the blocked steps off the CPU.

Until the second GPU round, above 2**20 labels off the CPU ``anyloss_torch._fast_paths`` worked block by block
(blocks of 2**20) in the steps that would otherwise make an n-element temporary (``1 - y`` of the counts, the
rescue's difference): the blocks bounded the peak memory, but on a GPU each block is a few kernel launches, and
the eager step there is bound by launches (5.6x BCE at n = 1e7 against 2.6x at 1e6).  This times the step
(forward + backward, synchronised) and its extra memory for each block size, against BCE, in one run (it
replaces ``_block_size`` off the CPU; whole arrays are what the loss does now):

    PYTHONPATH=.:backends OMP_NUM_THREADS=1 python benchmarks/device_blocks.py [repeats]

Block size 0 means whole arrays.  p10 of interleaved rounds, as ``anyloss speed`` measures.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import anyloss_torch
from anyloss_bench.speed import _torch_peak, interleaved
from anyloss_torch import _fast_paths


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    blocks = {"2**20 (before)": 1 << 20, "2**22": 1 << 22, "2**24": 1 << 24, "whole (now)": 0}
    original = _fast_paths._block_size
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__} on {device}; step / BCE (p10 of {repeats}), extra memory in logits' bytes")
    for n in (2_000_000, 10_000_000):
        x = torch.tensor(rng.normal(size=n), dtype=torch.float32, device=device, requires_grad=True)
        y = torch.tensor(rng.random(n) < 0.1, dtype=torch.float32, device=device)
        f1, bce = anyloss_torch.F1Loss(), torch.nn.BCEWithLogitsLoss()

        def step(loss_fn, block, x=x, y=y):
            def run():
                # the rule before the change, with ``block`` for its 2**20: blocks above both bounds
                _fast_paths._block_size = lambda a: block if a.shape[0] > max(block, _fast_paths._BLOCKED_ABOVE) \
                    else 0
                try:
                    x.grad = None
                    loss_fn(x, y).backward()
                finally:
                    _fast_paths._block_size = original
                sync()
            return run

        fns = [step(f1, b) for b in blocks.values()] + [step(bce, 0)]
        times = interleaved(fns, repeats, warmup=max(3, repeats // 3))
        peaks = [min(_torch_peak(fn, device) for _ in range(2)) / (4 * n) for fn in fns]
        base = times[-1]["p10"]
        for (name, _), t, peak in zip(blocks.items(), times, peaks, strict=False):
            print(f"  n = {n:.0e}  block {name:12s} {t['p10'] / base:6.2f}x   memory {peak:5.2f}x")
        print(f"  n = {n:.0e}  BCE {base * 1e3:.3f} ms, memory {peaks[-1]:.2f}x")


if __name__ == "__main__":
    main()
