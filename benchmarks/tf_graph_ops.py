"""Operations in one Keras-on-TensorFlow ``tf.function`` step: a count, not a clock.

    KERAS_BACKEND=tensorflow PYTHONPATH=.:backends python benchmarks/tf_graph_ops.py [n] [--list]

Traces the gradient of Keras's BCE and of ``F1Loss(from_logits=True)`` with respect to ``(n, 1)`` logits
(default n = 32) in a ``tf.function``, as ``anyloss speed``'s Keras-TF rows and ``model.fit`` on a CPU run it
(no XLA).  It prints the number of operations in each traced graph, leaving out constants, placeholders and
no-ops.  In a small batch's step each operation costs the graph executor about a microsecond, whatever its
size.  ``--list`` also prints the F1 graph's operations.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import anyloss_keras  # noqa: E402

SKIPPED = {"Const", "NoOp", "Placeholder"}


def step_operations(loss_fn: object, n: int) -> list[tf.Operation]:
    """The operations of a traced ``tf.function`` that returns the gradient of ``loss_fn(y, z)`` in ``z``."""
    z = tf.Variable(np.random.default_rng(1).standard_normal((n, 1)).astype(np.float32))
    y = tf.constant((np.random.default_rng(0).random((n, 1)) < 0.1).astype(np.float32))

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            value = loss_fn(y, z)
        return tape.gradient(value, z)

    graph = step.get_concrete_function().graph
    return [op for op in graph.get_operations() if op.type not in SKIPPED]


def main(n: int, listing: bool) -> None:
    losses = {"BinaryCrossentropy(from_logits=True)": keras.losses.BinaryCrossentropy(from_logits=True),
              "F1Loss(from_logits=True)": anyloss_keras.F1Loss(from_logits=True)}
    for name, loss_fn in losses.items():
        ops = step_operations(loss_fn, n)
        kinds = ", ".join(f"{kind} {count}" for kind, count in Counter(op.type for op in ops).most_common(6))
        print(f"n={n} {name:38s} {len(ops):4d} operations ({kinds}, ...)")
        if listing and name.startswith("F1Loss"):
            for op in ops:
                print(f"    {op.type:14s} {op.name}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--list"]
    main(int(float(args[0])) if args else 32, "--list" in sys.argv[1:])
