"""The metric registry: names to formulas, their parameters, and the range check of a user's metric.

A metric is a function ``(c: Confusion, xp) -> score`` with the score in [0, 1],
higher is better; the built-in formulas and their 0/0 conventions are in
:mod:`anyloss_core._metric_formulas`.  :func:`register_metric` adds a name,
:func:`get_metric` resolves a name (or an F-beta alias ``f<beta>``) and binds its
keyword parameters, :func:`check_metric_value` keeps a user's metric honest.
"""

from __future__ import annotations

import functools
import inspect
import re
import warnings
from collections.abc import Callable
from typing import Any

from ._metric_formulas import (
    Confusion,
    Metric,
    accuracy,
    balanced_accuracy,
    f1,
    fbeta,
    gmean,
    jaccard,
    mcc,
    precision,
    ratio,
    recall,
    specificity,
    youden,
)
from ._names import name_key, unknown_name
from ._namespace import values_available
from ._types import Namespace

#: The registry's names, and the formula module's names that other modules import from here.
__all__ = ["METRICS", "Confusion", "Metric", "check_metric_value", "fbeta_alias", "get_metric", "ratio",
           "register_metric"]


def _check_beta(beta: Any) -> None:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        raise ValueError(f"fbeta needs beta > 0 (a number), got {beta!r}")


# Checks of metric parameters by parameter name, run when a metric is resolved
# (so a class constructed with a bad parameter fails at construction).
_PARAM_CHECKS: dict[str, Callable[[Any], None]] = {"beta": _check_beta}

_REGISTRY: dict[str, Metric] = {}

#: Names of the registered metrics (a live view: ``register_metric`` adds to it).
METRICS = _REGISTRY.keys()


def register_metric(name: str, fn: Metric, *, overwrite: bool = False) -> Metric:
    """Register ``fn(c, xp) -> score in [0, 1]`` under ``name``; returns ``fn``.

    After registration the name works everywhere a built-in name does:
    ``anyloss(..., metric=name)``, ``score(name, ...)``, and every adapter.

    Examples:
        >>> import anyloss_core as al
        >>> def npv(c, xp):  # negative predictive value
        ...     return al.ratio(c.tn, c.tn + c.fn, xp)
        >>> _ = al.register_metric("npv", npv)
        >>> "npv" in al.METRICS
        True
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"a metric name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"metric {name!r} must be callable as fn(confusion, xp), got {type(fn).__name__}")
    if name in _REGISTRY and not overwrite and _REGISTRY[name] is not fn:
        raise ValueError(f"metric {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = fn
    return fn


#: ``f<beta>`` (``f2``, ``f0.5``, ``f1.5``): F-beta with that beta, as the command's loss names.
_FBETA_ALIAS = re.compile(r"f((?:0|[1-9][0-9]*)(?:\.[0-9]+)?)")


def fbeta_alias(name: str) -> float | None:
    """The beta of an ``f<beta>`` metric name (``"f2"`` -> 2.0, ``"f0.5"`` -> 0.5), else ``None``.

    Registered names come first: ``"f1"`` is the registered F1 (the same metric as
    F-beta with beta 1).
    """
    match = _FBETA_ALIAS.fullmatch(name)
    return None if match is None else float(match.group(1))


def get_metric(metric: str | Metric, **params: Any) -> Metric:
    """Resolve a metric name or callable, binding its keyword parameters.

    Names are the registered ones (:data:`METRICS`, exact spelling) and the
    F-beta aliases ``f<beta>``: ``"f2"`` is ``"fbeta"`` with ``beta=2.0``,
    ``"f0.5"`` with ``beta=0.5`` (the ``anyloss`` command's loss names).  ``"fbeta"``
    itself needs ``beta=``: without it, it would silently be F1.

    Raises ``ValueError`` for an unknown name (suggesting the closest ones) and
    for ``"fbeta"`` without ``beta`` or an alias with ``beta``, and ``TypeError``
    for a parameter the metric does not take, so a typo fails when the loss is
    built, not in training.

    Examples:
        >>> import numpy as np, array_api_compat.numpy as xp
        >>> import anyloss_core as al
        >>> f2 = al.get_metric("fbeta", beta=2.0)
        >>> counts = al.Confusion(*np.array([5.0, 1.0, 2.0, 3.0]))  # tn, fn, fp, tp
        >>> float(f2(counts, xp))  # 15 / (15 + 2 + 4)
        0.7142857142857143
        >>> float(al.get_metric("f2")(counts, xp))
        0.7142857142857143
    """
    name: str | None
    if isinstance(metric, str):
        fn = _REGISTRY.get(metric)
        name = metric
        if fn is None:
            beta = fbeta_alias(metric)
            if beta is None:
                names = sorted(_REGISTRY)
                raise unknown_name(
                    "metric", metric, names, suggest=[*names, *_alias_suggestions(metric)],
                    also=", an F-beta alias f<beta> such as 'f2' or 'f0.5', a name registered with "
                    "register_metric, or a callable fn(confusion, xp)",
                )
            if "beta" in params:
                raise ValueError(
                    f"metric {metric!r} already sets beta={beta:g}; pass metric='fbeta', beta={params['beta']!r} "
                    f"or leave beta out"
                )
            fn, params = fbeta, {**params, "beta": beta}
        elif fn is fbeta and "beta" not in params:
            raise ValueError(
                f"metric {metric!r} needs beta=..., e.g. beta=2.0, or use 'f1', 'f2' or 'f0.5' "
                "(F-beta with beta 1, 2, 0.5)"
            )
    elif callable(metric):
        fn, name = metric, getattr(metric, "__name__", None)  # repr only for a message (a partial's is slow)
    else:
        raise TypeError(f"metric must be a name or a callable, got {type(metric).__name__}")
    if not params:
        return fn
    try:
        inspect.signature(fn).bind(None, None, **params)
    except TypeError:
        raise TypeError(
            f"metric {name or repr(metric)!r} does not take the parameter(s) {', '.join(sorted(params))}"
        ) from None
    except ValueError:  # builtins without a signature: let the call decide
        pass
    for key, value in params.items():
        if key in _PARAM_CHECKS:
            _PARAM_CHECKS[key](value)
    return functools.partial(fn, **params)


def _alias_suggestions(name: str) -> list[str]:
    """``name`` spelled as an F-beta alias if it is one up to case and separators ("F2", "f-0.5")."""
    key = name_key(name)
    return [key] if fbeta_alias(key) is not None else []


def _metric_name(metric: Any) -> str:
    if isinstance(metric, str):
        return metric
    base = metric.func if isinstance(metric, functools.partial) else metric
    return str(getattr(base, "__name__", repr(base)))


#: How far outside [0, 1] a user metric's value may round (a float32 ratio of equal sums).
_RANGE_TOLERANCE = 1e-5


def check_metric_value(metric: Any, fn: Metric, value: Any, xp: Namespace) -> None:
    """``ValueError`` when a user metric returns a value outside [0, 1] (or NaN).

    Checked only for metrics that are not built in (those lie in [0, 1] by
    construction, and their path stays free of the check) and only when the value
    is concrete and cheap to read (see :func:`values_available`): never under
    ``jit`` / ``torch.compile`` or on an accelerator.  ``metric`` is the metric as
    the caller gave it (for the message), ``fn`` the resolved function.
    """
    base = fn.func if isinstance(fn, functools.partial) else fn
    # By identity: under torch.compile ``base in _BUILT_IN`` guards on every function of the set at every call,
    # an ``id`` on one integer set.
    if id(base) in _BUILT_IN_IDS:
        return
    lo, hi = -_RANGE_TOLERANCE, 1.0 + _RANGE_TOLERANCE
    if type(value) in (int, float):  # a Python number (not a NumPy scalar, which the namespace decides on)
        values = [float(value)]
    elif not values_available(value, xp):
        return
    else:
        # Compared first: a comparison carries no gradient, so reading it back is
        # quiet (torch warns when a tensor that requires grad becomes a float).
        inside = (value >= lo) & (value <= hi)
        if bool(inside if len(value.shape) == 0 else xp.all(inside)):
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flat = xp.reshape(value, (-1,))
            values = [float(flat[i]) for i in range(flat.shape[0])]
    for i, v in enumerate(values):
        if not lo <= v <= hi:  # also NaN
            where = "" if len(values) == 1 else f" (class {i})"
            raise ValueError(
                f"metric {_metric_name(metric)!r} returned {v!r}{where}; a metric must lie in [0, 1], "
                "higher is better"
            )


for _name, _fn in {
    "accuracy": accuracy,
    "precision": precision,
    "recall": recall,
    "specificity": specificity,
    "fbeta": fbeta,
    "f1": f1,
    "jaccard": jaccard,
    "balanced_accuracy": balanced_accuracy,
    "gmean": gmean,
    "mcc": mcc,
    "youden": youden,
    "tss": youden,
}.items():
    register_metric(_name, _fn)
del _name, _fn

#: The built-in metric functions: their values are not range-checked.
_BUILT_IN = frozenset(_REGISTRY.values())
#: Their ids (:func:`check_metric_value` tests membership by identity); the functions live as long as the module.
_BUILT_IN_IDS = frozenset(id(fn) for fn in _BUILT_IN)


def is_built_in_metric(fn: Metric) -> bool:
    """Whether ``fn``, a resolved metric (parameters bound by ``functools.partial`` or not), is one of anyloss's
    own: a pure function of the counts and its parameters, which reads no global or state of its own."""
    base = fn.func if isinstance(fn, functools.partial) else fn
    return id(base) in _BUILT_IN_IDS
