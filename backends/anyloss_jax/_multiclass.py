"""Multi-class soft counts with the core's closed-form backward, as a ``jax.custom_vjp``.

``jax.grad`` of the plain composition differentiates the softmax, the one-hot products
and the column sums op by op; the core's pullback
(``anyloss_core.adapters.soft_class_confusion_with_pullback``) is one expression of the
saved softmax, ``w P (M - sum_k P_k M_k)``, which XLA fuses into one pass.  The
``custom_vjp`` wraps the per-class counts (not the loss), so ``axis_name`` still sums
them with ``lax.psum`` before the metric.  The residuals are arrays only (the softmax,
the labels and the row weights); the backward builds the core's
:class:`~anyloss_core.adapters.ClassPullback` from them again.

Gradients: the logits', and the ``sample_weight``'s (``dL/dw``; XLA drops it when it is
not asked for).  Labels get none (class ids are integers; one-hot labels are data).

Examples:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from anyloss_jax._multiclass import class_counts
    >>> z, y = jnp.array([[2.0, 0.0], [0.0, 1.0]]), jnp.array([0, 1])
    >>> f = lambda z: class_counts(z, y, None, task="multiclass", from_logits=True).tp.sum()
    >>> np.round(np.asarray(jax.grad(f)(z), dtype=float), 3).tolist()  # P_1 (1 - P_1) on the true class
    [[0.105, -0.105], [-0.197, 0.197]]
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp

import anyloss_core as al
from anyloss_core.adapters import ClassPullback, get_namespace, soft_class_confusion_with_pullback

__all__ = ["class_counts"]

_SOFTMAX_NAMES = (None, "anyloss", "softmax")


def _closed_form_applies(options: dict[str, Any]) -> bool:
    approximation = options.get("approximation")
    return (options.get("task") == "multiclass" and bool(options.get("from_logits"))
            and (approximation in _SOFTMAX_NAMES or approximation == al.SharpenedSoftmax(1.0)))


def class_counts(logits: Any, labels: Any, sample_weight: Any, **options: Any) -> al.Confusion:
    """The per-class soft counts of :func:`anyloss_core.soft_class_confusion` (``options`` are its keywords:
    ``task``, ``num_classes``, ``ignore_index``, ``from_logits``, ``scale``, ``approximation``,
    ``validate``), with the closed-form backward where it applies."""
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if sample_weight is not None:
        sample_weight = jnp.asarray(sample_weight)
    if not _closed_form_applies(options):
        return al.soft_class_confusion(labels, logits, sample_weight=sample_weight, **options)
    return _counts(logits, labels, sample_weight, tuple(sorted(options.items())))  # type: ignore[no-any-return]


def _class_sums(ids: Any, values: Any, classes: int) -> Any:
    # A scatter-add of n values: XLA's column sums of the (n, C) one-hot products cost as much as the softmax.
    return jnp.bincount(ids, values, length=classes)


def _with_pullback(logits: Any, labels: Any, weight: Any, options: tuple[tuple[str, Hashable], ...]) -> Any:
    out = soft_class_confusion_with_pullback(labels, logits, sample_weight=weight, class_sums=_class_sums,
                                             **dict(options))
    assert out is not None, "checked by _closed_form_applies"
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _counts(logits: Any, labels: Any, weight: Any, options: tuple[tuple[str, Hashable], ...]) -> al.Confusion:
    counts, _ = _with_pullback(logits, labels, weight, options)
    return counts  # type: ignore[no-any-return]


def _counts_fwd(logits: Any, labels: Any, weight: Any, options: tuple[tuple[str, Hashable], ...]) -> Any:
    counts, pullback = _with_pullback(logits, labels, weight, options)
    # Arrays only: an empty array of the logits' dtype (their cotangent's), the sample weights as given.
    return counts, (pullback.prob, pullback.target, pullback.weight, jnp.zeros((0,), logits.dtype), weight)


def _counts_bwd(options: tuple[tuple[str, Hashable], ...], residuals: Any, g: al.Confusion) -> Any:
    prob, target, rows, like_logits, weight = residuals
    pullback = ClassPullback(prob, target, rows, get_namespace(prob))
    grad_logits = pullback(g).astype(like_logits.dtype)
    if weight is None:
        return grad_logits, None, None
    grad_weight = pullback.weight_grad(g)
    ignore_index = dict(options).get("ignore_index")
    if ignore_index is not None and target.ndim == 1:  # the row weight is sample_weight * (label != ignore_index)
        grad_weight = grad_weight * (target != ignore_index)
    return grad_logits, None, grad_weight.reshape(weight.shape).astype(weight.dtype)


_counts.defvjp(_counts_fwd, _counts_bwd)
