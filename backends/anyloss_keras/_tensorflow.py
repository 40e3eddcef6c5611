"""The binary loss on the TensorFlow backend: the core's closed-form pullback as a ``tf.custom_gradient``.

Autodiff of the plain composition records every ``keras.ops`` call of the counts, the
metric and the rescue term, and replays them backwards: eagerly each is a dispatch of its
own (about 35 us), and the rescue term flattens the arguments and applies the sigmoid a
second time.  :func:`binary_counts` instead computes the counts once
(``anyloss_core.adapters.soft_confusion_with_pullback``, the core's math) and gives them
the core's pullback as their gradient, with the rescue gradient added from the counts' own
sigmoid.  The metric of the four counts stays in TensorFlow's autodiff (0-d ops), and so
does the all-reduce of the counts under ``tf.distribute`` (its gradient is the all-reduce
of the counts' gradients).

Measured (one CPU thread, ``F1Loss(from_logits=True)`` against Keras's BCE, p10): eager
2.1x -> 1.5x at n = 1e5 and 1.9x -> 1.2x at 1e6, one call at n = 32 2.1x -> 1.8x;
``tf.function`` 1.65x -> 1.5x at 1e6.  Under XLA (``jit_compile=True``) the optimized HLO
is the same as autodiff's, and so is the time: there each count is a pass of its own (the
product is written out, then reduced by a tree of reduce-windows), while BCE's gradient
needs no sum at all.

Memory (the extra peak of one step at n = 1e7, in logits' bytes): eager 8.5x -> 5.6x -> 3.0x,
``tf.function`` 6.7x -> 3.0x (Keras's BCE: 9-10.5x / 4-6x), from the counts computed off the
tape (below), the TensorFlow forms of the fast paths (``anyloss_keras._fast_paths``) and, for
eager calls, the counts as one ``tf.function`` whose gradient recomputes sigma(z) and A
(:func:`_eager_counts`; it also made the eager step at 1e5 1.5x -> 1.1-1.4x BCE and one call at
n = 32 1.9x -> 1.6x); under XLA 3.0x (the saved sigma(z) and A and the gradient).

Second derivatives (nested ``GradientTape``s: Hessian-vector products, ``tape.jacobian`` of the gradient,
MAML-style meta-gradients; eagerly, in a ``tf.function`` and under XLA): the counts' gradient is itself a
``tf.custom_gradient`` of ``(g_counts, g_rescue, z)``, its forward the pullback above (of ``sg[z]``: unchanged,
one more identity in a graph), its own gradient, called only when something differentiates the gradient,
the pullback recomputed from ``z`` under a tape.  That pullback is without rescue: as in autodiff of the
composition and on JAX, the rescue term ``sg[rescue g] (z - sg[z])`` adds gradient but no curvature (the
gradient's derivative in ``g_rescue`` is the rescue slope).  Forward mode (a ``tf.autodiff.ForwardAccumulator``
carrying a tangent of the logits) takes autodiff of the composition instead: in a graph the accumulator takes
the JVP of the identities ``tf.custom_gradient`` puts around its results (zero, from ``sg[z]``), not the
transposed gradient, and eagerly a ``GradientTape`` inside that transposition records nothing.

Not used (plain autodiff instead) for: multi-class / multi-label tasks, running counts
(``momentum``), an approximation without a ``derivative`` and forward mode.  ``sample_weight`` gets no
gradient here (weights are data, as in ``fit``).
"""

from __future__ import annotations

import functools
from typing import Any

import anyloss_core as al
from anyloss_core.adapters import (
    LossConfig,
    checked_arguments,
    get_approximation,
    prepared_for_rescue,
    soft_confusion_with_pullback,
)

from . import _namespace as kxp

__all__ = ["binary_counts"]


def binary_counts(config: LossConfig, y_true: Any, y_pred: Any, sample_weight: Any) -> tuple[al.Confusion, Any] | None:
    """``(counts, rescue)`` of a binary ``config``: the counts (0-d tensors) and a 0-d zero whose gradient
    scales the rescue gradient, both with the core's closed-form pullback; ``None`` where it does not apply
    (the approximation has no ``derivative``)."""
    import tensorflow as tf  # imported here: this module is imported (by doctest collection) on every backend

    approximation = get_approximation(config.approximation)
    if getattr(approximation, "derivative", None) is None or _has_tangent(y_pred, y_true, sample_weight):
        return None
    options = {"from_logits": config.from_logits, "scale": config.scale, "approximation": approximation,
               "rescue": config.rescue}
    # The stuck-batch watch (eager calls); the rescue gradient itself comes from the pullback.
    prepared_for_rescue(y_true, y_pred, sample_weight, rescue=config.rescue, from_logits=config.from_logits,
                        scale=config.scale, approximation=config.approximation, xp=kxp, arrays=False)
    traced = _eager_counts(options, y_pred) if tf.executing_eagerly() else None
    if traced is not None:
        # Checked here, where the values can be read; counted in a graph.
        y, p, w = checked_arguments(y_true, y_pred, sample_weight, from_logits=config.from_logits,
                                    validate=config.validate, xp=kxp)
        stacked, zero = traced(p, y, w)
    else:
        stacked, zero = _counts_with_pullback(y_pred, y_true, sample_weight, validate=config.validate,
                                              recompute=False, **options)
    return al.Confusion(*tf.unstack(stacked, 4)), zero


def _has_tangent(*arrays: Any) -> bool:
    """Whether a ``tf.autodiff.ForwardAccumulator`` carries a tangent of any of ``arrays`` (logits, labels,
    weights): forward mode, which a custom gradient of the logits does not give here.  In a graph the
    accumulator takes the JVP of the identities ``tf.custom_gradient`` puts around its results (the forward ops'
    JVP: zero from ``sg[z]``), not the gradient's transpose; eagerly it transposes the gradient, but a
    ``GradientTape`` inside it (the second derivative's) records nothing.  (An accumulator outside a
    ``tf.function`` is not seen while tracing it: TensorFlow transposes the function's gradient then, which
    :func:`_counts_with_pullback`'s second-order gradient serves.)"""
    import tensorflow as tf

    global _pack_tangents
    if _pack_tangents is None:
        try:
            from tensorflow.python.eager.forwardprop_util import pack_tangents
        except ImportError:  # moved in a later TensorFlow: no way to tell, the custom gradient as before
            pack_tangents = False
        _pack_tangents = pack_tangents
    if not _pack_tangents:
        return False
    # A variable's tangent is its value's (pack_tangents takes tensors only).
    tensors = [tf.convert_to_tensor(x) if isinstance(x, tf.Variable) else x for x in arrays
               if x is not None and tf.is_tensor(x)]  # (tf.is_tensor(None) costs about 20 us)
    return bool(tensors and _pack_tangents(tensors).tangents)


#: ``tensorflow.python.eager.forwardprop_util.pack_tangents`` (TensorFlow has no public form), ``False`` where
#: it is missing; looked up at the first call.
_pack_tangents: Any = None


def _counts_with_pullback(z: Any, y_true: Any, sample_weight: Any, *, validate: bool, recompute: bool,
                          rescue: float, **options: Any) -> tuple[Any, Any]:
    """The four counts stacked and a 0-d zero, as a ``tf.custom_gradient`` of ``z`` whose gradient is the core's
    pullback (scaled, for the rescue slope, by the zero's upstream gradient).  ``recompute``: the gradient
    computes the pullback's arrays again from ``z``, ``y_true`` and ``sample_weight`` instead of keeping the
    forward pass's (for a graph whose caller holds those three anyway)."""
    import tensorflow as tf

    def pullback_of(z: Any) -> tuple[al.Confusion, Any]:
        # Eagerly, a custom_gradient's function runs under the caller's tape, which would record every op of
        # the counts and keep their inputs alive until the backward pass (p - 1/2, L (p - 1/2), 1 - A, ...):
        # the gradient comes from the pullback, so the tape need not see them.
        return soft_confusion_with_pullback(y_true, tf.stop_gradient(z), sample_weight=sample_weight,  # type: ignore[return-value]
                                            rescue=rescue, validate=validate, xp=kxp, **options)

    def curvature(g_counts: Any, z: Any, y_true: Any, sample_weight: Any, upstream: Any) -> tuple[Any, Any]:
        # The pullback again, this time from z itself and recorded, without the rescue slope: the rescue term adds
        # gradient but no curvature (sg[rescue * g] (z - sg[z]), as autodiff of the composition and JAX have it).
        def pullback_of_z(z: Any) -> Any:
            return soft_confusion_with_pullback(y_true, z, sample_weight=sample_weight, rescue=0.0, validate=False,
                                                xp=kxp, **options)[1]  # type: ignore[index]

        with tf.GradientTape() as tape:
            tape.watch([g_counts, z])
            grad_z = tf.reshape(pullback_of_z(z)(al.Confusion(*tf.unstack(g_counts, 4))), tf.shape(z))
        d_counts, d_z = tape.gradient(grad_z, [g_counts, z], output_gradients=tf.cast(upstream, grad_z.dtype))
        if d_counts is not None:
            return d_counts, tf.cast(d_z, z.dtype)
        # Nothing recorded: TensorFlow transposes a tf.function's gradient for a forward accumulator outside it,
        # and no tape records there.  The gradient is linear in g (pull(g) = J^T g): its derivative in g along the
        # upstream u is J u, component c the product of u with pull(e_c), four pullbacks.  Its derivative in z
        # cannot be had without a tape: zero.  Nothing read it where this was measured: the JVP of the loss, and
        # of its gradient computed in the tf.function, are exact (tests/test_keras_tf_second_derivatives.py).
        pull = pullback_of_z(z)  # not stopped: a third derivative through it (forward over forward) is the loss's
        u = tf.reshape(tf.cast(upstream, grad_z.dtype), [-1])
        basis = tf.unstack(tf.eye(4, dtype=g_counts.dtype))
        d_counts = tf.stack([tf.reduce_sum(u * tf.reshape(pull(al.Confusion(*tf.unstack(e, 4))), [-1]))
                             for e in basis])
        return tf.cast(d_counts, g_counts.dtype), tf.zeros_like(z)

    @tf.custom_gradient
    def counts_of(z: Any) -> Any:
        counts, pullback = pullback_of(z)

        def grad(g_counts: Any, g_rescue: Any) -> Any:
            # Recomputed, the sums the pullback does not use are pruned from the gradient's graph.
            pull = pullback_of(z)[1] if recompute else pullback

            # The gradient is itself a custom gradient of (g_counts, g_rescue, z), for an outer tape: the pullback
            # above is of sg[z], invisible to it.  Its own gradient is called only when something differentiates the
            # gradient; otherwise it adds an identity to a graph.
            @tf.custom_gradient
            def gradient_of(g_counts: Any, g_rescue: Any, z: Any) -> Any:
                g = al.Confusion(*tf.unstack(g_counts, 4))
                grad_z = pull(g, rescue_scale=g_rescue) if rescue else pull(g)
                # The tensors the second derivative reads, as this graph's own: where the gradient is a function
                # of its own (the eager calls' traced counts), the forward function's tensors are out of its scope.
                # Nothing else reads them: a graph prunes them.
                here = [t if tf.executing_eagerly() or not tf.is_tensor(t) else tf.identity(t)
                        for t in (z, y_true, sample_weight)]

                def second(upstream: Any) -> tuple[Any, Any, Any]:
                    d_counts, d_z = curvature(g_counts, *here, upstream)
                    if not rescue:
                        return d_counts, tf.zeros_like(g_rescue), d_z
                    # The gradient is linear in g_rescue, of slope the rescue slope: the pullback of zero counts.
                    z_here, y_here, w_here = here
                    slope_of = soft_confusion_with_pullback(y_here, tf.stop_gradient(z_here), sample_weight=w_here,
                                                            rescue=rescue, validate=False, xp=kxp, **options)[1]
                    zeros = al.Confusion(*tf.unstack(tf.zeros_like(g_counts), 4))
                    slope = tf.reshape(slope_of(zeros, rescue_scale=tf.ones_like(g_rescue)), [-1])
                    d_rescue = tf.reduce_sum(tf.reshape(tf.cast(upstream, slope.dtype), [-1]) * slope)
                    return d_counts, tf.cast(d_rescue, g_rescue.dtype), d_z

                return tf.cast(tf.reshape(grad_z, tf.shape(z)), z.dtype), second

            return gradient_of(g_counts, g_rescue, z)

        return (tf.stack(tuple(counts)), tf.zeros((), counts.tp.dtype)), grad

    return counts_of(z)  # type: ignore[no-any-return]


#: The eager calls' counts as ``tf.function``s, by configuration and device (:func:`_eager_counts`).
_EAGER_COUNTS: dict[tuple[Any, ...], Any] = {}
#: Configurations traced at most; later ones count op by op.  TensorFlow keeps every trace's custom gradient in a
#: global registry, so a trace dropped from this table would not be freed: a loop making losses of new
#: configurations (a sweep of ``scale``, a new approximation object each time) must not trace each one.
_EAGER_COUNTS_SIZE = 32


def _eager_counts(options: dict[str, Any], y_pred: Any) -> Any:
    """The counts of flat, checked ``(p, y, w)`` for eager calls of these ``options`` on ``y_pred``'s device, as
    one ``tf.function``; ``None`` where the options cannot key one (an approximation that does not hash: one that
    defines ``__eq__`` without ``__hash__``) or the table is full.

    Eagerly, each TensorFlow op is a dispatch of its own and allocates its result, and the tape holds what the
    gradient uses until the step's backward pass.  In a graph the ops run without Python, and an op may write
    into an input that nothing else reads; the gradient recomputes sigma(z) and A from the graph's own inputs
    (``recompute``), so the forward pass keeps no n-element array for it.  ``F1Loss(from_logits=True)``'s eager
    step at n = 1e7 with float labels then peaks at 3.0x the logits' bytes instead of 5.0x (int or bool labels:
    4.0x instead of 6.0x, their cast copy; docs/performance.md, eleventh round).

    One function per configuration and device, each traced for its dtypes and weighting, and for every batch
    size after the second (``reduce_retracing``): one function for all would retrace at each new configuration,
    and TensorFlow warns about a function that retraces at every call.  The device is ``y_pred``'s: under a
    distribution strategy each replica's, whose device scope TensorFlow would otherwise trace again in the same
    function (outside one, a ``y_pred`` placed elsewhere than the current scope only adds an entry).
    """
    key = (*options.values(), getattr(y_pred, "device", None))
    try:
        traced = _EAGER_COUNTS.get(key)
    except TypeError:  # an approximation that does not hash
        return None
    if traced is None and len(_EAGER_COUNTS) < _EAGER_COUNTS_SIZE:
        traced = _EAGER_COUNTS[key] = _traced_counts(options)
    return traced


def _counts_of_checked(p: Any, y: Any, w: Any, *, options: dict[str, Any]) -> tuple[Any, Any]:
    """:func:`_counts_with_pullback` of arrays checked already, its gradient recomputing sigma(z) and A."""
    return _counts_with_pullback(p, y, w, validate=False, recompute=True, **options)


def _traced_counts(options: dict[str, Any]) -> Any:
    import tensorflow as tf

    # A partial, not a closure: TensorFlow counts retraces by the traced function's code object, which every
    # closure made here would share (it warned at the fifth configuration, as one function for all did).
    # autograph=False: the core is straight-line array code (it is traced by jax.jit too), with no control flow
    # on tensors for AutoGraph to convert; converting it costs time and warns about what it cannot convert.
    return tf.function(functools.partial(_counts_of_checked, options=options), reduce_retracing=True,
                       autograph=False)
