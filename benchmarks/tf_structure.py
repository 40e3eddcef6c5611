"""Where Keras on TensorFlow loses under XLA: the loss's structure, or our code?

    KERAS_BACKEND=tensorflow python benchmarks/tf_structure.py [sizes] [repeats]

The gradient step (``tf.GradientTape`` on the logits, as ``anyloss speed`` times it) of
losses of the same logits and labels under ``tf.function(jit_compile=True)`` and plain
``tf.function``, each against Keras's ``BinaryCrossentropy(from_logits=True)`` in the
same run (p10, interleaved, order alternated):

* ``tf BCE``: ``reduce_mean(sigmoid_cross_entropy_with_logits)``, hand-written, as a check
  that Keras's BCE is TensorFlow's own;
* ``tf soft-F1``: hand-written in TensorFlow, no anyloss code: the counts as sums of
  ``y * sigmoid(z)`` and ``sigmoid(z)``, F1 of them, TensorFlow's autodiff.  The same
  *structure* as AnyLoss (a gradient that needs sums over the batch's predictions first,
  where BCE's gradient needs none), with one transcendental per sample;
* ``tf AnyLoss-F1``: the same with the paper's approximation ``A(sigmoid(z))``,
  ``A(p) = sigmoid(73 (p - 1/2))``, hand-written (two sigmoids per sample);
* ``tf AnyLoss-F1, sums of products``: the same loss with every count a sum of a product
  (``TP = sum(y A)``, ``FP = sum((1 - y) A)``, ``FN = sum(y (1 - A))``), no plain sum: XLA's CPU
  compiler (TensorFlow 2.21) hands a float32 sum of 32,768 elements or more to YNNPACK unless its
  operand is a product (or a convert, reshape, ...), and YNNPACK's sum is the slow part here;
* ``anyloss_keras.F1Loss``: the library (default arguments: value checks, rescue gradient);
* ``F1Loss, four products``: the library with ``KerasFastPaths.counts_from_label_sums`` off while it is
  traced (the four counts as sums of products with ``1 - y`` and ``1 - A``, as the Array API default;
  three in the compiled step, since F1 does not read TN);
* ``tf mean y*sigmoid``: ``mean(y * sigmoid(z))``, a sum of products whose gradient needs no
  batch sum.  The step returns the gradient only, so XLA drops the sum: this row is one sigmoid
  pass and its slope, not a measure of what a sum costs.

If the hand-written losses are as slow as the library's, the cost is XLA's CPU code for
this structure (see docs/performance.md), not ours.  Run it again with
``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`` (no sums handed to YNNPACK) to see
that share.  Sizes default to 1e5,1e6,1e7.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

try:  # torch before TensorFlow in one process, where both are installed: the other order can crash
    import torch  # noqa: F401
except ImportError:
    pass
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import anyloss_keras  # noqa: E402
from anyloss_bench.speed import _labels, _logits, interleaved  # noqa: E402
from anyloss_keras._fast_paths import KerasFastPaths  # noqa: E402

SCALE = 73.0


def tf_bce(y, z):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z))


def _f1_of(y, a):
    tp = tf.reduce_sum(y * a)
    predicted, positives = tf.reduce_sum(a), tf.reduce_sum(y)
    return 1.0 - 2.0 * tp / (predicted + positives)  # 2TP / (2TP + FP + FN), FP + FN = predicted + positives - 2TP


def tf_soft_f1(y, z):
    return _f1_of(y, tf.sigmoid(z))


def tf_anyloss_f1(y, z):
    return _f1_of(y, tf.sigmoid(SCALE * (tf.sigmoid(z) - 0.5)))


def tf_anyloss_f1_products(y, z):
    a = tf.sigmoid(SCALE * (tf.sigmoid(z) - 0.5))
    tp, fp, fn = tf.reduce_sum(y * a), tf.reduce_sum((1.0 - y) * a), tf.reduce_sum(y * (1.0 - a))
    return 1.0 - 2.0 * tp / (2.0 * tp + fp + fn)


def tf_product_mean(y, z):
    return tf.reduce_mean(y * tf.sigmoid(z))


def gradient_step(loss, jit_compile, label_sums=True):
    def step(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return tape.gradient(value, z)

    compiled = tf.function(step, jit_compile=jit_compile)

    def run(z, y):
        return compiled(z, y).numpy()

    if not label_sums:  # the form is chosen when the step is traced, at its first call: two attribute writes a call
        def traced(z, y):
            before, KerasFastPaths.counts_from_label_sums = KerasFastPaths.counts_from_label_sums, False
            try:
                return run(z, y)
            finally:
                KerasFastPaths.counts_from_label_sums = before
        return traced
    return run


def main(sizes, repeats):
    keras_bce = keras.losses.BinaryCrossentropy(from_logits=True)
    losses = {"Keras BCE": keras_bce, "tf BCE": tf_bce, "tf soft-F1": tf_soft_f1, "tf AnyLoss-F1": tf_anyloss_f1,
              "tf AnyLoss-F1, sums of products": tf_anyloss_f1_products,
              "anyloss_keras.F1Loss": anyloss_keras.F1Loss(from_logits=True),
              "F1Loss, four products": anyloss_keras.F1Loss(from_logits=True), "tf mean y*sigmoid": tf_product_mean}
    print(f"step / Keras BCE's step (p10 of {repeats}, interleaved); TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}")
    for jit in (True, False):
        mode = "XLA (jit_compile=True)" if jit else "tf.function"
        for n in sizes:
            base, row = ratios(losses, n, repeats, jit, four_products=("F1Loss, four products",))
            print(f"{mode:24s} n={n:.0e}  (BCE {base * 1e3:.2f} ms)  {row}")


def ratios(losses: dict, n: int, repeats: int, jit_compile: bool, four_products: tuple[str, ...] = ()) -> tuple:
    """``(p10 of the first loss's step in seconds, "name ratio" for each loss)``: each loss's gradient step on the
    same ``(n, 1)`` logits and labels, interleaved, against the first's.  The losses named in ``four_products``
    are traced with ``KerasFastPaths.counts_from_label_sums`` off."""
    z = tf.constant(_logits(n).reshape(-1, 1))
    y = tf.constant(_labels(n).reshape(-1, 1))
    fns = [gradient_step(loss, jit_compile, label_sums=name not in four_products) for name, loss in losses.items()]
    timings = interleaved([lambda f=f: f(z, y) for f in fns], repeats, warmup=max(3, repeats // 3))
    base = timings[0]["p10"]
    return base, "  ".join(f"{name} {t['p10'] / base:.2f}x" for name, t in zip(losses, timings, strict=True))


if __name__ == "__main__":
    sizes = [int(float(s)) for s in (sys.argv[1] if len(sys.argv) > 1 else "1e5,1e6,1e7").split(",")]
    main(sizes, int(sys.argv[2]) if len(sys.argv) > 2 else 20)
