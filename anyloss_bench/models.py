"""The JAX SLP and MLP of the vmapped engines (``anyloss suite``, :mod:`anyloss_bench.protocols`), trained by
:mod:`anyloss_bench.jax_engine`.

``forward(arch)`` is ``f(params, stats, x, m, training) -> (logits, stats)``, ``m`` the 0/1 row mask of padded
folds (batch normalization's statistics over the unmasked rows); ``init(arch, d, key)`` gives ``(params, stats)``.
The SLP starts from zero weights; the MLP (one hidden layer of 2 sigmoid units, batch normalization before the
activation) from scaled normal weights.  The per-fold engine of ``anyloss compare`` (:mod:`anyloss_bench.engines`)
defines its own, unmasked, copy of the same architectures.
"""

from __future__ import annotations

import math
from typing import Any


def forward(arch: str) -> Any:
    import jax
    import jax.numpy as jnp

    if arch == "slp":
        def slp(params, stats, x, m, training):
            return x @ params["w"] + params["b"], stats
        return slp

    def mlp(params, stats, x, m, training):
        # One hidden layer of 2 sigmoid units, batch normalization before the activation
        # (Keras defaults: momentum 0.99, epsilon 1e-3), statistics over the unmasked rows.
        h = x @ params["w1"]
        if training:
            count = jnp.maximum(jnp.sum(m), 1.0)
            mean = (m @ h) / count
            var = (m @ (h - mean) ** 2) / count
            stats = {"mean": 0.99 * stats["mean"] + 0.01 * mean, "var": 0.99 * stats["var"] + 0.01 * var}
        else:
            mean, var = stats["mean"], stats["var"]
        h = (h - mean) / jnp.sqrt(var + 1e-3) * params["gamma"] + params["beta"]
        return jax.nn.sigmoid(h) @ params["w2"] + params["b2"], stats
    return mlp


def init(arch: str, d: int, key: Any) -> tuple[dict, dict]:
    import jax
    import jax.numpy as jnp

    if arch == "slp":
        return {"w": jnp.zeros((d,)), "b": jnp.zeros(())}, {}
    k1, k2 = jax.random.split(key)
    params = {"w1": jax.random.normal(k1, (d, 2)) / math.sqrt(d), "gamma": jnp.ones((2,)), "beta": jnp.zeros((2,)),
              "w2": jax.random.normal(k2, (2,)) / math.sqrt(2.0), "b2": jnp.zeros(())}
    return params, {"mean": jnp.zeros((2,)), "var": jnp.ones((2,))}
