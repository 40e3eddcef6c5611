"""Per-backend fast paths: the Array API form by default, a framework's native form where an adapter gives one.

A handful of steps of the core have a faster native form in some framework: updating
an array the caller owns instead of allocating a new one, a BLAS dot product for a
count, a fused value check.  The core spells each of them as a method of a
:class:`FastPaths` object and calls it through ``fast_paths(xp)``::

    fast = fast_paths(xp)
    yh = fast.sigmoid_of_temporary(fast.scaled_difference(p, 0.5, scale, xp), xp)

The methods of :class:`FastPaths` itself are plain Array API expressions, out of
place, so the math reads the same for every namespace.  An adapter registers a
subclass for its namespaces with :func:`register_fast_paths` when it is imported
(``anyloss_torch`` does, in ``anyloss_torch._fast_paths``); a subclass must return
the same values as the defaults up to rounding (one fused operation where the default
rounds twice), only faster.  The models are einops' per-framework
backend classes and array-api-extra's native-fast-path-then-fallback.

Methods named ``*_temporary`` (and ``times_one_minus``) take as first argument an
array the caller created and will not read again: a subclass may update it in
place and return it.

Examples:
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> fast = fast_paths(xp)
    >>> type(fast).__name__
    'FastPaths'
    >>> fast.times_one_minus(np.array([2.0, 4.0]), np.array([0.5, 0.25]), xp).tolist()
    [1.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._namespace import class_range, sigmoid, stop_gradient
from ._types import Array, Namespace

__all__ = ["FRESH_PAGES_BYTES", "FastPaths", "fast_paths", "fills_fresh_pages", "register_fast_paths"]


class FastPaths:
    """The core's replaceable steps, each as its Array API definition (the default for every namespace).

    Stateless: no instance ``__dict__`` (``__slots__ = ()``, which a subclass may repeat), so a method is
    never shadowed by an instance attribute and ``torch.compile`` need not guard, at every call, on each
    method the core looks up.
    """

    __slots__ = ()

    #: Whether the binary soft counts are taken as two products with the predictions, TP = w y . yh and
    #: FP = w (1 - y) . yh, with FN and TN by differences from the label sums, instead of four products with
    #: ``1 - y`` and ``1 - yh``: no ``1 - yh`` array, and two reductions over the predictions instead of four;
    #: the same counts up to rounding (each sample's derivative of each count is still exactly 0 or +-w).
    counts_from_label_sums: bool = False
    #: With :attr:`counts_from_label_sums`, whether FP is ``sum(w yh) - TP`` rather than ``w (1 - y) . yh``: a
    #: plain sum where a compiler reduces it in the same pass (XLA).  Each sample's derivative of FP is then a
    #: difference, exact only because the metrics give an absent class's counts a zero derivative
    #: (:func:`anyloss_core.ratio`); and without negatives FP is 0 only if both sums round alike.
    false_positives_by_difference: bool = False

    def sigmoid_of_temporary(self, x: Array, xp: Namespace) -> Array:
        """``sigmoid(x)``."""
        return sigmoid(x, xp)

    def scale_temporary(self, x: Array, scale: float, xp: Namespace) -> Array:
        """``x * scale``."""
        return x * scale

    def scaled_difference(self, x: Array, shift: float, scale: float, xp: Namespace) -> Array:
        """``(x - shift) * scale`` as a new array (the amplifier's argument; ``x`` is not a temporary)."""
        return self.scale_temporary(x - shift, scale, xp)

    def scaled_plus(self, x: Array, scale: Array | float, offset: Array | float, xp: Namespace) -> Array:
        """``x * scale + offset`` as a new array (the pullback's per-sample start; ``x`` is not a temporary)."""
        return self.add_temporary(x * scale, offset, xp)

    def multiply_temporary(self, x: Array, factor: Array | float, xp: Namespace) -> Array:
        """``x * factor``."""
        return x * factor

    def add_temporary(self, x: Array, term: Array | float, xp: Namespace) -> Array:
        """``x + term``."""
        return x + term

    def add_scaled_temporary(self, x: Array, term: Array, factor: Array | float, xp: Namespace) -> Array:
        """``x + factor * term`` (``term`` is a temporary too; ``factor`` a Python float or a 0-d array)."""
        return x + term if isinstance(factor, (int, float)) and factor == 1.0 else x + term * factor

    def times_one_minus(self, x: Array, p: Array, xp: Namespace) -> Array:
        """``x * (1 - p)``."""
        return x * (1.0 - p)

    def times_sigmoid_slope(self, x: Array, s: Array, xp: Namespace) -> Array:
        """``x * s * (1 - s)``: ``x`` times the slope of a sigmoid whose output is ``s`` (the chain rule through
        it; in torch one kernel, ``sigmoid_backward``)."""
        return x * s * (1.0 - s)

    def dot(self, a: Array, b: Array, xp: Namespace) -> Array:
        """``sum(a * b)`` of two 1-D arrays, as a 0-d array (XLA fuses it into one pass, NumPy sums pairwise)."""
        return xp.sum(a * b)

    def sample_count(self, x: Array, xp: Namespace) -> Array:
        """The number of elements of 1-D ``x`` as a 0-d array of its dtype, for a length unknown until run time
        (a batch axis traced as ``None``).  By default a sum of ones, which outside XLA's fusion is an n-element
        temporary; a framework that can read the size at run time does without it."""
        return xp.sum(xp.ones_like(x))

    def take_by_row(self, x: Array, ids: Array, xp: Namespace) -> Array:
        """``x[i, ids[i]]`` ``(n,)`` of an ``(n, C)`` array, for ``(n,)`` integer ids in ``[0, C)`` (each row's
        true-class probability).  The Array API's ``take_along_axis`` also handles negative ids, which these
        never are; a fast path may leave that out (array-api-compat spells it as three more torch kernels)."""
        return xp.take_along_axis(x, ids[:, None], axis=1)[:, 0]

    def take(self, x: Array, ids: Array, xp: Namespace) -> Array:
        """``x[ids]`` of a 1-D array, for integer ids in ``[0, len(x))`` (as :meth:`take_by_row`)."""
        return xp.take(x, ids, axis=0)

    def scatters_in_place(self, x: Array, xp: Namespace) -> bool:
        """Whether :meth:`add_by_row_temporary` writes its n values into a temporary like ``x`` in place.  If it
        does, the multi-class backward adds each row's class term that way; if not, it spells that term as a
        ``where`` over the one-hot inside its one pass, which a compiler fuses (added afterwards, the where made
        the torch.compile step 1.55x-1.62x cross-entropy, against 1.47x; docs/performance.md)."""
        return False

    def add_by_row_temporary(self, x: Array, ids: Array, values: Array, xp: Namespace) -> Array:
        """``x`` ``(n, C)`` with ``values[i]`` added at ``x[i, ids[i]]``, for ``(n,)`` ids in ``[0, C)``.  The
        Array API has no scatter-add: a ``where`` over the one-hot mask (an eager framework's scatter-add writes
        n values instead, see :meth:`scatters_in_place`)."""
        ids, classes = class_range(ids, x.shape[1], xp)
        return x + xp.where(ids[:, None] == classes[None, :], values[:, None], xp.zeros_like(x))

    def floats(self, values: Sequence[Array | float], xp: Namespace) -> list[float]:
        """``values`` (0-d arrays or Python numbers) as Python floats: ``float`` of each (a fast path on an
        accelerator reads them in one copy, one wait for the device instead of one per value)."""
        return [float(v) for v in values]

    def dot_of_one_minus(self, y: Array, a: Array, xp: Namespace) -> Array:
        """``dot(1 - y, a)``: the negatives' count FP (a fast path may avoid the n-element ``1 - y``)."""
        return self.dot(1.0 - y, a, xp)

    def add_scaled_shrunk_difference(self, x: Array, a: Array, b: Array, threshold: float,
                                     factor: Array | float, xp: Namespace) -> Array:
        """``x + factor * shrink(a - b, threshold)`` for a temporary ``x`` (the rescue slope added to a gradient;
        a fast path may avoid the n-element difference)."""
        return self.add_scaled_temporary(x, self.shrink_temporary(a - b, threshold, xp), factor, xp)

    def zero_with_gradient(self, x: Array, slope: Array, xp: Namespace) -> Array:
        """A 0-d zero whose gradient with respect to ``x`` is ``slope``: ``sum(slope * (x - sg[x]))``.

        ``slope`` is a constant of ``x``'s shape (no gradient flows through it).  In this form
        non-finite entries of ``x`` are read as 0 (``inf - inf`` would make the value NaN), so
        their gradient is 0, not ``slope``.  It also computes the product and its sum in the
        forward pass, all to get a 0.  A framework with custom gradients gives the 0 and defers
        ``slope`` to the backward pass (torch, JAX: their gradient is ``slope`` everywhere, except
        that torch takes this form under ``torch.compile`` with a ``torch.func`` transform), so
        that a compiler can leave the forward pass without it.
        """
        finite = xp.where(xp.isfinite(x), x, xp.zeros_like(x))
        return xp.sum(slope * (finite - stop_gradient(finite, xp)))

    def clip(self, x: Array, lo: float | None, hi: float | None, xp: Namespace) -> Array:
        """``clip(x, lo, hi)`` with Python-scalar bounds; either bound may be ``None``."""
        return xp.clip(x, lo, hi)

    def shrink(self, x: Array, threshold: float, xp: Namespace) -> Array:
        """``x`` where ``|x| > threshold``, else 0."""
        return xp.where(xp.abs(x) > threshold, x, xp.zeros_like(x))

    def shrink_temporary(self, x: Array, threshold: float, xp: Namespace) -> Array:
        """:meth:`shrink` of a temporary."""
        return self.shrink(x, threshold, xp)

    def all_binary(self, y: Array, xp: Namespace) -> bool:
        """Whether every label is 0 or 1; False for NaN and infinities."""
        return bool(xp.all((y == 0) | (y == 1)))

    def all_in_unit_interval(self, p: Array, xp: Namespace) -> bool:
        """Whether ``0 <= p <= 1`` everywhere; False for NaN."""
        return bool(xp.all((p >= 0) & (p <= 1)))

    def all_non_negative(self, w: Array, xp: Namespace) -> bool:
        """Whether ``w >= 0`` everywhere; False for NaN."""
        return bool(xp.all(w >= 0))


_DEFAULT = FastPaths()

#: From this many bytes an n-element temporary costs fresh pages at every step on a CPU: glibc serves an allocation
#: above its largest mmap threshold (32 MiB on 64-bit Linux) with a new mapping, and every first write to one of
#: its pages faults; below it, a freed block is reused.  A compiled step that saves an array for its backward pass
#: should recompute it instead from this size (``anyloss_torch``'s compiled-CPU checkpoint,
#: ``anyloss_jax``'s binary gradient), and keep it below.
FRESH_PAGES_BYTES = 32 << 20


def fills_fresh_pages(count: Any, itemsize: int) -> Any:
    """Whether ``count`` elements of ``itemsize`` bytes, as the counts compute them (in at least float32), take
    :data:`FRESH_PAGES_BYTES` or more.  ``count`` may be symbolic (torch's dynamic shapes): the answer is then
    symbolic too, and the caller's branch on it a guard."""
    return count * max(itemsize, 4) >= FRESH_PAGES_BYTES

#: ``(is_namespace, hooks)`` pairs, latest registration first.
_REGISTERED: list[tuple[Callable[[Namespace], bool], FastPaths]] = []


def register_fast_paths(is_namespace: Callable[[Namespace], bool], hooks: FastPaths) -> None:
    """Use ``hooks`` for every namespace ``xp`` with ``is_namespace(xp)`` true (a later registration wins).

    ``is_namespace`` runs on every loss call: keep it a plain, cheap test (a name
    comparison; ``torch.compile`` traces it).  Registering the same ``hooks`` object
    again replaces its earlier entry, so an adapter module may be reloaded.
    """
    if not isinstance(hooks, FastPaths):
        raise TypeError(f"hooks must be a FastPaths instance, got {type(hooks).__name__}")
    if not callable(is_namespace):
        raise TypeError(f"is_namespace must be callable as is_namespace(xp), got {type(is_namespace).__name__}")
    _REGISTERED[:] = [(test, h) for test, h in _REGISTERED if h is not hooks]
    _REGISTERED.insert(0, (is_namespace, hooks))


def fast_paths(xp: Namespace) -> FastPaths:
    """The fast paths registered for ``xp``, else the Array API defaults (:class:`FastPaths`)."""
    for is_namespace, hooks in _REGISTERED:
        if is_namespace(xp):
            return hooks
    return _DEFAULT


# Module-level forms of the steps the math calls one at a time (a metric's clip, a count's dot).


def row_count(x: Array, xp: Namespace) -> Array | float:
    """The length of ``x``'s first axis: a Python float where the shape is known (no kernel), else
    :meth:`FastPaths.sample_count` of its first column (a batch axis unknown until run time)."""
    n = x.shape[0]
    if isinstance(n, int):
        return float(n)
    return fast_paths(xp).sample_count(x if len(x.shape) == 1 else x[:, 0], xp)


def clip(x: Array, lo: float | None, hi: float | None, xp: Namespace) -> Array:
    """``clip(x, lo, hi)`` with Python-scalar bounds (``FastPaths.clip`` of ``xp``)."""
    return fast_paths(xp).clip(x, lo, hi, xp)


def dot(a: Array, b: Array, xp: Namespace) -> Array:
    """``sum(a * b)`` of two 1-D arrays as a 0-d array (``FastPaths.dot`` of ``xp``)."""
    return fast_paths(xp).dot(a, b, xp)


def shrink(x: Array, threshold: float, xp: Namespace) -> Array:
    """``x`` where ``|x| > threshold``, else 0 (``FastPaths.shrink`` of ``xp``)."""
    return fast_paths(xp).shrink(x, threshold, xp)
