r"""Running counts: a mini-batch loss that follows the dataset's metric, not the batch's.

A batch's F1 is a ratio of batch sums, so its expectation over batches is not the
dataset's F1, and a batch of 8 with no positive gives no gradient at all.  Stochastic
compositional optimisation (SOX, Wang & Yang, ICML 2022) fixes both for a loss that is a
function of sums: keep a running estimate :math:`u` of the counts and step on the loss
linearised at :math:`u`.

For a batch with soft counts :math:`c_B` (tn, fn, fp, tp; per class, ``(C, 4)``) of
total weight :math:`n_B = \sum_k c_{B,k}`:

.. math::

    u' = (1 - m)\, u + m\, \frac{c_B}{n_B}, \qquad
    \mathcal{L} = 1 - f\!\left(n_B\, u' + (c_B - \mathrm{sg}[c_B])\right)

where :math:`m \in (0, 1]` is the momentum and :math:`\mathrm{sg}` stops the gradient.
The value is one minus the metric at the running counts (rescaled to the batch's total,
so a metric sees counts of the usual size); the gradient is
:math:`-\sum_k \partial f / \partial c_k\,|_{n_B u'} \cdot \partial c_{B,k} / \partial\theta`,
the batch's own soft counts weighted by the metric's slope at the running estimate.  The
state holds fractions (each row sums to 1), so batches of different sizes mix fairly.

Conventions:

* ``momentum=1`` is the plain loss :math:`1 - f(c_B)` (to rounding, for metrics that
  depend on the counts only through their ratios, as every built-in one does).
* A state of zeros is *empty*: the first batch fills it (no bias towards zero, which
  Adam corrects with a factor instead).
* A batch of total weight zero leaves the state as it is and gives a zero gradient.
* The state carries no gradient; with data parallelism, sum the counts over the
  workers first (the adapters do) and every worker keeps the same state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._losses import confusion_loss
from ._metrics import Confusion, Metric
from ._namespace import get_namespace
from ._types import Array, Namespace

__all__ = ["check_momentum", "running_confusion_loss", "running_counts_shape", "running_state"]


def check_momentum(momentum: Any) -> float | None:
    """``momentum`` as a float in (0, 1], or ``None`` (no running counts); ``ValueError`` otherwise."""
    if momentum is None:
        return None
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
        raise TypeError(f"momentum must be a number in (0, 1] or None, got {momentum!r}")
    value = float(momentum)
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise ValueError(
            f"momentum must be in (0, 1] (the weight of the newest batch in the running counts; 1 is the plain "
            f"loss), got {momentum!r}"
        )
    return value


def running_counts_shape(task: str = "binary", num_classes: int | None = None) -> tuple[int, ...]:
    """The state's shape: ``(4,)`` for a binary task, ``(num_classes, 4)`` per class otherwise."""
    if task == "binary":
        return (4,)
    if num_classes is None:
        raise ValueError(
            f"running counts for task={task!r} need num_classes (the state holds one row of counts per class)"
        )
    return (num_classes, 4)


def _identity(x: Array) -> Array:
    return x


def running_confusion_loss(
    counts: Confusion,
    state: Array,
    metric: str | Metric = "f1",
    *,
    momentum: float,
    stop_gradient: Callable[[Array], Array] = _identity,
    xp: Namespace | None = None,
    task: str = "binary",
    average: str = "macro",
    **metric_params: Any,
) -> tuple[Array, Array]:
    """The loss at running counts and the new state: ``(1 - metric(n_B u'), u')``; see the module docstring.

    Args:
        counts: the batch's soft counts (already summed over data-parallel workers).
        state: the running counts as fractions, ``(4,)`` or ``(C, 4)`` in the order
            tn, fn, fp, tp; zeros for an empty state.
        metric: a metric name or callable, as for :func:`anyloss`.
        momentum: the weight of this batch, in (0, 1].
        stop_gradient: the framework's stop-gradient (``Tensor.detach``,
            ``jax.lax.stop_gradient``, ``keras.ops.stop_gradient``); the identity
            where nothing is differentiated (NumPy).
        xp: array namespace (found from the counts by default).
        task: "binary" (counts of shape (4,)), "multiclass" or "multilabel" (per class), as for :func:`anyloss`.
        average: how per-class metrics combine, as for :func:`anyloss`.
        **metric_params: the metric's parameters (``beta=2.0``), as for :func:`anyloss`.

    Returns:
        ``(loss, new_state)``: the loss (value at the running counts, gradient through the
        batch's counts) and the new state, which carries no gradient.

    Examples:
        >>> import numpy as np, anyloss_core as al
        >>> from anyloss_core._running import running_confusion_loss
        >>> batch = al.Confusion(*np.array([5.0, 1.0, 2.0, 2.0]))  # tn, fn, fp, tp
        >>> loss, state = running_confusion_loss(batch, np.zeros(4), "f1", momentum=0.1)
        >>> state  # the first batch fills an empty state
        array([0.5, 0.1, 0.2, 0.2])
        >>> loss, state = running_confusion_loss(batch, np.array([0.7, 0.0, 0.0, 0.3]), "f1", momentum=0.5)
        >>> state, round(float(loss), 4)  # F1 at 10 * state: 2 * 2.5 / (2 * 2.5 + 1.0 + 0.5)
        (array([0.6 , 0.05, 0.1 , 0.25]), 0.2308)
    """
    xp = get_namespace(counts.tp, xp=xp)
    stacked = xp.stack(tuple(counts), axis=-1)  # (4,) or (C, 4)
    new_state, total = running_state(stacked, state, momentum=momentum, stop_gradient=stop_gradient, xp=xp)
    # Value: the running counts at the batch's scale; gradient: the batch's counts.
    estimate = new_state * total + (stacked - stop_gradient(stacked))
    loss = confusion_loss(Confusion(*(estimate[..., k] for k in range(4))), metric, xp=xp, task=task,
                          average=average, **metric_params)
    return loss, new_state


def running_state(stacked: Array, state: Array, *, momentum: float,
                  stop_gradient: Callable[[Array], Array] = _identity,
                  xp: Namespace | None = None) -> tuple[Array, Array]:
    r"""``(u', n_B)``: the running counts after this batch and the batch's total weight, neither with a gradient.

    ``stacked`` holds the batch's counts with tn, fn, fp, tp last (``(4,)`` or ``(C, 4)``),
    ``state`` the running counts :math:`u` as fractions; see the module docstring for
    :math:`u' = (1 - m) u + m c_B / n_B`, the empty state, and a batch of weight 0.
    The loss is ``1 - metric`` at :math:`n_B u'` (:func:`running_confusion_loss`); a
    caller that evaluates the metric elsewhere (torch's one-node path, on floats) takes
    the state from here.

    Examples:
        >>> import numpy as np
        >>> from anyloss_core._running import running_state
        >>> state, total = running_state(np.array([5.0, 1.0, 2.0, 2.0]), np.array([0.7, 0.0, 0.0, 0.3]),
        ...                              momentum=0.5)
        >>> state, total
        (array([0.6 , 0.05, 0.1 , 0.25]), array([10.]))
    """
    momentum_value = check_momentum(momentum)
    if momentum_value is None:
        raise ValueError("running counts need a momentum in (0, 1]")
    xp = get_namespace(stacked, xp=xp)
    if tuple(state.shape) != tuple(stacked.shape):
        raise ValueError(
            f"running counts of shape {tuple(state.shape)} do not fit the batch's counts of shape "
            f"{tuple(stacked.shape)} (tn, fn, fp, tp last)"
        )
    state = stop_gradient(xp.astype(state, stacked.dtype))  # state, not a parameter
    total = stop_gradient(xp.sum(stacked, axis=-1, keepdims=True))  # the batch's weight: no gradient anyway
    has_weight = total > 0
    fractions = stop_gradient(stacked) / xp.where(has_weight, total, xp.ones_like(total))
    empty = xp.sum(state, axis=-1, keepdims=True) <= 0
    blended = xp.where(empty, fractions, (1.0 - momentum_value) * state + momentum_value * fractions)
    return stop_gradient(xp.where(has_weight, blended, state)), total
