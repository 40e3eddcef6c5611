r"""Multi-class soft counts with their closed-form pullback (softmax approximation), for custom backwards.

With :math:`P = \mathrm{softmax}(z)` the decisions, :math:`Y` the one-hot targets and
:math:`w` the row weights (``sample_weight`` times the ``ignore_index`` mask), the
counts of class :math:`c` are :math:`TP_c = \sum_i w_i Y_{ic} P_{ic}`,
:math:`\mathrm{pred}_c = \sum_i w_i P_{ic}`, :math:`\mathrm{pos}_c = \sum_i w_i Y_{ic}`,
:math:`FN = \mathrm{pos} - TP`, :math:`FP = \mathrm{pred} - TP`,
:math:`TN = \sum_i w_i - TP - FN - FP` (as :func:`anyloss_core.soft_class_confusion`).
For cotangents :math:`g_{TN}, g_{FN}, g_{FP}, g_{TP}` (each ``(C,)``):

.. math:: \frac{\partial L}{\partial P_{ic}} = w_i M_{ic}, \quad
          M_{ic} = B_c + A_c Y_{ic}, \quad A = g_{TP} - g_{FN} - g_{FP} + g_{TN}, \quad B = g_{FP} - g_{TN},

and through the softmax, :math:`\partial L / \partial z_{ic} = w_i P_{ic} (M_{ic} - \sum_k P_{ik} M_{ik})`:
one pass over the ``(n, C)`` probabilities saved by the forward, where autodiff of
the composition replays a dozen ``(n, C)`` kernels.  With class ids the one-hot is
never built in floats: :math:`\sum_k P_{ik} M_{ik}` is a matrix-vector product and a
gather, and :math:`M` a ``where`` of two ``(C,)`` rows (fused by a compiler), or, where
the framework scatters in place (eager torch), never built: :math:`P_{ic} (B_c - s_i)`
with each row's :math:`P_{i y_i} A_{y_i}` added at its class.

Examples:
    >>> import numpy as np, anyloss_core as al
    >>> from anyloss_core.adapters import soft_class_confusion_with_pullback
    >>> z, y = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.array([0, 2])
    >>> counts, pullback = soft_class_confusion_with_pullback(y, z, from_logits=True)
    >>> np.round(counts.tp, 3).tolist()
    [0.787, 0.0, 0.212]
    >>> g = al.Confusion(*(np.zeros(3),) * 3, np.array([1.0, 0.0, 0.0]))  # d/dz of TP_0 = P_00
    >>> np.round(pullback(g)[0], 3).tolist()  # P_00 (1 - P_00), -P_00 P_01, -P_00 P_02
    [0.168, -0.084, -0.084]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._fast_paths import fast_paths, row_count
from ._metrics import Confusion
from ._multiclass import (
    SharpenedSoftmax,
    _row_weights,
    _targets,
    check_multiclass_approximation,
    check_task,
    class_mask,
)
from ._namespace import compute_dtype, get_namespace, softmax, values_available
from ._scale import check_scale
from ._types import Array, Namespace

__all__ = ["ClassPullback", "ClassSums", "soft_class_confusion_with_pullback"]

#: ``class_sums(ids, values, classes) -> (classes,)``: ``values`` summed by class id (ids in range).
ClassSums = Callable[[Array, Array, int], Array]


@dataclass(frozen=True, eq=False)  # hashed by identity: dynamo (torch 2.11) hashed one before its fields were set
class ClassPullback:
    """``g -> dL/dz`` of :func:`soft_class_confusion_with_pullback`, from arrays only (a JAX ``custom_vjp``
    saves ``prob``, ``target`` and ``weight`` as residuals and builds it again in its backward).

    ``prob`` is the softmax ``(n, C)``; ``target`` the class ids ``(n,)`` or the one-hot
    ``(n, C)`` in ``prob``'s dtype; ``weight`` the row weights ``(n,)`` or ``None``;
    ``in_range``: every id is known to be in ``[0, C)`` (checked), so no mask is needed.
    """

    prob: Array
    target: Array
    weight: Array | None
    xp: Namespace
    in_range: bool = False

    def _rows(self, g: Confusion) -> Array:
        """:math:`M = B + A Y`, ``(n, C)``: the gradient of the counts per probability, weights aside."""
        xp, on_neg = self.xp, g.fp - g.tn
        on_pos = g.tp - g.fn
        if len(self.target.shape) == 1:  # ids: a where of two rows, no float one-hot
            hot = class_mask(self.target, self.prob.shape[1], xp)
            return xp.where(hot, on_pos[None, :], on_neg[None, :])
        return fast_paths(xp).add_temporary(self.target * (on_pos - on_neg), on_neg, xp)

    def _by_ids(self, g: Confusion) -> Array:
        """:math:`P (M - s)` ``(n, C)`` with class ids, weights aside, where
        :math:`s_i = \\sum_k P_{ik} M_{ik} = P_i \\cdot B + t_i` and :math:`t_i = P_{i y_i} A_{y_i}`: a
        matrix-vector product and a gather (a sum over a narrow last axis is slow, XLA 1.8 ms against 1.0 ms
        for the whole backward at n = 1e5, C = 10).  Where the framework scatters in place, :math:`M` is never
        built: :math:`P_{ic} (B_c - s_i)`, then :math:`t_i` added at each row's class, two ``(n, C)`` passes
        and an ``(n,)`` scatter where ``M`` took four (eagerly a comparison, a where, a subtraction, a product;
        torch n = 1e5, C = 10: 1.22x-1.23x cross-entropy before, 1.00x-1.01x after, docs/performance.md)."""
        xp, fast, p, ids = self.xp, fast_paths(self.xp), self.prob, self.target
        on_neg = g.fp - g.tn
        diff = (g.tp - g.fn) - on_neg  # A
        if self.in_range:
            on_true = fast.take_by_row(p, ids, xp) * fast.take(diff, ids, xp)
        else:  # ids out of range: all-zero one-hot rows, nothing added
            ids, valid = _safe_ids(ids, p.shape[1], xp)
            on_true = fast.take_by_row(p, ids, xp) * fast.take(diff, ids, xp)
            on_true = xp.where(valid, on_true, xp.zeros_like(on_true))
        centre = p @ on_neg + on_true
        if fast.scatters_in_place(p, xp):
            grad = fast.multiply_temporary(on_neg[None, :] - centre[:, None], p, xp)
            return fast.add_by_row_temporary(grad, ids, on_true, xp)
        # M from the ids as given (self.target: an id out of range matches no class), the term inside the pass
        return fast.multiply_temporary(fast.add_temporary(self._rows(g), -centre[:, None], xp), p, xp)

    def __call__(self, g: Confusion) -> Array:
        """:math:`\\partial L / \\partial z = w P (M - \\sum_k P_k M_k)` for count cotangents ``g`` (each
        ``(C,)``)."""
        xp, fast, p = self.xp, fast_paths(self.xp), self.prob
        if len(self.target.shape) == 1 and hasattr(xp, "take_along_axis"):
            grad = self._by_ids(g)
        else:
            rows = self._rows(g)
            grad = fast.multiply_temporary(fast.add_temporary(rows, -xp.sum(p * rows, axis=1)[:, None], xp), p, xp)
        return grad if self.weight is None else fast.multiply_temporary(grad, self.weight[:, None], xp)

    def weight_grad(self, g: Confusion) -> Array:
        r"""``dL/dw`` ``(n,)`` for the row weights :math:`w`:
        :math:`\sum_c P_{ic} M_{ic} + Y_{ic} (g_{FN} - g_{TN})_c + g_{TN, c}`."""
        xp = self.xp
        per_row = xp.sum(self.prob * self._rows(g), axis=1) + xp.sum(g.tn)
        shift = g.fn - g.tn
        if len(self.target.shape) == 1:
            safe = xp.clip(self.target, 0, self.prob.shape[1] - 1)  # ignored ids: any class (their weight is 0)
            return per_row + fast_paths(xp).take(shift, safe, xp)
        return per_row + xp.sum(self.target * shift[None, :], axis=1)


def soft_class_confusion_with_pullback(
    y_true: Array, y_pred: Array, *, task: str = "multiclass", num_classes: int | None = None,
    ignore_index: int | None = None, from_logits: bool = False, scale: float | None = None,
    approximation: Any = None, sample_weight: Array | None = None, validate: bool = True,
    xp: Namespace | None = None, class_sums: ClassSums | None = None,
) -> tuple[Confusion, ClassPullback] | None:
    """:func:`anyloss_core.soft_class_confusion` and its pullback, or ``None`` where no closed form is
    written here (so an adapter falls back to autodiff).

    It applies to ``task="multiclass"`` from logits with the softmax approximation
    (``None``, ``"anyloss"``, ``"softmax"``, ``SharpenedSoftmax(1.0)``); labels as class ids
    (with ``ignore_index``) or one-hot, and ``sample_weight``, as the plain function takes
    them.  ``pullback(g)`` maps cotangents of the ``(C,)`` counts to ``dL/dz`` ``(n, C)``
    (see the module docstring for the formula).

    ``class_sums`` is an adapter's native scatter-add (``jnp.bincount``, ``Tensor.index_add_``):
    with class ids, TP and the support are then sums of ``n`` values by class, not
    column sums of ``(n, C)`` arrays (the Array API has no scatter-add; XLA's column
    sums of a narrow ``(n, C)`` cost as much as the softmax).
    """
    check_task(task)
    if task != "multiclass" or not from_logits:
        return None
    if approximation is not None:
        check_multiclass_approximation(approximation)
    if not (approximation in (None, "anyloss", "softmax") or approximation == SharpenedSoftmax(1.0)):
        return None
    if scale is not None:
        check_scale(scale)  # ignored by the softmax, but checked as the plain path does
    xp = get_namespace(y_true, y_pred, sample_weight, xp=xp)
    y_true = xp.asarray(y_true) if not hasattr(y_true, "shape") else y_true
    y_pred = xp.asarray(y_pred) if not hasattr(y_pred, "shape") else y_pred
    if not xp.isdtype(y_pred.dtype, "real floating"):
        raise TypeError(f"y_pred must be a floating array of probabilities or logits, got dtype {y_pred.dtype}")
    dtype = compute_dtype(y_pred.dtype, xp)
    z = xp.astype(y_pred, dtype, copy=False)
    target, mask = _targets(y_true, z, task, num_classes, ignore_index, validate, dtype, xp, one_hot=False)
    checked = validate and values_available(z, xp) and values_available(y_true, xp)
    w = _row_weights(sample_weight, mask, z.shape[0], dtype, xp, checked)
    prob = softmax(z, xp)
    classes = prob.shape[1]
    # Checked ids are in range, unless ignored with an id outside it.
    in_range = checked and (ignore_index is None or 0 <= ignore_index < int(classes))
    if len(target.shape) == 1 and class_sums is not None:
        tp, pos = _by_class(target, prob, w, class_sums, xp, in_range)
        pred = xp.sum(prob, axis=0) if w is None else w @ prob
        total = row_count(prob, xp) if w is None else xp.sum(w)
        fn, fp = pos - tp, pred - tp
        return Confusion(tn=total - tp - fn - fp, fn=fn, fp=fp, tp=tp), ClassPullback(prob, target, w, xp, in_range)
    if len(target.shape) == 1:
        hot = class_mask(target, classes, xp)
        on_true = xp.where(hot, prob, xp.zeros_like(prob))  # P on the true class, 0 elsewhere
        hot_f = xp.astype(hot, dtype)
    else:
        on_true, hot_f = target * prob, target
    if w is None:
        tp, pos, pred = xp.sum(on_true, axis=0), xp.sum(hot_f, axis=0), xp.sum(prob, axis=0)
        total = row_count(prob, xp)
    else:  # weighted column sums as vector-matrix products: no weighted (n, C) temporaries
        tp, pos, pred, total = w @ on_true, w @ hot_f, w @ prob, xp.sum(w)
    fn, fp = pos - tp, pred - tp
    counts = Confusion(tn=total - tp - fn - fp, fn=fn, fp=fp, tp=tp)
    return counts, ClassPullback(prob, target, w, xp, in_range)


def _safe_ids(ids: Array, classes: int, xp: Namespace) -> tuple[Array, Array]:
    """``ids`` with those outside ``[0, classes)`` replaced by 0 (safe to gather with), and the mask of the
    ids that were inside: the caller zeroes what an outside id gathered."""
    valid = (ids >= 0) & (ids < classes)
    return xp.where(valid, ids, xp.zeros_like(ids)), valid


def _by_class(ids: Array, prob: Array, w: Array | None, class_sums: ClassSums, xp: Namespace,
              in_range: bool) -> tuple[Array, Array]:
    """TP and the support by class id: the true class's probability gathered, then summed by class.

    Ids out of range (``ignore_index``, or unchecked with ``validate=False``) count in
    neither, as their all-zero one-hot rows would.
    """
    classes, fast = prob.shape[1], fast_paths(xp)
    if in_range:
        ones = xp.ones_like(prob[:, 0]) if w is None else w
        on_true = fast.take_by_row(prob, ids, xp)
        return class_sums(ids, on_true if w is None else on_true * w, classes), class_sums(ids, ones, classes)
    safe, valid = _safe_ids(ids, classes, xp)
    on_true = fast.take_by_row(prob, safe, xp)
    weight = xp.astype(valid, prob.dtype) if w is None else xp.where(valid, w, xp.zeros_like(w))
    return class_sums(safe, on_true * weight, classes), class_sums(safe, weight, classes)
