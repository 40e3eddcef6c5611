"""The JAX adapter's entry point for other adapters: a configured loss on JAX arrays.

``anyloss_keras`` on the JAX backend computes its binary loss with :func:`config_loss`
instead of differentiating the core through ``keras.ops``, so that it gets this package's
fast paths: the counts as sums over the predictions, the rescue term as a zero whose
gradient is the rescue slope, the sigmoids kept or recomputed by the size of the batch
(:func:`anyloss_jax._functions._binary_terms`), and one cached inner ``jit`` per
configuration for eager calls (:mod:`anyloss_jax._fast`).  Other adapters call this
module, not the private ones, so that those can change freely.

Examples:
    >>> import jax.numpy as jnp
    >>> from anyloss_core.adapters import LossConfig
    >>> from anyloss_jax.interop import config_loss
    >>> config = LossConfig("f1", from_logits=True)
    >>> round(float(config_loss(config, jnp.array([-3.0, 2.0, 4.0]), jnp.array([0, 1, 1]))), 4)
    0.0
"""

from __future__ import annotations

import jax

from anyloss_core.adapters import LossConfig

from . import _fast
from ._functions import configured_loss

__all__ = ["config_loss"]


def config_loss(config: LossConfig, logits: jax.Array, labels: jax.Array,
                sample_weight: jax.Array | None = None) -> jax.Array:
    """:func:`anyloss_jax.anyloss` with ``config``'s settings: ``1 - metric(soft counts)`` plus the rescue term.

    ``logits`` holds logits or probabilities as ``config.from_logits`` says.  With
    ``config.validate`` the values are checked where they are concrete on a CPU, as
    :func:`anyloss_jax.anyloss` checks them.  ``config.momentum`` is not read: this is the
    batch's loss (what a loss with running counts gives where they do not update, as in an
    evaluation); running counts are :func:`anyloss_jax.running_anyloss`'s.
    """
    return configured_loss(config, _fast.config_entry("anyloss", config, (None,)), logits, labels, sample_weight,
                           None)
