"""Median time of forward+backward of F1 AnyLoss vs the framework's own BCE-with-logits.

    python benchmarks/loss_step.py [n] [repeats]

Interleaves the two losses on the same float32 inputs in one process and prints the
medians and their ratio for torch eager, torch.compile and jax.jit (whichever is installed).
"""

from __future__ import annotations

import statistics
import sys
import time


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fn_a, fn_b, repeats):
    """Median seconds of ``fn_a`` and of ``fn_b``, called alternately after one warm-up (compile) call each."""
    fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(_timed(fn_a))
        times_b.append(_timed(fn_b))
    return statistics.median(times_a), statistics.median(times_b)


def report(mode, n, a, b):
    print(f"{mode:<14} n={n:.0e}  anyloss-f1 {a * 1e3:8.2f} ms  BCE {b * 1e3:8.2f} ms  ratio {a / b:5.2f}x")


def run_torch(n, repeats):
    import torch

    import anyloss_torch

    torch.manual_seed(0)
    x = torch.randn(n, requires_grad=True)
    y = (torch.rand(n) < 0.1).float()  # the same float32 0/1 labels for both losses
    f1 = anyloss_torch.F1Loss(validate=False)
    bce = torch.nn.BCEWithLogitsLoss()

    def step(loss_fn, target):
        def go():
            x.grad = None
            loss_fn(x, target).backward()
        return go

    for mode, wrap in [("torch eager", lambda m: m), ("torch.compile", torch.compile)]:
        report(mode, n, *interleaved(step(wrap(f1), y), step(wrap(bce), y), repeats))


def run_jax(n, repeats):
    import jax
    import jax.numpy as jnp
    import optax

    import anyloss_jax

    z = jax.random.normal(jax.random.PRNGKey(0), (n,))
    y = (jax.random.uniform(jax.random.PRNGKey(1), (n,)) < 0.1).astype(jnp.int32)
    g_a = jax.jit(jax.grad(lambda z: anyloss_jax.f1_loss(z, y, validate=False)))
    g_b = jax.jit(jax.grad(lambda z: optax.sigmoid_binary_cross_entropy(z, y.astype(z.dtype)).mean()))
    report("jax.jit", n, *interleaved(lambda: g_a(z).block_until_ready(), lambda: g_b(z).block_until_ready(), repeats))


if __name__ == "__main__":
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 1_000_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    for runner in (run_torch, run_jax):
        try:
            runner(n, repeats)
        except ImportError as exc:
            print(f"skipped {runner.__name__}: {exc}")
