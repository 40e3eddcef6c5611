"""Pure functions over ``anyloss_core``, with optional ``lax.psum`` of the counts."""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp

import anyloss_core as al
from anyloss_core.adapters import (
    DEFAULT_RESCUE,
    DEFAULT_SCALE,
    LossConfig,
    check_momentum,
    check_task,
    fills_fresh_pages,
    prepared_for_rescue,
    rescue_term,
    running_counts_shape,
    with_metric,
)

from . import _fast, _fast_paths  # noqa: F401  (_fast_paths registers JAX's forms with the core)
from ._multiclass import class_counts

__all__ = ["anyloss", "soft_confusion", "accuracy_loss", "f1_loss", "fbeta_loss", "gmean_loss",
           "balanced_accuracy_loss", "init_running_counts", "running_anyloss"]


def soft_confusion(
    logits: jax.Array,
    labels: jax.Array,
    *,
    from_logits: bool = True,
    scale: float = DEFAULT_SCALE,
    approximation: Any = "anyloss",
    sample_weight: jax.Array | None = None,
    validate: bool = True,
    axis_name: Hashable | None = None,
    task: str = "binary",
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> al.Confusion:
    """Soft counts of :func:`anyloss_core.soft_confusion`, summed over ``axis_name`` when given.

    Under ``shard_map`` or ``pmap`` each device holds a shard of the batch;
    ``axis_name`` makes the four counts global with one ``lax.psum`` of four scalars
    (``4 x C`` for a multi-class or multi-label task).
    """
    config, entry = _fast.entry("counts", locals(), (axis_name,))
    logits, labels, sample_weight = _arrays(logits, labels, sample_weight)
    jitted = _compiled(entry, _counts_pure, config, logits, labels, sample_weight, axis_name)
    if jitted is None:  # the core's own path, value checks included
        return _global_counts(config, logits, labels, sample_weight, axis_name)
    return jitted(logits, labels, sample_weight)


def _arrays(logits: Any, labels: Any, sample_weight: Any) -> tuple[Any, Any, Any]:
    # NumPy labels or weights beside JAX logits are common (data loaders): one namespace.
    return jnp.asarray(logits), jnp.asarray(labels), None if sample_weight is None else jnp.asarray(sample_weight)


def _compiled(entry: _fast.Entry | None, pure: Any, config: LossConfig, logits: Any, labels: Any,
              sample_weight: Any, *static: Any) -> Any:
    """How to run this call: the configuration's inner ``jit``, ``pure`` itself, or ``None`` (the core's path).

    * ``None`` where the core would check concrete values and the compiled check does not
      vouch for them: the core's own path then raises its own error (or computes the loss,
      where a cast made the values valid).
    * The configuration's inner ``jit`` (see :mod:`anyloss_jax._fast`) from the second call
      with these shapes on.
    * ``pure`` the first time (op by op, or traced by the caller's transformation).
    """
    if _fast.core_reads_values(config, logits, labels) and not _fast.values_ok(config, logits, labels,
                                                                                sample_weight):
        return None
    jitted = None if entry is None else entry.compiled(pure, (logits, labels, sample_weight), *static)
    return functools.partial(pure, config, *static) if jitted is None else jitted


def _counts_pure(config: LossConfig, axis_name: Hashable | None, logits: Any, labels: Any,
                 sample_weight: Any) -> al.Confusion:
    return _global_counts(config, logits, labels, sample_weight, axis_name)


def _global_counts(config: LossConfig, logits: Any, labels: Any, sample_weight: Any,
                   axis_name: Hashable | None) -> al.Confusion:
    logits, labels, sample_weight = _arrays(logits, labels, sample_weight)
    if config.task == "binary":
        counts = config.soft_counts(labels, logits, sample_weight)
    else:  # per-class counts: the core's closed-form backward where it applies (anyloss_jax._multiclass)
        counts = class_counts(logits, labels, sample_weight, **config.counts_options)
    if axis_name is not None:
        counts = al.Confusion(*jax.lax.psum(jnp.stack(tuple(counts)), axis_name))
    return counts


def anyloss(
    logits: jax.Array,
    labels: jax.Array,
    metric: Any = "f1",
    *,
    from_logits: bool = True,
    scale: float = DEFAULT_SCALE,
    approximation: Any = "anyloss",
    sample_weight: jax.Array | None = None,
    validate: bool = True,
    axis_name: Hashable | None = None,
    task: str = "binary",
    average: str = "macro",
    num_classes: int | None = None,
    ignore_index: int | None = None,
    rescue: float = DEFAULT_RESCUE,
    **metric_params: Any,
) -> jax.Array:
    r"""AnyLoss ``1 - metric(soft counts)`` of ``logits`` against 0/1 ``labels``.

    See :func:`anyloss_core.anyloss` for the formula and the arguments; here the
    order is optax's ``(logits, labels)`` and ``from_logits=True`` by default.
    Returns a scalar (float32, or float64 for float64 inputs).  ``axis_name``
    sums the counts over a mapped axis (``shard_map``, ``pmap``), making the loss
    that of the global batch.  ``task="multiclass"`` (``(n, C)`` logits, integer
    labels or one-hot) and ``"multilabel"`` take ``average``, ``num_classes`` and
    ``ignore_index`` as in :func:`anyloss_core.anyloss`.  ``rescue`` (0.1) gives
    samples on the wrong side of the threshold a small binary-cross-entropy gradient,
    the value unchanged, so confidently wrong samples still train; ``rescue=0`` is
    the paper's gradient exactly (and what ``jax.test_util.check_grads`` needs).

    Speed: called outside ``jit``, a configuration's arithmetic runs as one cached inner
    ``jit`` from its second call with the same shapes (:mod:`anyloss_jax._fast`).

    Examples:
        >>> import jax, jax.numpy as jnp, anyloss_jax
        >>> logits, labels = jnp.array([-2.0, 1.5, -0.5, 3.0]), jnp.array([0, 1, 1, 1])
        >>> loss, grads = jax.jit(jax.value_and_grad(anyloss_jax.anyloss), static_argnums=2)(
        ...     logits, labels, "balanced_accuracy")
        >>> round(float(loss), 2)
        0.17
    """
    config, entry = _fast.entry("anyloss", locals(), (axis_name,))
    return configured_loss(config, entry, logits, labels, sample_weight, axis_name)


def configured_loss(config: LossConfig, entry: _fast.Entry | None, logits: Any, labels: Any, sample_weight: Any,
                    axis_name: Hashable | None) -> Any:
    """:func:`anyloss` for a configuration and its cache entry (:func:`anyloss_jax._fast.entry`)."""
    logits, labels, sample_weight = _arrays(logits, labels, sample_weight)
    run = _compiled(entry, _loss_pure, config, logits, labels, sample_weight, axis_name)
    if run is None:  # the core's own path, value checks included
        counts = _global_counts(config, logits, labels, sample_weight, axis_name)
        return config.loss_from_counts(counts) + _rescue(config, logits, labels, sample_weight, axis_name)
    _watch(config, logits, labels, sample_weight)
    return run(logits, labels, sample_weight)


def _loss_pure(config: LossConfig, axis_name: Hashable | None, logits: Any, labels: Any,
               sample_weight: Any) -> Any:
    """:func:`anyloss` of arrays whose values need no check (the stuck-batch watch is the caller's)."""
    counts, rescue = _counts_and_rescue(config, axis_name, logits, labels, sample_weight)
    return config.loss_from_counts(counts) + rescue


def _counts_and_rescue(config: LossConfig, axis_name: Hashable | None, logits: Any, labels: Any,
                       sample_weight: Any) -> tuple[al.Confusion, Any]:
    """The counts of the (global) batch and the rescue term; a single-device binary task through
    :func:`_binary_terms`."""
    if config.task == "binary" and axis_name is None:
        return _binary_terms(config, logits, labels, sample_weight)
    counts = _global_counts(config, logits, labels, sample_weight, axis_name)
    return counts, _rescue(config, logits, labels, sample_weight, axis_name, watch=False)


def _binary_terms(config: LossConfig, logits: Any, labels: Any, sample_weight: Any) -> tuple[al.Confusion, Any]:
    """The binary counts and the rescue term; on a CPU from 32 MiB of logits differentiated with only the
    approximation's sigmoid kept.

    Plain ``jax.grad`` keeps both sigmoids, ``p = sigmoid(z)`` and ``A(p)``, for the backward
    pass, and XLA writes each as an n-element array (its CPU reductions cannot fuse an
    ``exp``): ``p`` into the gradient's buffer, ``A`` into a temporary.  On a CPU a buffer
    of :data:`~anyloss_core.adapters.FRESH_PAGES_BYTES` (32 MiB, n > 8.4e6 in float32) or
    more is fresh pages at every call, whose faults cost about as much as a sigmoid pass.
    There, under ``jax.checkpoint``, the backward pass keeps ``A`` only (named for
    :data:`anyloss_jax._fast_paths.KEEPS_SIGMOID`) and recomputes ``p`` from the logits in
    its own fused loop: the forward pass is one loop ``z -> A`` and the reductions, the
    backward pass one loop that writes the gradient over ``A``'s buffer
    (``memory_analysis().temp_size_in_bytes``: n floats -> 0 for ``(n,)`` logits, 2n -> n
    for ``(n, 1)``, whose gradient XLA writes through a reshape; 3 ``exp`` per sample
    instead of 2).  Below that size glibc reuses the freed blocks, and the saved ``p``
    is cheaper than its ``exp``: plain ``jax.grad`` measured 0.86x-0.95x optax's BCE step
    at n = 1e5 and 0.52x-0.56x at 1e6 against 1.18x-1.23x and 0.77x-0.84x with the
    checkpoint (``benchmarks/jax_gradient_forms.py``, ``docs/performance.md``, fifteenth
    round), the same rule as ``torch.compile``'s on a CPU.  On an accelerator the checkpoint
    is kept at every size (what the GPU rounds measured).  The same expressions either way:
    values equal, gradients equal up to float32 rounding.
    """

    def terms(logits: Any, labels: Any, sample_weight: Any) -> tuple[al.Confusion, Any]:
        counts = _global_counts(config, logits, labels, sample_weight, None)
        return counts, _rescue(config, logits, labels, sample_weight, None, watch=False)

    if not _keeps_one_sigmoid(logits):
        return terms(logits, labels, sample_weight)
    return jax.checkpoint(terms, policy=_fast_paths.KEEPS_SIGMOID)(  # type: ignore[no-any-return]
        logits, labels, sample_weight)


def _keeps_one_sigmoid(logits: Any) -> bool:
    """Whether :func:`_binary_terms` differentiates under the checkpoint: off a CPU, or from
    ``FRESH_PAGES_BYTES`` of logits in the compute dtype (at least float32).

    Read once per trace, from the default backend and the traced shape.  Either answer gives
    the same values; a wrong one costs only speed.  It can be wrong where the traced shape is
    not the buffer's (under ``vmap`` one example's shape, smaller; under a sharded ``jit`` the
    global batch, larger than each device's share) or the platform not the default one
    (``jax.export`` for another platform, arrays committed to a non-default device).  A
    symbolic size (``jax.export`` with a symbolic batch) keeps the checkpoint."""
    if jax.default_backend() != "cpu":
        return True
    size = math.prod(logits.shape)
    if not isinstance(size, int):
        return True
    return bool(fills_fresh_pages(size, jnp.dtype(logits.dtype).itemsize))


def _watch(config: LossConfig, logits: Any, labels: Any, sample_weight: Any) -> None:
    """The rescue's stuck-batch watch on the call's own (concrete) arrays, outside the inner ``jit``."""
    if config.task == "binary":
        prepared_for_rescue(labels, logits, sample_weight, rescue=config.rescue, from_logits=config.from_logits,
                            scale=config.scale, approximation=config.approximation, arrays=False)


def _rescue(config: LossConfig, logits: Any, labels: Any, sample_weight: Any, axis_name: Hashable | None,
            *, watch: bool = True) -> Any:
    """A term of value 0 whose gradient revives confidently wrong samples (:mod:`anyloss_core._rescue`).

    With ``axis_name`` the term is that of the global batch: normalised by the total
    weight of all shards and summed over them, so it is replicated like the loss.
    """
    if config.task != "binary":
        return 0.0
    weight = None if sample_weight is None else jnp.asarray(sample_weight)
    rescue, from_logits = config.rescue, config.from_logits
    prepared = prepared_for_rescue(jnp.asarray(labels), jnp.asarray(logits), weight, rescue=rescue,
                                   from_logits=from_logits, scale=config.scale, approximation=config.approximation,
                                   watch=watch)
    if prepared is None:
        return 0.0
    y, z, w, xp = prepared
    if axis_name is None:
        return rescue_term(y, z, w, rescue=rescue, from_logits=from_logits, xp=xp)
    total = jax.lax.psum(jnp.sum(w) if w is not None else jnp.asarray(z.shape[0], z.dtype), axis_name)
    return jax.lax.psum(rescue_term(y, z, w, rescue=rescue, from_logits=from_logits, xp=xp, total=total), axis_name)


def init_running_counts(num_classes: int | None = None, *, task: str = "binary", dtype: Any = jnp.float32) -> jax.Array:
    """An empty state for :func:`running_anyloss`: zeros of shape ``(4,)``, or ``(num_classes, 4)`` per class.

    The order is tn, fn, fp, tp (as fractions once filled); the first batch fills an
    empty state.

    Examples:
        >>> import anyloss_jax
        >>> anyloss_jax.init_running_counts().shape, anyloss_jax.init_running_counts(3, task="multiclass").shape
        ((4,), (3, 4))
    """
    check_task(task)
    if task == "binary" and num_classes is not None:
        raise ValueError(f"num_classes={num_classes} is for task='multiclass' or 'multilabel'; the binary state "
                         "is (4,)")
    return jnp.zeros(running_counts_shape(task, num_classes), dtype=dtype)


def running_anyloss(
    logits: jax.Array,
    labels: jax.Array,
    state: jax.Array,
    metric: Any = "f1",
    *,
    momentum: float,
    from_logits: bool = True,
    scale: float = DEFAULT_SCALE,
    approximation: Any = "anyloss",
    sample_weight: jax.Array | None = None,
    validate: bool = True,
    axis_name: Hashable | None = None,
    task: str = "binary",
    average: str = "macro",
    num_classes: int | None = None,
    ignore_index: int | None = None,
    rescue: float = DEFAULT_RESCUE,
    **metric_params: Any,
) -> tuple[jax.Array, jax.Array]:
    r"""AnyLoss at running counts, for mini-batches: ``(loss, new_state)``, pure.

    .. math:: u' = (1 - m)\, u + m\, c_B / n_B, \qquad
              \mathcal{L} = 1 - f(n_B u' + c_B - \mathrm{sg}[c_B])

    The state ``u`` (from :func:`init_running_counts`, then the previous call's
    ``new_state``) holds the counts tn, fn, fp, tp as fractions; ``momentum`` ``m``
    is the newest batch's weight.  The loss's value is one minus the metric at the
    running counts and its gradient that of the batch's soft counts, weighted by the
    metric's slope at the running counts (stochastic compositional optimisation,
    SOX).  ``momentum=1`` is :func:`anyloss`.  ``new_state`` carries no gradient:
    thread it through ``jax.value_and_grad(..., has_aux=True)``.  With ``axis_name``
    the counts are summed over the mapped axis first, so every device computes the
    same state.  The other arguments are those of :func:`anyloss`.

    Examples:
        >>> import jax, jax.numpy as jnp, anyloss_jax
        >>> state = anyloss_jax.init_running_counts()
        >>> def loss_fn(logits, labels, state):
        ...     return anyloss_jax.running_anyloss(logits, labels, state, "f1", momentum=0.1)
        >>> step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
        >>> (loss, state), grads = step(jnp.array([-1.0, 2.0, 0.5, 0.2]), jnp.array([0, 1, 1, 0]), state)
        >>> state.round(2)  # filled by the first batch: tn, fn, fp, tp (logit 0.2 is mostly a false positive)
        Array([0.26, 0.  , 0.24, 0.5 ], dtype=float32)
    """
    check_momentum(momentum)  # a bad momentum fails before any work
    # momentum is this call's (the state is the caller's), so the configuration is that of the plain loss.
    config, entry = _fast.entry("running", {**locals(), "momentum": None}, (axis_name, float(momentum)))
    logits, labels, sample_weight = _arrays(logits, labels, sample_weight)
    run = _compiled(entry, _running_pure, config, logits, labels, sample_weight, axis_name, momentum)
    if run is not None:
        _watch(config, logits, labels, sample_weight)
        return run(logits, labels, jnp.asarray(state), sample_weight)
    # The core's own path, value checks included.
    counts = _global_counts(config, logits, labels, sample_weight, axis_name)
    loss, new_state = config.running_loss_from_counts(counts, jnp.asarray(state), momentum=momentum,
                                                      stop_gradient=jax.lax.stop_gradient)
    return loss + _rescue(config, logits, labels, sample_weight, axis_name), new_state


def _running_pure(config: LossConfig, axis_name: Hashable | None, momentum: float, logits: Any, labels: Any,
                  state: Any, sample_weight: Any) -> tuple[Any, Any]:
    """:func:`running_anyloss` of arrays whose values need no check (the stuck-batch watch is the caller's)."""
    counts, rescue = _counts_and_rescue(config, axis_name, logits, labels, sample_weight)
    loss, new_state = config.running_loss_from_counts(counts, state, momentum=momentum,
                                                      stop_gradient=jax.lax.stop_gradient)
    return loss + rescue, new_state


accuracy_loss = with_metric(anyloss, "accuracy")
f1_loss = with_metric(anyloss, "f1")
gmean_loss = with_metric(anyloss, "gmean")
balanced_accuracy_loss = with_metric(anyloss, "balanced_accuracy")
fbeta_loss = with_metric(anyloss, "fbeta", beta=1.0)
