"""Approximations: how a predicted probability becomes a near-label.

An approximation maps a prediction to ``(yh, 1 - yh)``: the soft "predicted
positive" value that enters the confusion counts, and its complement.  The
complement is ``1 - yh``: a second sigmoid, ``sigmoid(-x)``, would keep the
relative precision of a complement near 1e-16, but it changes each count by
less than one rounding unit per sample and costs a third of the loss step under
``jax.jit`` (0.89x against 0.75x of optax's BCE in a minimal F1 composition).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ._fast_paths import clip, fast_paths
from ._names import unknown_name
from ._namespace import sigmoid
from ._types import Array, Namespace

__all__ = [
    "Approximation",
    "DifferentiableApproximation",
    "AnyLossApproximation",
    "IdentityApproximation",
    "SolCosineApproximation",
    "APPROXIMATIONS",
    "get_approximation",
]


class Approximation(Protocol):
    """What an approximation is: a callable returning ``(yh, 1 - yh)``."""

    if TYPE_CHECKING:  # read-only for type checkers, so frozen dataclasses qualify

        @property
        def name(self) -> str: ...

    else:
        name: str

    def __call__(self, y_pred: Array, *, from_logits: bool, scale: float, xp: Namespace) -> tuple[Array, Array]: ...


class DifferentiableApproximation(Approximation, Protocol):
    r"""An approximation that also knows its derivative (for analytic backward passes).

    An approximation may also set ``sigmoid_first = True`` to declare that from
    logits it is exactly its probability form applied to :math:`\sigma(z)`; the
    pullback then computes :math:`\sigma(z)` once and reuses it in the backward.
    It may define ``decision(y_pred, *, from_logits, scale, xp)``, ``yh`` alone: the
    counts then skip the n-element ``1 - yh`` where nothing reads it (TP and FP as
    products with ``yh``, FN and TN from the label sums: ``FastPaths.counts_from_label_sums``).  With
    ``sigmoid_first`` it may define ``scale_gradient(grad, yh, yh_c, *, scale, xp, factor=True)``, ``grad``
    times :math:`dA/dp` updating ``grad``, and ``gradient_factor(scale)``, a constant factor of
    :math:`dA/dp` that ``factor=False`` leaves out for a caller that folded it into its scalars.  The pullback
    passes ``factor=False`` only where the nearest class defining either method defines both; otherwise it calls
    ``scale_gradient`` without ``factor`` (a subclass that overrides ``scale_gradient`` alone keeps that signature).
    """

    def derivative(
        self, y_pred: Array, yh: Array, yh_c: Array, *, from_logits: bool, scale: float, xp: Namespace
    ) -> Any: ...


@dataclass(frozen=True)
class AnyLossApproximation:
    r"""The paper's amplifier (eq. 1): :math:`A(p) = 1 / (1 + e^{-L (p - 1/2)})`.

    ``L`` is ``scale``.  From a logit ``z``, :math:`p = \sigma(z)` with the
    framework's own sigmoid, which cannot overflow for any finite ``z`` (``A`` is
    also :math:`\sigma(\tfrac{L}{2}\tanh(z/2))`, but ``tanh`` costs about four
    sigmoids on a CPU).

    Examples:
        >>> import numpy as np
        >>> import array_api_compat.numpy as xp
        >>> yh, yhc = AnyLossApproximation()(np.array([0.2, 0.9]), from_logits=False, scale=73.0, xp=xp)
        >>> np.round(yh, 6).tolist()
        [0.0, 1.0]
    """

    name: str = "anyloss"
    sigmoid_first: ClassVar[bool] = True  # from logits = the probability form of sigmoid(z)

    def __call__(self, y_pred: Array, *, from_logits: bool, scale: float, xp: Namespace) -> tuple[Array, Array]:
        yh = self.decision(y_pred, from_logits=from_logits, scale=scale, xp=xp)
        return yh, 1.0 - yh

    def decision(self, y_pred: Array, *, from_logits: bool, scale: float, xp: Namespace) -> Array:
        """``A(p)`` alone (``__call__`` without the complement)."""
        p = sigmoid(y_pred, xp) if from_logits else y_pred
        fast = fast_paths(xp)  # L (p - 1/2) is a fresh temporary: the sigmoid may reuse it
        return fast.sigmoid_of_temporary(fast.scaled_difference(p, 0.5, scale, xp), xp)

    def scale_gradient(self, grad: Array, yh: Array, yh_c: Array, *, scale: float, xp: Namespace,
                       factor: bool = True) -> Array:
        r"""``grad * dA/dp`` with :math:`dA/dp = L A (1 - A)`, for a ``grad`` the caller no longer needs
        (a fast path may update it in place: no n-element temporary).  ``factor=False`` leaves out the constant
        :meth:`gradient_factor` ``L``, for a caller that has folded it into the scalars ``grad`` was made from
        (one pass over the array fewer)."""
        fast = fast_paths(xp)
        grad = fast.times_sigmoid_slope(grad, yh, xp)  # yh_c is 1 - yh
        return fast.scale_temporary(grad, scale, xp) if factor else grad

    def gradient_factor(self, scale: float) -> float:
        r"""The constant factor ``L`` of :math:`dA/dp = L A (1 - A)` (see :meth:`scale_gradient`)."""
        return scale

    def derivative(
        self, y_pred: Array, yh: Array, yh_c: Array, *, from_logits: bool, scale: float, xp: Namespace
    ) -> Array:
        r""":math:`dA/dp = L A (1 - A)` (eq. 4); from a logit, times :math:`dp/dz = p (1 - p)`."""
        # Each step's input is a temporary made here, so the fast paths may reuse its
        # buffer: a backward pass on a CPU is dominated by allocating n-element buffers.
        fast = fast_paths(xp)
        d = fast.scale_temporary(yh * yh_c, scale, xp)
        if from_logits:
            p = sigmoid(y_pred, xp)
            d = fast.times_one_minus(fast.multiply_temporary(d, p, xp), p, xp)
        return d


@dataclass(frozen=True)
class IdentityApproximation:
    r"""Plain soft counts: :math:`\hat y = p` (soft-F1, SOL with a uniform threshold prior).

    ``scale`` is ignored.  From logits, :math:`p = \sigma(z)` and
    :math:`1 - p = \sigma(-z)`.
    """

    name: str = "identity"
    sigmoid_first: ClassVar[bool] = True  # from logits = the probability form of sigmoid(z)

    def __call__(self, y_pred: Array, *, from_logits: bool, scale: float, xp: Namespace) -> tuple[Array, Array]:
        if from_logits:
            p = sigmoid(y_pred, xp)
            return p, 1.0 - p
        return y_pred, 1.0 - y_pred

    def derivative(
        self, y_pred: Array, yh: Array, yh_c: Array, *, from_logits: bool, scale: float, xp: Namespace
    ) -> Array:
        r""":math:`d\sigma/dz = \sigma (1 - \sigma)` from logits, 1 from probabilities."""
        if from_logits:
            return yh * yh_c
        return xp.ones_like(y_pred)


@dataclass(frozen=True)
class SolCosineApproximation:
    r"""Score-Oriented Loss with a raised-cosine threshold prior (Marchetti et al. 2022).

    The decision threshold :math:`\tau` is a random variable with a raised-cosine
    density on :math:`[\mu - \delta, \mu + \delta]`; a prediction counts as
    positive with probability :math:`\hat y = P(\tau \le p) = F(p)`, where, with
    :math:`u = \mathrm{clip}((p - \mu)/\delta, -1, 1)`,

    .. math:: F(p) = \tfrac12 \big(1 + u + \sin(\pi u)/\pi\big).

    ``scale`` is ignored.  ``mu`` in (0, 1) and ``delta`` > 0 are validated on
    construction.
    """

    mu: float = 0.5
    delta: float = 0.1
    name: str = "sol-cosine"
    sigmoid_first: ClassVar[bool] = True  # from logits = the probability form of sigmoid(z)

    def __post_init__(self) -> None:
        if not 0.0 < self.mu < 1.0:
            raise ValueError(f"sol-cosine mu must lie in (0, 1), got {self.mu!r}")
        if not self.delta > 0.0:
            raise ValueError(f"sol-cosine delta must be > 0, got {self.delta!r}")

    def __call__(self, y_pred: Array, *, from_logits: bool, scale: float, xp: Namespace) -> tuple[Array, Array]:
        p = sigmoid(y_pred, xp) if from_logits else y_pred
        u = clip((p - self.mu) / self.delta, -1.0, 1.0, xp)
        # F' = (1 + cos(pi u)) / 2 vanishes at u = +-1, so the clip leaves F and its
        # derivative continuous.
        # sin(pi u) = -sin(pi w) with w = u + 1 (u < 0) or u - 1 (u >= 0): w is exactly 0 at
        # u = +-1, so F is exactly 0 or 1 there.  (sin(float32(pi)) is 8.7e-8, not 0: that
        # would count a spurious 1.4e-8 positive per confident negative.)
        w = xp.where(u < 0, u + 1.0, u - 1.0)
        wave = -xp.sin(math.pi * w) / math.pi
        return clip(0.5 * (1.0 + u + wave), 0.0, 1.0, xp), clip(0.5 * (1.0 - u - wave), 0.0, 1.0, xp)

    def derivative(
        self, y_pred: Array, yh: Array, yh_c: Array, *, from_logits: bool, scale: float, xp: Namespace
    ) -> Array:
        r""":math:`F'(p) = (1 + \cos(\pi u)) / (2 \delta)`, 0 outside the support (there :math:`\cos(\pi u) = -1`)."""
        p = sigmoid(y_pred, xp) if from_logits else y_pred
        u = clip((p - self.mu) / self.delta, -1.0, 1.0, xp)
        d = (1.0 + xp.cos(math.pi * u)) / (2.0 * self.delta)
        if from_logits:
            d = d * (p * (1.0 - p))
        return d


_BUILT_IN: dict[str, Callable[[], Approximation]] = {
    "anyloss": AnyLossApproximation,
    "identity": IdentityApproximation,
    "sol-cosine": SolCosineApproximation,
}

#: Names accepted by ``approximation=``.
APPROXIMATIONS: tuple[str, ...] = tuple(_BUILT_IN)
#: One instance of each (they are frozen and hold no state): resolving a name is a dictionary lookup, not a
#: dataclass construction at every loss call.
_INSTANCES: dict[str, Approximation] = {name: make() for name, make in _BUILT_IN.items()}


def get_approximation(approximation: str | Approximation) -> Approximation:
    """Resolve a name ("anyloss", "identity", "sol-cosine") or pass an object through.

    An object is anything callable as ``approx(y_pred, from_logits=..., scale=..., xp=...)``
    returning ``(yh, 1 - yh)``; use it for non-default parameters, e.g.
    ``SolCosineApproximation(mu=0.4, delta=0.2)``.
    """
    if isinstance(approximation, str):
        try:
            return _INSTANCES[approximation]
        except KeyError:
            raise unknown_name(
                "approximation", approximation, APPROXIMATIONS, also=" or pass an approximation object"
            ) from None
    if callable(approximation):
        return approximation
    raise TypeError(f"approximation must be a name or a callable, got {type(approximation).__name__}")
