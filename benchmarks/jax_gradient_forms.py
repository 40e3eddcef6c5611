"""Which sigmoids the JAX binary gradient should keep, by size and by the logits' shape.

    python benchmarks/jax_gradient_forms.py [sizes] [rounds]

The ``jax.jit(jax.grad(...))`` step of ``anyloss_jax.f1_loss`` (default arguments) against
optax's ``sigmoid_binary_cross_entropy(...).mean()`` on the same logits and labels, for logits of
shape ``(n,)`` and ``(n, 1)``, in the library's two forms:

* ``both kept``: plain ``jax.grad``, which keeps ``sigmoid(z)`` and the approximation's ``A`` for
  the backward pass (the form below ``FRESH_PAGES_BYTES`` on a CPU);
* ``A kept``: under the ``jax.checkpoint`` that keeps only ``A`` and recomputes ``sigmoid(z)`` in
  the backward loop (the form from ``FRESH_PAGES_BYTES`` on).

Each form is forced by setting ``anyloss_core._fast_paths.FRESH_PAGES_BYTES`` while the step is
compiled.  Printed: XLA's temporaries (``memory_analysis().temp_size_in_bytes``, in n floats), the
p10 of the step in ms over ``rounds`` rounds of 5 calls, the order of the steps reversed every
other round, and its ratio to optax's.  Sizes default to 1e5,1e6,1e7; run it with one thread
(``OMP_NUM_THREADS=1 XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``) to compare with
``anyloss speed``.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import anyloss_jax
from anyloss_core import _fast_paths
from anyloss_jax import _fast

FORMS = {"both kept": 1 << 62, "A kept": 0}  # the FRESH_PAGES_BYTES that picks each form


def _compiled(loss, z, y, threshold):
    saved = _fast_paths.FRESH_PAGES_BYTES
    _fast_paths.FRESH_PAGES_BYTES = threshold
    _fast._ENTRIES.clear()  # each configuration's inner jit was traced with the earlier threshold
    try:
        return jax.jit(jax.grad(loss)).lower(z, y).compile()
    finally:
        _fast_paths.FRESH_PAGES_BYTES = saved


def main(sizes: list[int], rounds: int) -> None:
    print(f"jax {jax.__version__}, {jax.default_backend()}; step p10 in ms, / optax's")
    for n in sizes:
        for shape in ((n,), (n, 1)):
            rng = np.random.default_rng(0)
            z = jnp.asarray(rng.normal(size=shape).astype(np.float32))
            y = jnp.asarray((rng.random(shape) < 0.1).astype(np.float32))
            steps = {name: _compiled(lambda a, b: anyloss_jax.f1_loss(a, b), z, y, threshold)
                     for name, threshold in FORMS.items()}
            steps["optax BCE"] = jax.jit(jax.grad(lambda a, b: optax.sigmoid_binary_cross_entropy(a, b).mean())) \
                .lower(z, y).compile()
            times: dict[str, list[float]] = {name: [] for name in steps}
            for r in range(rounds):
                for name, step in (list(steps.items())[::-1] if r % 2 else steps.items()):
                    step(z, y).block_until_ready()
                    for _ in range(5):
                        start = time.perf_counter()
                        step(z, y).block_until_ready()
                        times[name].append(time.perf_counter() - start)
            base = np.percentile(times["optax BCE"], 10)
            for name, step in steps.items():
                temp = step.memory_analysis().temp_size_in_bytes / (4 * n)
                p10 = np.percentile(times[name], 10)
                print(f"n={n:.0e} {str(shape):>12} {name:>10}: temp {temp:4.2f} n   {p10 * 1e3:8.3f} ms  "
                      f"{p10 / base:5.2f}x")


if __name__ == "__main__":
    main([int(float(s)) for s in (sys.argv[1] if len(sys.argv) > 1 else "1e5,1e6,1e7").split(",")],
         int(sys.argv[2]) if len(sys.argv) > 2 else 16)
