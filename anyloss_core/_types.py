"""Type aliases for the signatures of the core.

The Python Array API standard describes arrays and namespaces by behaviour, and
there is no static array type yet that NumPy, array-api-strict, PyTorch, JAX and
``keras.ops`` all satisfy (the standard's ``array-api-typing`` package is still
in its early days).  So an array and a namespace are both ``Any`` to a type
checker; the aliases only tell a reader which is which.
"""

from __future__ import annotations

from typing import Any, TypeAlias

__all__ = ["Array", "Namespace"]

#: An array of any Array API namespace (NumPy, array-api-strict, torch, jax, keras.ops, ...).
Array: TypeAlias = Any

#: An Array API namespace, as returned by :func:`anyloss_core.get_namespace` (the ``xp`` argument).
Namespace: TypeAlias = Any
