"""One compiled call per eager loss call: the pure arithmetic of a loss as a cached inner ``jax.jit``.

Outside ``jit`` (``jax.grad(anyloss_jax.f1_loss)(z, y)`` in a notebook, an eager training
loop) JAX runs every primitive of the loss as its own dispatch: some 40 of them, each
costing tens of microseconds, so one call at n = 32 took 3.7x optax's sigmoid BCE (whose
few primitives are dispatched the same way).  Here the traced part of a loss (counts,
metric, rescue term) is one ``jax.jit`` per configuration, so an eager call is a handful
of dispatches; under an outer ``jit``, ``vmap``, ``grad`` or ``shard_map`` the inner
``jit`` is simply part of the traced program (XLA inlines it), so the compiled step is
unchanged.

What needs concrete values stays outside, exactly as the core does it:

* The value checks of ``validate=True`` (labels 0/1, probabilities in [0, 1], weights
  >= 0) run where the core runs them (concrete arrays on a CPU): one compiled
  all-in-one test; when it fails, the caller takes its plain path, which raises the
  core's own error (or, where a cast makes a value valid, computes the loss).
* The stuck-batch watch of the rescue gradient
  (:func:`anyloss_core.adapters.prepared_for_rescue`) runs per call, as before.
* A metric that is not built in keeps the plain path: its value is checked on concrete
  values (:func:`anyloss_core.adapters.check_metric_value`).

A configuration is compiled on its second call with arrays of the same shapes and dtypes:
a caller who passes a new ``scale`` every call (a schedule) or a new shape (an evaluation)
pays no compilation per call, and a one-off call pays none.

Examples:
    >>> import jax, jax.numpy as jnp, anyloss_jax
    >>> z, y = jnp.array([-1.0, 2.0, 0.5, 0.2]), jnp.array([0, 1, 1, 0])
    >>> g1 = jax.grad(anyloss_jax.f1_loss)(z, y)  # first call: op by op
    >>> g2 = jax.grad(anyloss_jax.f1_loss)(z, y)  # later calls: one compiled function
    >>> bool(jnp.allclose(g1, g2))
    True
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from anyloss_core.adapters import LossConfig, check_metric_value, values_available

__all__ = ["Entry", "config_entry", "entry", "values_ok"]

#: The keywords that make a configuration (every field of LossConfig but the named classes' flag).
_FIELDS = tuple(f.name for f in dataclasses.fields(LossConfig) if f.name != "fixed_metric")

#: Configurations kept (a bound on memory for a caller who makes a new one each call).
MAX_ENTRIES = 256

#: Array signatures remembered per configuration (beyond them, a new shape stays op by op).
MAX_SIGNATURES = 64


class Entry:
    """A configuration seen before: its :class:`LossConfig`, the array signatures it was called with, its ``jit``."""

    __slots__ = ("config", "fast", "jitted", "seen")

    def __init__(self, config: LossConfig) -> None:
        self.config = config
        self.fast = _built_in_metric(config)  # a user metric's value is checked on concrete values: plain path
        self.jitted: Callable[..., Any] | None = None
        self.seen: set[Hashable] = set()

    def compiled(self, pure: Callable[..., Any], arrays: tuple[Any, ...], *static: Any) -> Callable[..., Any] | None:
        """The inner ``jit`` of ``pure(config, *static, *arrays)`` for arrays of shapes and dtypes seen before.

        ``None`` on the first call with a signature (the caller's plain path): ``jit`` compiles
        per shape, and a shape used once (an evaluation, a last short batch) is cheaper op by op.
        """
        if not self.fast:
            return None
        signature = tuple(None if a is None else (a.shape, a.dtype) for a in arrays)
        if signature not in self.seen:
            if len(self.seen) < MAX_SIGNATURES:
                self.seen.add(signature)
            return None
        if self.jitted is None:
            self.jitted = jax.jit(functools.partial(pure, self.config, *static))
        return self.jitted


_ENTRIES: dict[Hashable, Entry] = {}


def entry(kind: str, arguments: Mapping[str, Any], static: tuple[Any, ...] = ()) -> tuple[LossConfig, Entry | None]:
    """The configuration of a loss's ``locals()`` and its cache entry (``None`` when an argument is unhashable).

    ``kind`` names the function (``"anyloss"``, ``"running"``, ``"counts"``); ``static``
    holds what else its traced part depends on (``axis_name``, ``momentum``).  The
    configuration is built (and so checked) on the first call of a key only: the same
    arguments give the same configuration.
    """
    key = _key(kind, arguments, static)
    found = None if key is None else _ENTRIES.get(key)
    if found is None:
        config = LossConfig.from_arguments(arguments)  # raises for a bad argument, caching nothing
        if key is None:  # a list or dict among the metric's parameters: no cache, the plain path
            return config, None
        found = _stored(key, config)
    return found.config, found


def config_entry(kind: str, config: LossConfig, static: tuple[Any, ...] = ()) -> Entry | None:
    """The cache entry of a configuration built elsewhere (another adapter's loss), keyed as :func:`entry` keys
    its arguments; a new entry holds ``config`` itself.  ``None`` when a field is unhashable."""
    key = _key(kind, {name: getattr(config, name) for name in _FIELDS}, static)
    if key is None:
        return None
    found = _ENTRIES.get(key)
    return _stored(key, config) if found is None else found


def _key(kind: str, arguments: Mapping[str, Any], static: tuple[Any, ...]) -> Hashable | None:
    try:
        key = (kind, static, tuple((name, _frozen(arguments[name])) for name in _FIELDS if name in arguments))
        hash(key)
    except TypeError:
        return None
    return key


def _stored(key: Hashable, config: LossConfig) -> Entry:
    found = Entry(config)
    if len(_ENTRIES) >= MAX_ENTRIES:
        _ENTRIES.pop(next(iter(_ENTRIES)))  # the oldest
    _ENTRIES[key] = found
    return found


def _frozen(value: Any) -> Any:
    # metric_params is a dict; 1 and 1.0 and True hash alike but may configure differently: keep the type, also
    # of a tuple's items.  A list stays unhashable (the caller may change it): no cache.
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, tuple):
        return (tuple, tuple(_frozen(v) for v in value))
    return (type(value), value)


def _built_in_metric(config: LossConfig) -> bool:
    """Whether the core leaves the metric's value unchecked (a built-in metric), so tracing changes nothing.

    ``check_metric_value`` returns at once for a built-in metric and raises for any other
    one given an out-of-range Python number.
    """
    try:
        check_metric_value(config.metric, config.metric_fn, 2.0, jnp)
    except ValueError:
        return False
    return True


def core_reads_values(config: LossConfig, logits: Any, labels: Any) -> bool:
    """Whether the core would check data values on this call (``validate`` and both arrays concrete on a CPU)."""
    return config.validate and values_available(logits, jnp) and values_available(labels, jnp)


def values_ok(config: LossConfig, logits: jax.Array, labels: jax.Array, sample_weight: jax.Array | None) -> bool:
    """True only when the core's value checks of a binary task pass for these arrays.

    One compiled reduction instead of the core's several eager ones.  It may say False
    where the core would accept the values (a float64 label of 1 + 1e-12 becomes 1.0 in
    float32): the caller then takes the plain path, which raises the core's error or
    computes the loss, so the answer is always the core's.
    """
    if config.task != "binary":
        return False  # class-index checks: the core's own
    y = None if labels.dtype == jnp.bool_ else labels  # boolean labels are 0/1 already
    p = None if config.from_logits else logits
    if y is None and p is None and sample_weight is None:
        return True
    return bool(_all_valid(y, p, sample_weight))


@jax.jit
def _all_valid(y: Any, p: Any, w: Any) -> jax.Array:
    ok = jnp.asarray(True)
    if y is not None:
        ok &= jnp.all((y == 0) | (y == 1))
    if p is not None:
        ok &= jnp.all((p >= 0) & (p <= 1))  # False for NaN, as the core's check
    if w is not None:
        ok &= jnp.all(w >= 0)
    return ok
