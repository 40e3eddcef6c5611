"""Operators per torch loss step: a count, not a clock, of what a GPU launches one kernel for.

On a GPU, eager torch pays a kernel launch (and Python dispatch) per operator, so a small step's time is about
its operator count (the H200 run in docs/performance.md: ~20 us per operator, AnyLoss 5x BCE at every n).
This counts the leaf aten operators of one forward + backward at n = 32 with torch's profiler, on the CPU,
for each execution path of anyloss_torch._autograd: "one node" (what a CPU and a CUDA GPU take: the counts'
sums read as floats) and "analytic counts" (nothing read back: what a CUDA graph being captured, a sync debug
mode and distributed counts take), forced here on the CPU; then the multi-class loss at n = 4000, C = 10, where
its closed-form backward runs (from 2**15 logits), against cross-entropy.  Views,
allocations and other operators that launch nothing are left out.  Host reads are counted apart; forced on
the CPU, the analytic path with rescue=0 shows the stuck-batch watch's read, which a GPU skips (it runs only
where values are on the CPU, as the value checks do).

    PYTHONPATH=.:backends python benchmarks/operator_count.py
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile

import anyloss_torch
from anyloss_torch import _autograd

NO_KERNEL = {"aten::view", "aten::unsqueeze", "aten::expand", "aten::as_strided", "aten::empty",
             "aten::empty_like", "aten::empty_strided", "aten::detach", "aten::alias", "aten::unbind",
             "aten::select", "aten::reshape", "aten::_reshape_alias", "aten::t", "aten::transpose",
             "aten::squeeze", "aten::lift_fresh", "aten::result_type", "aten::view_as", "aten::_unsafe_view",
             "aten::slice", "aten::resize_"}


def leaf_operators(step) -> Counter:
    """The leaf aten operators of one call of ``step`` (after three warm-up calls)."""
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    parents = {id(e.cpu_parent) for e in events if e.cpu_parent is not None}
    return Counter(e.name for e in events if id(e) not in parents and e.name not in NO_KERNEL)


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(32, requires_grad=True)
    y = (torch.rand(32) < 0.4).float()
    choose = _autograd.choose_path
    losses = {"BCEWithLogitsLoss": torch.nn.BCEWithLogitsLoss(), "F1Loss()": anyloss_torch.F1Loss(),
              "F1Loss(validate=False)": anyloss_torch.F1Loss(validate=False),
              "F1Loss(rescue=0, validate=False)": anyloss_torch.F1Loss(rescue=0.0, validate=False)}
    print(f"leaf aten operators of one forward + backward, n = 32, torch {torch.__version__}")
    for forced in (None, _autograd.Path.ANALYTIC):
        def path(*args, _forced=forced, **kwargs):
            chosen = choose(*args, **kwargs)
            return _forced if _forced is not None and chosen is _autograd.Path.ONE_NODE else chosen

        _autograd.choose_path = path
        try:
            label = "one node (CPU, GPU)" if forced is None else "analytic counts (forced)"
            for name, loss_fn in losses.items():
                if forced is not None and name.startswith("BCE"):
                    continue
                counts = leaf_operators(lambda f=loss_fn: f(x, y).backward())
                reads = counts.pop("aten::item", 0) + counts.pop("aten::_local_scalar_dense", 0)
                print(f"  {name:34s} {label:40s} {sum(counts.values()):3d} operators, {reads} host reads")
        finally:
            _autograd.choose_path = choose
    logits = torch.randn(4000, 10, requires_grad=True)
    ids = torch.randint(0, 10, (4000,))
    print(f"multi-class, n = 4000, C = 10 (the closed-form backward), torch {torch.__version__}")
    for name, loss_fn in {"CrossEntropyLoss": torch.nn.CrossEntropyLoss(),
                          "F1Loss(task='multiclass')": anyloss_torch.F1Loss(task="multiclass", num_classes=10),
                          "F1Loss(task='multiclass', validate=False)":
                              anyloss_torch.F1Loss(task="multiclass", num_classes=10, validate=False)}.items():
        counts = leaf_operators(lambda f=loss_fn: f(logits, ids).backward())
        reads = counts.pop("aten::item", 0) + counts.pop("aten::_local_scalar_dense", 0)
        print(f"  {name:42s} {sum(counts.values()):3d} operators, {reads} host reads")


if __name__ == "__main__":
    main()
