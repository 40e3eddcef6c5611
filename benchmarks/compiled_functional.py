"""A compiled call of the functional F1 loss (``anyloss_torch.f1_loss``) against the functional BCE.

    PYTHONPATH=.:backends python benchmarks/compiled_functional.py [sizes] [repeats]

Forward + backward of ``torch.compile(lambda z, y: anyloss_torch.f1_loss(z, y))`` and of the same with
``torch.nn.functional.binary_cross_entropy_with_logits``, interleaved with the order alternated (p10 after a
warm-up of a sixth of the repeats), one thread; and the number of lines of the F1 frame's guard tree.  Run it in
two trees to compare the traced path with the regions (:mod:`anyloss_torch._region`): the functional losses
pass ``regions=False`` to ``config_loss``; a tree without it runs them in regions.  Measured both ways on
2026-11-30 (docs/performance.md, second GPU round's CPU notes); the traced path was kept, because in a region a
float argument that changes between calls compiles once per value.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F

import anyloss_torch
from anyloss_bench.speed import _labels, _logits, interleaved


def f1_call(z: Any, y: Any) -> Any:
    return anyloss_torch.f1_loss(z, y)


def bce_call(z: Any, y: Any) -> Any:
    return F.binary_cross_entropy_with_logits(z, y)


def _guard_lines(fn: Any) -> int:
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    entries = _debug_get_cache_entry_list(fn.__code__)
    return len(str(entries[0].guard_manager).splitlines()) if entries else -1


def main(sizes: list[int], repeats: int) -> None:
    torch.set_num_threads(1)
    for n in sizes:
        torch._dynamo.reset()
        z = torch.tensor(_logits(n), requires_grad=True)
        y = torch.tensor(_labels(n))
        compiled = [torch.compile(f1_call, dynamic=False), torch.compile(bce_call, dynamic=False)]

        def step(loss_fn: Any, z: Any = z, y: Any = y) -> Any:
            def run() -> None:
                z.grad = None
                loss_fn(z, y).backward()
            return run

        reps = repeats if n < 10_000 else max(30, repeats // 30)
        f1, bce = (t["p10"] for t in interleaved([step(f) for f in compiled], reps, max(20, reps // 6)))
        print(f"n={n:<9} f1_loss {f1 * 1e6:9.1f} us  BCE {bce * 1e6:9.1f} us  {f1 / bce:5.2f}x"
              f"  (f1_loss's guard tree: {_guard_lines(f1_call)} lines)")
    torch._dynamo.reset()


if __name__ == "__main__":
    args = sys.argv[1:]
    main([int(float(s)) for s in (args[0] if args else "32,4096,1e5").split(",")],
         int(args[1]) if len(args) > 1 else 3000)
