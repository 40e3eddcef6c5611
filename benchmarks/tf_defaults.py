"""What each default of ``F1Loss()`` costs Keras on TensorFlow's ``tf.function`` step.

    KERAS_BACKEND=tensorflow PYTHONPATH=.:backends python benchmarks/tf_defaults.py [sizes] [repeats]

The gradient step of ``(n, 1)`` logits under plain ``tf.function`` (what ``model.fit`` runs on a CPU,
where Keras leaves XLA off), timed as ``benchmarks/tf_structure.py`` times it (p10, interleaved, order
alternated), each against Keras's ``BinaryCrossentropy(from_logits=True)`` in the same run:

* ``tf AnyLoss-F1``: the loss hand-written in TensorFlow, ``1 - 2 TP / (sum(A) + sum(y))`` with
  ``A = sigmoid(73 (sigmoid(z) - 1/2))``, TensorFlow's autodiff (``tf_structure.py``'s);
* ``F1Loss()``: the library with its defaults (``validate=True``, ``rescue=0.1``);
* ``validate=False``, ``rescue=0``, ``both off``: the library with one default off, or both.

The rescue gradient adds, for each misclassified sample, ``rescue * (sigmoid(z) - y) / n`` to the
gradient (``docs/howto/training.md``).  TensorFlow has no hard-shrink operation, so the backward pass
spends a few n-element operations on it; without XLA each is a pass over the batch of its own.
Sizes default to 1e5,1e6.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tf_structure.py, beside this file

# First: it imports torch (where installed) before TensorFlow, the order that does not crash.
from tf_structure import ratios, tf_anyloss_f1  # noqa: E402, I001

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import anyloss_keras  # noqa: E402


def main(sizes: list[int], repeats: int) -> None:
    losses = {
        "Keras BCE": keras.losses.BinaryCrossentropy(from_logits=True),
        "tf AnyLoss-F1": tf_anyloss_f1,
        "F1Loss()": anyloss_keras.F1Loss(from_logits=True),
        "validate=False": anyloss_keras.F1Loss(from_logits=True, validate=False),
        "rescue=0": anyloss_keras.F1Loss(from_logits=True, rescue=0.0),
        "both off": anyloss_keras.F1Loss(from_logits=True, rescue=0.0, validate=False),
    }
    print(f"tf.function step / Keras BCE's step (p10 of {repeats}, interleaved); TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}")
    for n in sizes:
        base, row = ratios(losses, n, repeats, jit_compile=False)
        print(f"n={n:.0e}  (BCE {base * 1e3:.3f} ms)  {row}")


if __name__ == "__main__":
    sizes = [int(float(s)) for s in (sys.argv[1] if len(sys.argv) > 1 else "1e5,1e6").split(",")]
    main(sizes, int(sys.argv[2]) if len(sys.argv) > 2 else 30)
