r"""Multi-class and multi-label AnyLoss: one confusion matrix per class, then an average.

For ``C`` classes the soft counts are ``(C,)`` arrays, class ``c`` against the rest:

.. math:: TP_c = \sum_i w_i Y_{ic} \hat Y_{ic}, \quad FP_c = \sum_i w_i (1 - Y_{ic}) \hat Y_{ic},
          \quad FN_c = \sum_i w_i Y_{ic} (1 - \hat Y_{ic}), \quad TN_c = \sum_i w_i (1 - Y_{ic})(1 - \hat Y_{ic})

with :math:`Y` the one-hot (multi-class) or multi-hot (multi-label) targets and
:math:`\hat Y` the approximated decisions:

* multi-label: the binary approximation per label, :math:`\hat Y_{ic} = A(\sigma(z_{ic}))`;
* multi-class, ``"softmax"`` (the default, also what ``approximation="anyloss"``
  selects): the softmax probabilities, :math:`\hat Y_{ic} = p_{ic}` (a sharpened
  softmax :math:`p^s / \sum_k p_k^s` tends to the argmax one-hot as ``s`` grows, but
  measured worse for ``s`` = 2, 4 and 8 than for ``s = 1``: see the multi-class docs
  page for the numbers);
* multi-class, ``"ovr"``: the paper's :math:`A` one-vs-rest on the softmax
  probabilities, :math:`\hat Y_{ic} = A(p_{ic})`.  When no class reaches 0.5 every
  :math:`\hat Y_{ic}` is near 0, so it does not reproduce argmax decisions, and its
  gradient vanishes away from 0.5: it trains markedly worse.

Averages (as scikit-learn's ``average=``): ``"micro"`` sums the counts over the
classes first; ``"macro"`` averages the per-class metric; ``"weighted"`` weights it
by the class support (the weighted number of true samples of the class);
``"none"`` returns one value per class.  Classes absent from the batch count as
scikit-learn counts them with ``labels=range(C)`` and ``zero_division=0``.
Accuracy is the fraction of correct decisions and balanced accuracy the mean
recall over the classes present in ``y_true`` (``balanced_accuracy_score``), for
any ``average``.  Memory and time are linear in ``n * C``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._approximations import get_approximation
from ._fast_paths import fast_paths, row_count
from ._metrics import Confusion, Metric, check_metric_value, get_metric, ratio
from ._names import unknown_name
from ._namespace import class_range, comparable_ids, compute_dtype, get_namespace, sigmoid, softmax, values_available
from ._scale import DEFAULT_SCALE, check_scale
from ._types import Array, Namespace

__all__ = ["TASKS", "AVERAGES", "SharpenedSoftmax", "class_confusion", "soft_class_confusion", "average_metric"]

TASKS = ("binary", "multiclass", "multilabel")
AVERAGES = ("micro", "macro", "weighted", "none")
MULTICLASS_APPROXIMATIONS = ("softmax", "ovr")
#: What ``approximation=`` accepts for ``task="multiclass"`` ("anyloss", every API's default, is "softmax").
MULTICLASS_APPROXIMATION_NAMES = ("anyloss", *MULTICLASS_APPROXIMATIONS)
#: Default sharpening exponent of the "softmax" approximation (see the multi-class docs page).
SOFTMAX_SCALE = 1.0


def check_task(task: Any, average: Any = "macro") -> None:
    """``ValueError`` (with the closest valid names) for an unknown ``task`` or ``average``."""
    if task not in TASKS:
        raise unknown_name("task", task, TASKS)
    if average not in AVERAGES:
        raise unknown_name("average", average, AVERAGES)


def check_multiclass_approximation(approximation: Any) -> None:
    """``ValueError`` unless ``approximation`` is a multi-class name ("anyloss", "softmax", "ovr") or a
    :class:`SharpenedSoftmax`."""
    if isinstance(approximation, SharpenedSoftmax) or approximation in MULTICLASS_APPROXIMATION_NAMES:
        return
    raise unknown_name("approximation", approximation, MULTICLASS_APPROXIMATION_NAMES,
                       also=" or a SharpenedSoftmax (for task='multiclass')")


def _targets(y_true: Array, y_pred: Array, task: str, num_classes: int | None, ignore_index: int | None,
             validate: bool, dtype: Any, xp: Namespace, one_hot: bool = True) -> tuple[Any, Any]:
    """One-hot / multi-hot targets ``(n, C)`` in ``dtype`` and a row mask (``None``: every row counts);
    class ids stay ids ``(n,)`` when not ``one_hot``."""
    if len(y_pred.shape) != 2:
        raise ValueError(f"{task} y_pred must have shape (n, C), got {tuple(y_pred.shape)}")
    n, classes = y_pred.shape
    # Values are read only when every array is concrete: under jit, labels closed over
    # from outside are concrete, but any operation on them inside the trace is not.
    validate = validate and values_available(y_pred, xp) and values_available(y_true, xp)
    if num_classes is not None and classes is not None and int(classes) != num_classes:
        raise ValueError(f"y_pred has {classes} classes (shape {tuple(y_pred.shape)}) but num_classes={num_classes}")
    shape = tuple(y_true.shape)
    if shape == (n, classes) and not (task == "multiclass" and classes == 1):
        if ignore_index is not None:
            raise ValueError("ignore_index applies to class ids (n,), not to one-hot / multi-hot targets")
        y = xp.astype(y_true, dtype, copy=False)
        if validate:
            if not fast_paths(xp).all_binary(y, xp):  # one fused pass where the backend has one
                if bool(xp.any(y != y)):  # NaN (x != x: the Keras shim has no isnan)
                    raise ValueError("y_true contains NaN")
                raise ValueError(f"{task} one-hot / multi-hot y_true must hold 0 and 1")
            if task == "multiclass" and not bool(xp.all(xp.sum(y, axis=1) == 1)):
                raise ValueError("multiclass one-hot y_true must have exactly one 1 per row")
        return y, None
    if task == "multilabel":
        raise ValueError(f"multilabel y_true must be multi-hot with the shape of y_pred {tuple(y_pred.shape)}, "
                         f"got {shape}")
    if not (shape == (n,) or shape == (n, 1)):
        raise ValueError(f"multiclass y_true must be class ids of shape (n,) or (n, 1), or one-hot (n, C) = "
                         f"{tuple(y_pred.shape)}; got {shape}")
    if not xp.isdtype(y_true.dtype, "integral"):
        raise TypeError(f"multiclass class ids must be integers, got dtype {y_true.dtype}")
    ids = comparable_ids(xp.reshape(y_true, (-1,)), xp)  # 8- and 16-bit ids as int32: no wrap against C
    mask = None if ignore_index is None else (ids != ignore_index)
    if validate:
        in_range = (ids >= 0) & (ids < classes)
        if not bool(xp.all(in_range if mask is None else in_range | ~mask)):
            import numpy as np  # only to name the offending id in the message

            values = np.asarray(ids)
            bad = values[(values < 0) | (values >= classes)]
            bad = bad[bad != ignore_index] if ignore_index is not None else bad
            raise ValueError(f"class id {int(bad[0])} is out of range for {classes} classes"
                             + ("" if ignore_index is None else f" (ignore_index={ignore_index})"))
    return _one_hot(ids, classes, dtype, xp) if one_hot else ids, None if mask is None else xp.astype(mask, dtype)


def class_mask(ids: Array, classes: int, xp: Namespace) -> Array:
    """``(n,)`` integer ids as an ``(n, classes)`` boolean one-hot (an id outside the range: a row of False).

    The class range is made on the ids' device (on the CPU beside CUDA ids, the comparison failed) and in a
    dtype that holds every class (:func:`~anyloss_core._namespace.class_range`).
    """
    ids, range_ = class_range(ids, classes, xp)
    return ids[:, None] == range_[None, :]


def _one_hot(ids: Array, classes: int, dtype: Any, xp: Namespace) -> Array:
    """``(n,)`` integer ids as ``(n, classes)`` rows of 0 and 1 (an id outside the range: a row of 0)."""
    return xp.astype(class_mask(ids, classes, xp), dtype)


def _row_weights(sample_weight: Array | None, mask: Array | None, n: Any, dtype: Any, xp: Namespace,
                 validate: bool) -> Array | None:
    w = None
    if sample_weight is not None:
        sw = xp.asarray(sample_weight) if not hasattr(sample_weight, "shape") else sample_weight
        if tuple(sw.shape) not in ((n,), (n, 1)):
            raise ValueError(f"sample_weight must have shape (n,) = ({n},), got {tuple(sw.shape)}")
        concrete = validate and values_available(sw, xp)
        w = xp.astype(xp.reshape(sw, (-1,)), dtype, copy=False)
        if concrete and not bool(xp.all(w >= 0)):
            if bool(xp.any(w != w)):  # only once the cheap check failed: name NaN as NaN
                raise ValueError("sample_weight contains NaN")
            raise ValueError("sample_weight must be non-negative")
    if mask is not None:
        w = mask if w is None else w * mask
    return w


def _sum_rows(a: Array, w: Array | None, xp: Namespace) -> Array:
    return xp.sum(a, axis=0) if w is None else xp.sum(a * w[:, None], axis=0)


def _counts(Y: Array, Yh: Array, w: Array | None, xp: Namespace) -> Confusion:
    tp = _sum_rows(Y * Yh, w, xp)
    pos = _sum_rows(Y, w, xp)
    pred = _sum_rows(Yh, w, xp)
    total = row_count(Y, xp) if w is None else xp.sum(w)
    # FN = support - TP etc.: exact for hard counts, and for soft ones accurate to the
    # rounding of the sums (they are sums of non-negative terms).
    fn, fp = pos - tp, pred - tp
    return Confusion(tn=total - tp - fn - fp, fn=fn, fp=fp, tp=tp)


def soft_class_confusion(y_true: Array, y_pred: Array, *, task: str = "multiclass", num_classes: int | None = None,
                         ignore_index: int | None = None, from_logits: bool = False, scale: float | None = None,
                         approximation: Any = None, sample_weight: Array | None = None, validate: bool = True,
                         xp: Namespace | None = None) -> Confusion:
    """Soft per-class counts, each a ``(C,)`` array; see the module docstring for the formulas.

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> logits = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
        >>> counts = al.soft_class_confusion(np.array([0, 1, 1]), logits, from_logits=True)
        >>> np.round(counts.tp, 2).tolist(), np.round(counts.fp, 2).tolist()
        ([0.96, 0.98, 0.0], [0.04, 0.02, 1.0])
    """
    xp = get_namespace(y_true, y_pred, sample_weight, xp=xp)
    y_true = xp.asarray(y_true) if not hasattr(y_true, "shape") else y_true
    y_pred = xp.asarray(y_pred) if not hasattr(y_pred, "shape") else y_pred
    check_task(task)
    if task not in ("multiclass", "multilabel"):
        raise ValueError(f"soft_class_confusion is for task 'multiclass' or 'multilabel', got {task!r}")
    scale = DEFAULT_SCALE if scale is None else check_scale(scale)  # also where the approximation ignores it
    if task == "multiclass" and approximation is not None:
        check_multiclass_approximation(approximation)
    if not xp.isdtype(y_pred.dtype, "real floating"):
        raise TypeError(f"y_pred must be a floating array of probabilities or logits, got dtype {y_pred.dtype}")
    dtype = compute_dtype(y_pred.dtype, xp)
    p = xp.astype(y_pred, dtype, copy=False)
    Y, mask = _targets(y_true, p, task, num_classes, ignore_index, validate, dtype, xp)
    if validate and not from_logits and values_available(p, xp) and not bool(xp.all((p >= 0) & (p <= 1))):
        if bool(xp.any(p != p)):
            raise ValueError("y_pred contains NaN")
        raise ValueError("y_pred has values outside [0, 1] but from_logits=False: pass probabilities, "
                         "or from_logits=True for logits")
    w = _row_weights(sample_weight, mask, p.shape[0], dtype, xp, validate and values_available(p, xp))
    if task == "multilabel":
        approx = get_approximation("anyloss" if approximation is None else approximation)
        Yh, _ = approx(p, from_logits=from_logits, scale=scale, xp=xp)
    else:
        Yh = _multiclass_decisions(p, from_logits, scale, approximation, xp)
    return _counts(Y, Yh, w, xp)


def _log_probabilities(p: Array, from_logits: bool, xp: Namespace) -> Array:
    if from_logits:
        return p
    tiny = float(xp.finfo(p.dtype).smallest_normal)
    return xp.log(xp.clip(p, tiny, None))  # log 0 = -inf would give NaN gradients


#: What ``approximation="anyloss"`` (every API's default) means for a multi-class task.
DEFAULT_MULTICLASS_APPROXIMATION = "softmax"


@dataclass(frozen=True)
class SharpenedSoftmax:
    r"""Multi-class decisions :math:`\hat Y_{ic} = p_{ic}^s / \sum_k p_{ik}^s` (from logits ``softmax(s z)``).

    ``approximation="softmax"`` is ``SharpenedSoftmax(1.0)``: the softmax probabilities.
    A larger ``sharpness`` tends to the argmax one-hot (and flattens the gradient).
    """

    sharpness: float = SOFTMAX_SCALE
    name: str = "softmax"

    def __post_init__(self) -> None:
        if not (isinstance(self.sharpness, (int, float)) and self.sharpness > 0):
            raise ValueError(f"sharpness must be > 0, got {self.sharpness!r}")


def _multiclass_decisions(p: Array, from_logits: bool, scale: float, approximation: Any, xp: Namespace) -> Array:
    name = DEFAULT_MULTICLASS_APPROXIMATION if approximation in (None, "anyloss") else approximation
    if name == "softmax":
        name = SharpenedSoftmax()
    if isinstance(name, SharpenedSoftmax):
        return softmax(float(name.sharpness) * _log_probabilities(p, from_logits, xp), xp)
    if name == "ovr":
        probs = softmax(p, xp) if from_logits else p
        yh, _ = get_approximation("anyloss")(probs, from_logits=False, scale=scale, xp=xp)
        return yh
    check_multiclass_approximation(name)  # raises: the name is none of the above
    raise AssertionError(name)


def class_confusion(y_true: Array, y_pred: Array, *, task: str = "multiclass", num_classes: int | None = None,
                    ignore_index: int | None = None, threshold: float = 0.5, from_logits: bool = False,
                    sample_weight: Array | None = None, validate: bool = True,
                    xp: Namespace | None = None) -> Confusion:
    """Hard per-class counts: argmax decisions (multi-class) or ``probability > threshold`` per label.

    ``y_pred`` is ``(n, C)`` scores (probabilities or logits), or for multi-class also
    predicted class ids ``(n,)``; counts are float64 for NumPy, so metrics equal scikit-learn's.
    """
    check_task(task)
    xp = get_namespace(y_true, y_pred, sample_weight, xp=xp)
    y_true = xp.asarray(y_true) if not hasattr(y_true, "shape") else y_true
    y_pred = xp.asarray(y_pred) if not hasattr(y_pred, "shape") else y_pred
    dtype = xp.float64 if hasattr(xp, "float64") else xp.float32
    if task == "multiclass" and len(y_pred.shape) == 1:
        if num_classes is None:
            raise ValueError("predicted class ids (n,) need num_classes")
        y_pred = _one_hot(y_pred, num_classes, dtype, xp)
    Y, mask = _targets(y_true, y_pred, task, num_classes, ignore_index, validate, dtype, xp)
    if task == "multilabel":
        scores = xp.astype(y_pred, dtype)
        Yh = xp.astype((sigmoid(scores, xp) if from_logits else scores) > threshold, dtype)
    else:
        Yh = _one_hot(xp.argmax(y_pred, axis=1), y_pred.shape[1], dtype, xp)
    w = _row_weights(sample_weight, mask, y_pred.shape[0], dtype, xp, validate and values_available(y_pred, xp))
    return _counts(Y, Yh, w, xp)


def average_metric(counts: Confusion, metric: str | Metric, *, task: str, average: str, xp: Namespace | None = None,
                   **metric_params: Any) -> Array:
    """The metric of per-class counts, averaged as scikit-learn's ``average=`` (``"none"``: per class)."""
    check_task(task, average)
    xp = get_namespace(counts.tp, xp=xp)
    if task == "multiclass" and metric == "accuracy":
        return ratio(xp.sum(counts.tp), xp.sum(counts.tp + counts.fn), xp)  # the fraction correct
    if task == "multiclass" and metric == "balanced_accuracy":
        support = counts.tp + counts.fn
        present = xp.astype(support > 0, support.dtype)
        recall = ratio(counts.tp, support, xp)
        return ratio(xp.sum(present * recall), xp.sum(present), xp)
    fn = get_metric(metric, **metric_params)
    if average == "micro":
        value = fn(Confusion(*(xp.sum(c) for c in counts)), xp)
        check_metric_value(metric, fn, value, xp)
        return value
    per_class = fn(counts, xp)
    check_metric_value(metric, fn, per_class, xp)
    if average == "none":
        return per_class
    if average == "macro":
        return xp.mean(per_class)
    support = counts.tp + counts.fn
    return ratio(xp.sum(support * per_class), xp.sum(support), xp)
