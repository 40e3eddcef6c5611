"""Median time of forward+backward of the macro-F1 AnyLoss vs the framework's cross-entropy, multi-class.

    python benchmarks/multiclass_step.py [n] [classes] [repeats]

Interleaves the two losses on the same float32 logits (n, C) and integer class ids in one
process and prints the medians and their ratio for torch eager, torch.compile and jax.jit
(whichever is installed).
"""

from __future__ import annotations

import sys

from loss_step import interleaved  # the sibling script: same timing protocol


def report(mode, n, classes, a, b):
    print(f"{mode:<14} n={n:.0e} C={classes}  anyloss-macro-f1 {a * 1e3:8.2f} ms  cross-entropy {b * 1e3:8.2f} ms"
          f"  ratio {a / b:5.2f}x")


def run_torch(n, classes, repeats):
    import torch

    import anyloss_torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, classes, generator=generator).requires_grad_()
    y = torch.randint(0, classes, (n,), generator=generator)
    f1 = anyloss_torch.F1Loss(task="multiclass", num_classes=classes, validate=False)
    ce = torch.nn.CrossEntropyLoss()

    def step(loss_fn):
        def go():
            x.grad = None
            loss_fn(x, y).backward()
        return go

    for mode, wrap in [("torch eager", lambda m: m), ("torch.compile", lambda m: torch.compile(m, dynamic=False))]:
        report(mode, n, classes, *interleaved(step(wrap(f1)), step(wrap(ce)), repeats))


def run_jax(n, classes, repeats):
    import jax
    import optax

    import anyloss_jax

    z = jax.random.normal(jax.random.PRNGKey(0), (n, classes))
    y = jax.random.randint(jax.random.PRNGKey(1), (n,), 0, classes)
    grad_a = jax.jit(jax.grad(lambda z: anyloss_jax.f1_loss(z, y, task="multiclass", num_classes=classes,
                                                             validate=False)))
    grad_b = jax.jit(jax.grad(lambda z: optax.softmax_cross_entropy_with_integer_labels(z, y).mean()))
    a, b = interleaved(lambda: grad_a(z).block_until_ready(), lambda: grad_b(z).block_until_ready(), repeats)
    report("jax.jit", n, classes, a, b)


if __name__ == "__main__":
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 100_000
    classes = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    for runner in (run_torch, run_jax):
        try:
            runner(n, classes, repeats)
        except ImportError as exc:
            print(f"skipped {runner.__name__}: {exc}")
