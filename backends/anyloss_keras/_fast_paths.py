"""The Keras shim's forms of the core's replaceable steps (``anyloss_core.adapters.FastPaths``), registered on import.

* ``counts_from_label_sums`` with ``false_positives_by_difference``: the binary counts as
  sums over the predictions only (``TP = sum(y yh)``, ``FP = sum(yh) - TP``, ...).  XLA on a CPU writes
  out each summed product and reduces it in a pass of its own, while a plain sum is one
  reduction: three sums, two of them plain, instead of four dot products with
  ``1 - y`` and ``1 - yh`` (JAX's own adapter does the same).  TensorFlow 2.21's XLA hands the
  plain sums of 32,768 elements or more to YNNPACK, whose sum is slow there; four products
  then win at 1e5 and lose by a quarter at 1e7 (docs/performance.md, thirteenth round), so the
  three sums stay.  The counts are the same up to the rounding of the sums.
* ``add_scaled_temporary`` with a tensor factor (the upstream gradient of the rescue term
  inside a ``tf.custom_gradient``): cast to the term's dtype, never compared with 1.0.

On the TensorFlow backend only (the JAX and torch backends keep the Array API forms):

* ``sample_count``: the size of an array whose batch axis is traced as ``None`` (``fit``, an eager call's
  trace after its second batch size), read at run time instead of summing n ones (an n-element array and a
  pass, outside XLA): the rescue slope's ``1/n`` and the count TN.
* ``sigmoid_of_temporary``: ``tf.math.sigmoid``.  Keras's TensorFlow ``ops.sigmoid`` keeps
  its argument on its output (``_keras_logits``, for its own cross-entropy), so the saved
  ``A = sigmoid(L (p - 1/2))`` kept the n-element ``L (p - 1/2)`` alive with it.
* ``times_sigmoid_slope``: ``x s (1 - s)`` as TensorFlow's own ``SigmoidGrad`` op, one
  n-element result instead of three (eagerly, each op allocates its own).
* ``shrink``: ``where(|x| > t, x, 0)`` against a 0-d zero, not a ``zeros_like`` array;
  ``add_scaled_shrunk_difference`` (the rescue slope added to the gradient) in an order
  that holds at most three n-element tensors at once, not five.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from anyloss_core.adapters import FastPaths, register_fast_paths

from . import _namespace as kxp

__all__ = ["KerasFastPaths"]


def _on_tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


class KerasFastPaths(FastPaths):
    """The Array API defaults on ``keras.ops``, counts from sums over the predictions, tensor scale factors;
    TensorFlow's own ops for a sigmoid, its slope and the shrink on that backend."""

    counts_from_label_sums = True
    false_positives_by_difference = True

    def add_scaled_temporary(self, x: Any, term: Any, factor: Any, xp: Any) -> Any:
        if isinstance(factor, (int, float)):
            return super().add_scaled_temporary(x, term, factor, xp)
        return x + term * ops.cast(factor, term.dtype)  # a symbolic factor cannot be compared with 1.0

    def sample_count(self, x: Any, xp: Any) -> Any:
        if _on_tensorflow():  # read at run time: no n-element ones to sum (torch.compile cannot trace ops.size)
            return ops.cast(ops.size(x), x.dtype)
        return super().sample_count(x, xp)

    def sigmoid_of_temporary(self, x: Any, xp: Any) -> Any:
        if _on_tensorflow():
            import tensorflow as tf

            return tf.math.sigmoid(x)  # without Keras's reference from the output to x
        return super().sigmoid_of_temporary(x, xp)

    def times_sigmoid_slope(self, x: Any, s: Any, xp: Any) -> Any:
        if _on_tensorflow() and x.dtype == s.dtype:
            import tensorflow as tf

            return tf.raw_ops.SigmoidGrad(y=s, dy=x)  # dy * y * (1 - y), one op
        return super().times_sigmoid_slope(x, s, xp)

    def add_scaled_shrunk_difference(self, x: Any, a: Any, b: Any, threshold: float, factor: Any,
                                     xp: Any) -> Any:
        if not _on_tensorflow():
            return super().add_scaled_shrunk_difference(x, a, b, threshold, factor, xp)
        import tensorflow as tf

        # Eagerly every op allocates its result and the arguments live until it returns: rebinding d frees
        # each step's input.  In a graph, d waits for x: a graph runs an op as soon as its inputs exist, and
        # a - b (two inputs of the forward pass) ran during the forward pass and was held, with its masks, to
        # the end.
        with tf.control_dependencies([x]):
            d = a - b
        d = self.shrink(d, threshold, xp)
        if not isinstance(factor, (int, float)):
            d = d * tf.cast(factor, d.dtype)
        elif factor != 1.0:
            d = d * factor
        return x + d

    def shrink(self, x: Any, threshold: float, xp: Any) -> Any:
        if _on_tensorflow():
            import tensorflow as tf

            # No n-element |x|: |x| > t is x > t or x < -t (NaN: false, so 0); a 0-d zero, not zeros_like.
            return tf.where(tf.logical_or(x > threshold, x < -threshold), x, tf.zeros((), x.dtype))
        return super().shrink(x, threshold, xp)


def _is_keras_namespace(xp: Any) -> bool:
    return xp is kxp


#: The registered instance.
KERAS_FAST_PATHS = KerasFastPaths()
register_fast_paths(_is_keras_namespace, KERAS_FAST_PATHS)
