"""Extra peak memory of one Keras-on-TensorFlow gradient step, in logits' bytes, in the ways users run it.

    KERAS_BACKEND=tensorflow python benchmarks/tf_step_memory.py [n]

The step is ``tf.GradientTape`` on the logits of ``F1Loss(from_logits=True)`` (with and without its value
checks) and of Keras's ``BinaryCrossentropy(from_logits=True)``, at ``n`` samples (default 1e7):

* ``eager``: the loss called eagerly, at one batch size only (its trace has a fixed shape);
* ``eager, any batch size``: the same after two other batch sizes (the trace then takes any batch size);
* ``tf.function``: the step traced with the logits' own shape (as ``anyloss speed`` traces it);
* ``fit's tf.function``: the step traced with the batch axis ``None``, as Keras's ``fit`` traces it.

Each figure is ``anyloss speed``'s reading (``_keras_peak_extra``): TensorFlow's allocator where it keeps
statistics, else the resident set, the least of three steps.  Above glibc's largest mmap threshold (32 MiB, n
over 8.4e6 float32) the resident set follows each n-element array exactly.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import anyloss_keras  # noqa: E402
from anyloss_bench.speed import _keras_peak_extra  # noqa: E402


def _gradient_step(loss):
    def step(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return tape.gradient(value, z)

    return step


def main() -> None:
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 10_000_000
    rng = np.random.default_rng(0)
    z = tf.constant(rng.normal(size=(n, 1)).astype(np.float32))
    y = tf.constant((rng.random((n, 1)) < 0.1).astype(np.float32))
    spec = tf.TensorSpec([None, 1], tf.float32)
    losses = {"F1Loss()": lambda: anyloss_keras.F1Loss(from_logits=True),
              "F1Loss(validate=False)": lambda: anyloss_keras.F1Loss(from_logits=True, validate=False),
              "BCE": lambda: keras.losses.BinaryCrossentropy(from_logits=True)}
    modes = ("eager", "eager, any batch size", "tf.function", "fit's tf.function")
    print(f"extra peak memory of one step at n = {n:.0e}, in logits' bytes")
    print(f"{'':26}" + "".join(f"{mode:>24}" for mode in modes))
    for name, make in losses.items():
        row = []
        for mode in modes:
            step = _gradient_step(make())  # a loss object per mode: the eager traces start afresh per config
            if mode == "tf.function":
                step = tf.function(step)
            elif mode == "fit's tf.function":
                step = tf.function(step, input_signature=[spec, spec])
            elif mode == "eager, any batch size":
                for size in (100, 200):
                    step(z[:size], y[:size])
            for _ in range(2):
                step(z, y).numpy()
            peak = _keras_peak_extra("tensorflow", lambda step=step: step(z, y).numpy())
            row.append(float("nan") if peak is None else peak / (4 * n))
        print(f"{name:26}" + "".join(f"{value:>23.2f}x" for value in row))


if __name__ == "__main__":
    main()
