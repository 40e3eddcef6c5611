"""What ``torch.compile``'s guards cost a compiled F1 AnyLoss call, against ``BCEWithLogitsLoss``.

    PYTHONPATH=.:backends python benchmarks/compiled_guards.py [sizes] [repeats]

Every call of a compiled function first evaluates its guards: checks that what the trace
read (the tensors' dtypes and shapes, and every global object and function code it
reached) is unchanged.  BCE's trace reads a handful of globals; the F1 loss's reads
the core's and the adapter's functions, several hundred guard lines.  Their cost is
small when the guard tree is in the CPU's caches (about 11 us, ``benchmarks/call_layers.py``)
and larger in a real step, where other code has evicted it.

Forward + backward, interleaved with the order alternated (p10 after a warm-up of a sixth of
the repeats), each row's F1 against its BCE:

* ``default guards``: ``AnyLoss("f1")`` and BCE compiled as users compile them;
* ``no global guards``: both compiled with ``options={"guard_filter_fn":
  torch.compiler.skip_guard_on_globals_unsafe}``, which drops every guard on a global (unsafe in
  general: a global changed after compiling goes unnoticed);
* ``no anyloss globals``: F1 compiled with ``anyloss_torch.skip_guard_on_anyloss_globals``, which
  drops only the guards on globals read through anyloss's own modules (how much of the cost is
  ours), against the default BCE.

Each loss has a class of its own, so no two share a code object (and so a cache entry list).
Sizes default to 32,1e5,1e6.  (``torch.compile`` pops ``guard_filter_fn`` out of the ``options``
dict it is given, so each call gets a dict of its own.)
"""

from __future__ import annotations

import sys
from typing import Any

import torch

import anyloss_torch
from anyloss_bench.speed import _labels, _logits, interleaved

#: The guard filter of each kind of row (``None``: the default guards).
_FILTERS = {"no global guards": torch.compiler.skip_guard_on_globals_unsafe,
            "no anyloss global guards": anyloss_torch.skip_guard_on_anyloss_globals}


class _F1Default(anyloss_torch.AnyLoss):
    def forward(self, input: Any, target: Any, weight: Any = None) -> Any:
        return super().forward(input, target, weight)


class _F1NoGlobals(anyloss_torch.AnyLoss):
    def forward(self, input: Any, target: Any, weight: Any = None) -> Any:
        return super().forward(input, target, weight)


class _F1NoAnylossGlobals(anyloss_torch.AnyLoss):
    def forward(self, input: Any, target: Any, weight: Any = None) -> Any:
        return super().forward(input, target, weight)


# A forward of their own: subclasses of torch's losses are otherwise compiled through one shared wrapper frame,
# whose cache entries each call would try in turn.
class _BCEDefault(torch.nn.BCEWithLogitsLoss):
    def forward(self, input: Any, target: Any) -> Any:
        return super().forward(input, target)


class _BCENoGlobals(torch.nn.BCEWithLogitsLoss):
    def forward(self, input: Any, target: Any) -> Any:
        return super().forward(input, target)


def _guard_lines(module: torch.nn.Module) -> int:
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    entries = _debug_get_cache_entry_list(type(module).forward.__code__)
    return len(str(entries[0].guard_manager).splitlines()) if entries else -1


def main(sizes: list[int], repeats: int) -> None:
    torch.set_num_threads(1)
    for n in sizes:
        torch._dynamo.reset()
        one_size(n, repeats)
    torch._dynamo.reset()


def one_size(n: int, repeats: int) -> None:
    z = torch.tensor(_logits(n), requires_grad=True)
    y = torch.tensor(_labels(n))
    modules = {"F1, default guards": _F1Default("f1"), "BCE, default guards": _BCEDefault(),
               "F1, no global guards": _F1NoGlobals("f1"), "BCE, no global guards": _BCENoGlobals(),
               "F1, no anyloss global guards": _F1NoAnylossGlobals("f1")}
    compiled = {}
    for name, module in modules.items():
        guard_filter = _FILTERS.get(name.split(", ")[-1])
        compiled[name] = torch.compile(module, dynamic=False,
                                       options=None if guard_filter is None else {"guard_filter_fn": guard_filter})

    def step(loss_fn: Any) -> Any:
        def run() -> None:
            z.grad = None
            loss_fn(z, y).backward()
        return run

    reps = repeats if n < 10_000 else max(30, repeats // 30)
    timings = dict(zip(compiled, interleaved([step(f) for f in compiled.values()], reps, max(20, reps // 6)),
                       strict=True))
    rows = [("default guards", "F1, default guards", "BCE, default guards"),
            ("no global guards", "F1, no global guards", "BCE, no global guards"),
            ("no anyloss globals", "F1, no anyloss global guards", "BCE, default guards")]
    for kind, f1_name, bce_name in rows:
        f1, bce = timings[f1_name]["p10"], timings[bce_name]["p10"]
        lines = _guard_lines(modules[f1_name])
        print(f"n={n:<9} {kind:18s} F1 {f1 * 1e6:9.1f} us  BCE {bce * 1e6:9.1f} us  {f1 / bce:5.2f}x"
              f"  (F1's guard tree: {lines} lines)")


if __name__ == "__main__":
    args = sys.argv[1:]
    main([int(float(s)) for s in (args[0] if args else "32,1e5,1e6").split(",")],
         int(args[1]) if len(args) > 1 else 3000)
