"""JAX's forms of the core's replaceable steps (``anyloss_core.adapters.FastPaths``), registered on import.

* ``counts_from_prediction_sums``: the binary counts as sums of products with the
  predictions only (``TP = sum(y yh)``, ``FP = sum(yh) - TP``, ...).  Under ``jax.jit`` on a
  CPU the four dot products with ``1 - y`` and ``1 - yh`` made XLA materialise both arrays
  (and ``yh``) for its reductions; the sums over ``yh`` alone fuse into one pass.  The
  counts are the same up to the rounding of the sums.
"""

from __future__ import annotations

from typing import Any

from anyloss_core.adapters import FastPaths, register_fast_paths

__all__ = ["JaxFastPaths", "is_jax_namespace"]

_JAX_NAMESPACES = frozenset({"jax.numpy", "jax.experimental.array_api"})


def is_jax_namespace(xp: Any) -> bool:
    """Whether ``xp`` is ``jax.numpy`` (a plain name check: it runs on every loss call)."""
    return getattr(xp, "__name__", None) in _JAX_NAMESPACES


class JaxFastPaths(FastPaths):
    """The Array API defaults, with the binary counts taken from sums over the predictions."""

    counts_from_prediction_sums = True


#: The registered instance.
JAX_FAST_PATHS = JaxFastPaths()
register_fast_paths(is_jax_namespace, JAX_FAST_PATHS)
