r"""The rescue gradient: confidently wrong samples keep a gradient, the loss keeps its value.

Every soft count goes through :math:`\sigma(z)` and then :math:`A`, so the derivative of a
sample's near-label, :math:`L\, A (1 - A)\, p (1 - p)`, vanishes once :math:`|z|` is beyond
about 1; in float32 :math:`1 - A` rounds to exactly 0.  A network whose first logits are
large (unstandardised features, an unlucky initialisation) then has no gradient at all
and the loss stays at 1.0 for ever.  The paper never meets this: its perceptrons start at
zero on standardised data.

The remedy adds, for the samples on the wrong side of the decision threshold only, the
gradient of binary cross-entropy, without changing the loss's value:

.. math::

    \mathcal{L} = 1 - f(c) + \lambda \sum_i \mathrm{sg}[g_i]\, (z_i - \mathrm{sg}[z_i]),
    \qquad g_i = [\text{$i$ wrong}]\; \frac{w_i}{\sum_j w_j}\, \frac{\partial\, \mathrm{BCE}(z_i, y_i)}{\partial z_i}

where :math:`\mathrm{sg}` stops the gradient, so the added term is exactly 0 and its
gradient is :math:`\lambda g_i`: :math:`\lambda (\sigma(z_i) - y_i) w_i / \sum_j w_j` for
logits, :math:`\lambda (p_i - y_i) / \max(p_i (1 - p_i), 10^{-3})\, w_i / \sum_j w_j` for
probabilities (which the user's own sigmoid turns back into :math:`\lambda (p_i - y_i)` where it
is not flat).  A sample is wrong when :math:`y_i = 1` and :math:`z_i < 0` (:math:`p_i < 1/2`), or :math:`y_i = 0` and
:math:`z_i > 0`.  Correctly classified samples get nothing extra, so where every sample
is right the gradient is the paper's; where a mistake is near the threshold the
paper's gradient (up to :math:`L / 16 \approx 4.6` per unit of count slope) dwarfs the
added :math:`\lambda / n`.

Measured (docs/howto/training.md): with :math:`\lambda = 0.1` (the default) an MLP on
unstandardised breast-cancer features trains to F1 0.90 where the plain loss stays at 0;
on standardised data and under the paper's zero-initialised perceptron protocol the
results are within noise of the plain loss.  A gradient floor on the wrong-side samples
(value-exact too) revived F1 but not G-mean, whose slope at TP = 0 is 0; the BCE term does
not go through the metric's slope, so it works for every metric.

Because the added gradient is not the derivative of the value, a finite-difference check
of the gradient (``torch.autograd.gradcheck``, ``jax.test_util.check_grads``) needs
``rescue=0``, the paper's loss and gradient exactly.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from ._fast_paths import clip, fast_paths, shrink
from ._inputs import _prepare, _shape
from ._namespace import differentiable, get_namespace, sigmoid, stop_gradient, values_available
from ._scale import DEFAULT_SCALE
from ._types import Array, Namespace

__all__ = ["DEFAULT_RESCUE", "check_rescue", "prepared_for_rescue", "rescue_for", "rescue_slope", "rescue_term"]

#: The weight of the wrong-side BCE gradient (see the module docstring for the measurements).
DEFAULT_RESCUE = 0.1


def check_rescue(rescue: Any) -> float:
    """``rescue`` as a finite float >= 0; ``TypeError`` / ``ValueError`` naming it otherwise."""
    if isinstance(rescue, bool) or not isinstance(rescue, (int, float)):
        raise TypeError(f"rescue must be a number >= 0 (0 turns the rescue gradient off), got {rescue!r}")
    value = float(rescue)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"rescue must be finite and >= 0 (0 turns the rescue gradient off), got {rescue!r}")
    return value


def rescue_slope(y: Array, z: Array, w: Array | None, *, rescue: float, from_logits: bool,
                 xp: Namespace, total: Array | None = None, prob: Array | None = None) -> Array:
    """``rescue * g``, the per-sample gradient the rescue adds (a constant: no gradient flows through it).

    ``y``, ``z`` (logits or probabilities) and ``w`` are the flattened, checked arrays
    of the counts, in the compute dtype; infinite logits give finite values.  ``total`` replaces
    the batch's total weight ``sum(w)``: under data parallelism with gradients averaged
    over ``R`` workers it is the global total over ``R``, which makes the averaged
    gradient that of the global batch also for shards of unequal size.  ``prob`` is
    ``sigmoid(z)`` when the caller has it already (the counts' pullback does): it is
    used instead of computing the sigmoid again.
    """
    y, z = stop_gradient(y, xp), stop_gradient(z, xp)
    if w is not None:
        w = stop_gradient(w, xp)
    if total is not None:
        total = stop_gradient(total, xp)
    return _slope(y, z, w, rescue=rescue, from_logits=from_logits, xp=xp, total=total,
                  prob=None if prob is None else stop_gradient(prob, xp))


def _slope(y: Array, z: Array, w: Array | None, *, rescue: float, from_logits: bool, xp: Namespace,
           total: Array | None = None, prob: Array | None = None) -> Array:
    """:func:`rescue_slope` of arrays that are constants already (the counts' pullback runs outside autodiff)."""
    slope, factor = _slope_and_factor(y, z, w, rescue=rescue, from_logits=from_logits, xp=xp, total=total, prob=prob)
    return slope if factor == 1.0 else fast_paths(xp).scale_temporary(slope, factor, xp)


def _unweighted_scale(rescue: float, z: Array) -> float | None:
    """``rescue / n``, the rescue slope's scale for an unweighted batch of ``n`` samples, as a Python float; ``None``
    while ``n`` is unknown (a symbolic batch axis being traced): then the scale is divided by a sum of ones."""
    n = _shape(z)[0]  # None for a symbolic size too: int() of a torch.SymInt would fix the size a trace holds for
    return None if n is None else rescue / max(n, 1)


def _slope_and_factor(y: Array, z: Array, w: Array | None, *, rescue: float, from_logits: bool, xp: Namespace,
                      total: Array | None = None, prob: Array | None = None) -> tuple[Array, float]:
    """:func:`_slope` as a temporary array and a Python factor to multiply it by, so that a caller adding it to
    a gradient does the scaling in the same pass (``FastPaths.add_scaled_temporary``)."""
    fast = fast_paths(xp)  # every step below updates a temporary made here
    # A sample is misclassified exactly when its prediction is more than 1/2 from its label: |sigmoid(z) - y| >
    # 1/2 (z < 0 for a positive, z > 0 for a negative).  sigmoid(z) - y is also BCE's gradient for a logit, so
    # one shrink of it is the whole slope (a single kernel in torch); infinite logits give finite values.
    if from_logits:
        p = sigmoid(z, xp) if prob is None else prob
        slope = fast.shrink_temporary(p - y, 0.5, xp)
    else:
        # d BCE / d p.  The floor bounds it by 1,000 (finite in float16, whose largest number is 65,504, also
        # for p of exactly 0 or 1); it only weakens the rescue where the model's own sigmoid is flat anyway
        # (p (1 - p) < 1e-3, |z| > 6.9), which no loss can revive.
        slope = shrink(z - y, 0.5, xp) / clip(z * (1.0 - z), 1e-3, None, xp)
    factor = _unweighted_scale(rescue, z) if w is None and total is None else None
    if factor is not None:
        return slope, factor  # a Python scale: no reduction, no extra array
    if w is None:  # n unknown until run time (a traced batch axis), or a total given: no array of ones
        total = fast.sample_count(z, xp) if total is None else total
    else:
        total = xp.sum(w) if total is None else total
        slope = fast.multiply_temporary(slope, w, xp)
    return fast.multiply_temporary(slope, rescue / xp.where(total > 0, total, xp.ones_like(total)), xp), 1.0


def rescue_term(y: Array, z: Array, w: Array | None, *, rescue: float, from_logits: bool, xp: Namespace,
                total: Array | None = None) -> Array:
    """``sum(sg[rescue * g] * (z - sg[z]))``: 0 in value, ``rescue * g`` in gradient (see the module docstring).

    Returns a Python ``0.0`` when there is nothing to add (``rescue == 0``, or a
    namespace without autodiff).
    """
    if rescue == 0.0 or not differentiable(xp):
        return 0.0
    slope = rescue_slope(y, z, w, rescue=rescue, from_logits=from_logits, xp=xp, total=total)
    return fast_paths(xp).zero_with_gradient(z, slope, xp)


#: A batch is stuck when this share of its samples has a vanishing gradient, some of them misclassified.
STUCK_SHARE = 0.99
_stuck = {"calls": 0, "warned": False}


def _check_due() -> bool:
    # The first 16 calls of the process, then calls 32, 64, 128, ...: a model that starts
    # stuck is caught at once, one that gets stuck later soon enough, and a long run
    # pays for a logarithmic number of checks.
    if _stuck["warned"]:
        return False
    _stuck["calls"] += 1
    calls = _stuck["calls"]
    return calls <= 16 or calls & (calls - 1) == 0


def _warn_if_stuck(y: Array, z: Array, *, rescue: float, from_logits: bool, scale: float, xp: Namespace) -> None:
    """Warn once per process when nearly every sample's gradient vanishes and some of them are wrong.

    Checked only where the values are concrete and cheap to read (a CPU, no tracing),
    and only for the paper's approximation: a sample's gradient vanishes when
    ``scale * |p - 1/2| > 14`` (``A (1 - A) < 1e-6``), unless the rescue gradient
    reaches it; with probabilities as input it cannot when the user's own sigmoid is
    flat (``p (1 - p) < 1e-7``).
    """
    if rescue > 0.0 and from_logits:
        return  # every misclassified sample has the rescue gradient
    if not (values_available(z, xp) and values_available(y, xp)):
        return
    p = sigmoid(z, xp) if from_logits else z
    flat = (p * (1.0 - p) < 1e-7) if rescue > 0.0 else (scale * xp.abs(p - 0.5) > 14.0)
    wrong = xp.where(y > 0.5, p < 0.5, p > 0.5)
    n = int(p.shape[0]) if p.shape[0] is not None else 0
    if n == 0 or float(xp.sum(xp.astype(flat, p.dtype))) < STUCK_SHARE * n:
        return
    stuck_wrong = int(float(xp.sum(xp.astype(flat & wrong, p.dtype))))
    if stuck_wrong == 0:
        return
    _stuck["warned"] = True
    remedy = ("pass logits (from_logits=True, a linear output layer) so that the rescue gradient can reach them"
              if not from_logits else "keep the rescue gradient on (rescue=0.1, the default)")
    warnings.warn(
        f"AnyLoss: the gradient vanishes for nearly every sample of this batch ({stuck_wrong} of {n} samples are "
        f"misclassified with saturated predictions), so training is stuck. Standardise the input features, "
        f"{remedy}, or lower scale; see the training how-to. (Warned once per process.)",
        UserWarning,
        stacklevel=4,
    )


def prepared_for_rescue(y_true: Array, y_pred: Array, sample_weight: Array | None = None, *, rescue: float,
                        from_logits: bool, scale: float = DEFAULT_SCALE, approximation: Any = "anyloss",
                        xp: Namespace | None = None, watch: bool = True,
                        arrays: bool = True) -> tuple[Array, Array, Array | None, Namespace] | None:
    """``(y, z, w, xp)`` flattened and cast as the counts are, when the rescue applies (else ``None``).

    Every binary loss of the adapters passes here, so it is also where a stuck batch is
    detected (:func:`_warn_if_stuck`, a few calls per process; ``watch=False`` skips it,
    for a region traced without side effects).  ``arrays=False`` does the watch only and
    returns ``None``: for a caller whose pullback adds the rescue slope itself
    (``soft_confusion_with_pullback(..., rescue=...)``), which then needs no second
    flattening of the arguments.
    """
    # Every misclassified sample has the rescue gradient with logits and rescue > 0: nothing to watch.  Values
    # must be readable before the call counter moves: under torch.compile a counter read while tracing becomes a
    # guard, and each call would recompile.
    check = watch and approximation == "anyloss" and not (rescue > 0.0 and from_logits) \
        and values_available(y_pred, get_namespace(y_pred, xp=xp)) and _check_due()
    if (rescue == 0.0 or not arrays) and not check:
        return None
    # The counts' own flattening and casting; the values were checked there.
    y, z, w, xp = _prepare(y_true, y_pred, sample_weight, from_logits=from_logits, validate=False, xp=xp)
    if not differentiable(xp):
        return None
    if check:
        _warn_if_stuck(y, z, rescue=rescue, from_logits=from_logits, scale=scale, xp=xp)
    return (y, z, w, xp) if rescue and arrays else None


def rescue_for(y_true: Array, y_pred: Array, sample_weight: Array | None = None, *, rescue: float,
               from_logits: bool, scale: float = DEFAULT_SCALE, approximation: Any = "anyloss",
               xp: Namespace | None = None) -> Array:
    """:func:`rescue_term` of the raw arguments of a binary loss (``0.0`` when it does not apply)."""
    prepared = prepared_for_rescue(y_true, y_pred, sample_weight, rescue=rescue, from_logits=from_logits,
                                   scale=scale, approximation=approximation, xp=xp)
    if prepared is None:
        return 0.0
    y, z, w, xp = prepared
    return rescue_term(y, z, w, rescue=rescue, from_logits=from_logits, xp=xp)
