"""The JAX SLP and MLP of the vmapped engines (``anyloss suite``, :mod:`anyloss_bench.protocols`).

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


def gd_validation_logits(make_step: Any, folds: dict[str, Any], iterations: int) -> Any:
    """Validation logits ``(F, v)`` (float64) of the linear unit ``z = X w + b`` trained from zero weights by
    ``iterations`` full-batch steps ``params = step(params, X, y, m)``, vmapped over the padded folds
    (``folds["X"], ["y"], ["m"], ["Xv"]``).

    ``make_step()`` builds the step inside the call's 64-bit mode (``jax.enable_x64``, scoped to this call, so
    nothing else changes dtype): the paper's SLP protocol and the strong baselines under it share this loop.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    with jax.enable_x64(True):
        step = make_step()

        def one_fold(X, y, m, Xv):
            params = {"w": jnp.zeros(X.shape[1], jnp.float64), "b": jnp.zeros((), jnp.float64)}
            params = jax.lax.fori_loop(0, iterations, lambda _, p: step(p, X, y, m), params)
            return Xv @ params["w"] + params["b"]

        args = [jnp.asarray(folds[k], jnp.float64) for k in ("X", "y", "m", "Xv")]
        return np.asarray(jax.jit(jax.vmap(one_fold))(*args), np.float64)
