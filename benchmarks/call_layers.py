"""Where one torch call of the F1 loss at small n spends its time: each layer of the eager call, and the compiled
call's guard check.

    PYTHONPATH=.:backends python benchmarks/call_layers.py [n] [repeats]

Eager, forward + backward, interleaved with the order alternated, p10 in microseconds: BCE; ``F1Loss()``; the
layers below it called directly (``config_loss``, ``soft_loss``, ``_one_node_loss``); a trivial
``autograd.Function`` (a 0-d forward, a stored gradient backward: the fixed cost of any Python node); the same
kernels and float metric as ``F1Loss()`` written out in one ``autograd.Function`` with no layers around them (the
floor of this set of kernels); the core's counts and pullback alone; and their kernels written out with no Python
around them.  Then BCE, ``F1Loss()``, the trivial ``Function`` and the written-out kernels again, each call
made as in a training step: right after an untimed step of ``anyloss speed``'s MLP and its next forward.
Then the number of Python function calls one ``F1Loss()`` call makes (deterministic), and the guard check of
``torch.compile``'s cache entry for ``F1Loss()`` (what every compiled call runs before its graph), timed over
20,000 checks, with the number of lines of its guard tree.
"""

from __future__ import annotations

import sys
import timeit
from typing import Any

import torch

import anyloss_core as al
import anyloss_torch
from anyloss_bench.speed import _labels, _logits, _timed, _torch_mlp, interleaved, percentile, training_data
from anyloss_torch import _autograd
from anyloss_torch._scalar_grad import evaluate
from anyloss_torch.interop import config_loss

SCALE, RESCUE = 73.0, 0.1


def _eager_layers(n: int, repeats: int) -> None:
    z = torch.tensor(_logits(n), requires_grad=True)
    y = torch.tensor(_labels(n))
    bce, f1 = torch.nn.BCEWithLogitsLoss(), anyloss_torch.F1Loss()
    config = f1.config
    options = {k: v for k, v in config.counts_options.items() if k not in ("task", "num_classes", "ignore_index")}
    stored = torch.zeros(n)

    class Trivial(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.scalar_tensor(0.5)

        @staticmethod
        def backward(ctx, grad):
            return stored

    def backward_of(make):
        def run() -> None:
            z.grad = None
            make().backward()
        return run

    def core() -> None:
        with torch.no_grad():
            _, pull = al.soft_confusion_with_pullback(y, z, rescue=RESCUE, counts_as_floats=True, **options)
        pull(al.Confusion(0.1, 0.2, 0.3, 0.4), rescue_scale=1.0)

    offset = torch.scalar_tensor(-SCALE / 2)
    sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input

    # The kernels of core(), as the fast paths launch them: the label check, the forward's counts read as floats,
    # and the backward from the pullback's float coefficients (L folded in) with the rescue slope.
    def check_labels() -> None:
        if not set(y.tolist()) <= {0.0, 1.0}:
            raise ValueError("labels")

    def forward_kernels(x: torch.Tensor) -> tuple[Any, ...]:
        p = torch.sigmoid(x)
        a = torch.sigmoid_(torch.add(offset, p, alpha=SCALE))
        return p, a, float(torch.dot(y, a)), float(torch.sum(y)), float(torch.dot(torch.rsub(y, 1.0), a))

    def backward_kernels(p: Any, a: Any, on_pos: float, on_neg: float, rescue_factor: float) -> Any:
        g = torch.add(torch.scalar_tensor(on_neg), y, alpha=on_pos - on_neg)
        sigmoid_backward(g, a, grad_input=g)
        sigmoid_backward(g, p, grad_input=g)
        d = torch.sub(p, y)
        return g.add_(torch.hardshrink(d, 0.5, out=d), alpha=rescue_factor)

    def kernels() -> None:
        with torch.no_grad():
            check_labels()
            p, a, *_ = forward_kernels(z)
            backward_kernels(p, a, 0.4 * SCALE, 0.1 * SCALE, RESCUE / n)

    class Written(torch.autograd.Function):
        """F1Loss()'s kernels and float metric in one Function, with no Python around them: the floor of this
        kernel set (the label check as the fast path does it, the metric by the float evaluator)."""

        @staticmethod
        def forward(ctx, x):
            ctx.p, ctx.a, tp, pos, fp = forward_kernels(x)
            value, ctx.g = evaluate(config.metric_fn, al.Confusion(n - pos - fp, pos - tp, fp, tp))
            return torch.scalar_tensor(1.0 - value)

        @staticmethod
        def backward(ctx, grad):
            up = float(grad)
            tn, fn, fp, tp = ctx.g
            return backward_kernels(ctx.p, ctx.a, -up * (tp - fn) * SCALE, -up * (fp - tn) * SCALE,
                                    up * RESCUE / n)

    def written() -> Any:
        check_labels()
        return Written.apply(z)

    rows = {
        "BCEWithLogitsLoss()": backward_of(lambda: bce(z, y)),
        "F1Loss()": backward_of(lambda: f1(z, y)),
        "config_loss": backward_of(lambda: config_loss(config, z, y)),
        "soft_loss": backward_of(lambda: _autograd.soft_loss(
            z, y, None, config.loss_metric, average=config.average, metric_params=config.metric_params,
            rescue=config.rescue, **config.counts_options)),
        "_one_node_loss": backward_of(lambda: _autograd._one_node_loss(z, y, None, config.metric_fn, options,
                                                                       config.rescue)),
        "trivial autograd.Function": backward_of(lambda: Trivial.apply(z)),
        "its kernels in one Function": backward_of(written),
        "core counts + pullback": core,
        "their kernels alone": kernels,
    }
    timings = interleaved(list(rows.values()), repeats, max(50, repeats // 6))
    for name, t in zip(rows, timings, strict=True):
        print(f"n={n} eager {name:28s} p10 {t['p10'] * 1e6:7.1f} us")

    # The same calls as a training step makes them.  Above, every other call of the first and last rows follows a
    # call of itself (the order is reversed every other round), and p10 picks those warm calls.  In a training step
    # the model's code runs between two loss calls: here each timed call follows one untimed step of anyloss
    # speed's MLP at batch 32 (zero_grad, forward, BCE, backward, Adam) and the next forward of the model.
    torch.manual_seed(0)
    features, labels = (torch.tensor(a[:32]) for a in training_data())
    model = _torch_mlp(features.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def model_step() -> None:
        optimizer.zero_grad()
        bce(model(features)[:, 0], labels).backward()
        optimizer.step()
        model(features)

    in_step = {name: rows[name] for name in ("BCEWithLogitsLoss()", "F1Loss()", "trivial autograd.Function",
                                             "its kernels in one Function")}
    times: dict[str, list[float]] = {name: [] for name in in_step}
    for r in range(repeats + 50):  # the first 50 rounds warm up
        for name in (list(in_step) if r % 2 == 0 else list(in_step)[::-1]):
            model_step()
            if r >= 50:
                times[name].append(_timed(in_step[name]))
            else:
                in_step[name]()
    bce_in_step = percentile(times["BCEWithLogitsLoss()"], 10)
    for name, ts in times.items():
        p10 = percentile(ts, 10)
        print(f"n={n} in a step {name:28s} p10 {p10 * 1e6:7.1f} us ({p10 / bce_in_step:.2f}x BCE)")


def _python_calls(n: int, calls: int = 100) -> None:
    """Python function calls per eager ``F1Loss()`` call, forward and backward (``sys.setprofile``'s "call"
    events: Python frames only, not C functions)."""
    z = torch.tensor(_logits(n), requires_grad=True)
    y = torch.tensor(_labels(n))
    f1 = anyloss_torch.F1Loss()
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        count += event == "call"

    for _ in range(10):
        f1(z, y).backward()
    sys.setprofile(profile)
    for _ in range(calls):
        z.grad = None
        f1(z, y).backward()
    sys.setprofile(None)
    print(f"n={n} eager F1Loss() Python function calls per call: {count / calls:.0f}")


def _guard_check(n: int) -> None:
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    z = torch.tensor(_logits(n), requires_grad=True)
    y = torch.tensor(_labels(n))
    module = anyloss_torch.F1Loss()
    torch._dynamo.reset()
    torch.compile(module, dynamic=False)(z, y).backward()
    guards = _debug_get_cache_entry_list(anyloss_torch.AnyLoss.forward.__code__)[0].guard_manager
    frame = {"self": module, "input": z, "target": y, "weight": None}
    assert guards.check(frame)
    seconds = min(timeit.repeat(lambda: guards.check(frame), number=20_000, repeat=5)) / 20_000
    print(f"n={n} torch.compile F1Loss() guard check {seconds * 1e6:6.2f} us, {len(str(guards).splitlines())} lines")
    torch._dynamo.reset()


if __name__ == "__main__":
    args = sys.argv[1:]
    size = int(float(args[0])) if args else 32
    torch.set_num_threads(1)
    _eager_layers(size, int(args[1]) if len(args) > 1 else 3000)
    _python_calls(size)
    _guard_check(size)
