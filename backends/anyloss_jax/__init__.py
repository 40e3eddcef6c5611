"""anyloss_jax: AnyLoss as pure JAX functions for ``jax.grad``, ``jit`` and ``vmap``.

optax conventions: ``(logits, labels)`` order, logits by default.  The functions
are pure and traceable: value checks switch off by themselves under tracing.

Examples:
    >>> import jax, jax.numpy as jnp, anyloss_jax
    >>> labels = jnp.array([0, 1, 1, 0])
    >>> grads = jax.grad(anyloss_jax.f1_loss)(jnp.array([-1.0, 2.0, 0.5, 0.2]), labels)
    >>> grads.shape
    (4,)
"""

from ._functions import (
    accuracy_loss,
    anyloss,
    balanced_accuracy_loss,
    f1_loss,
    fbeta_loss,
    gmean_loss,
    init_running_counts,
    running_anyloss,
    soft_confusion,
)

__all__ = [
    "accuracy_loss",
    "anyloss",
    "balanced_accuracy_loss",
    "f1_loss",
    "fbeta_loss",
    "gmean_loss",
    "init_running_counts",
    "running_anyloss",
    "soft_confusion",
]
