"""The JAX training engine of the command: one optimiser step, one mini-batch loop, one map over folds.

Every JAX fit of ``anyloss`` goes through these three pieces (``compare``'s per-fold engine in
:mod:`anyloss_bench.engines` uses the step; ``suite``, the ``tuned`` and ``paper-code`` protocols and
``compare --task multiclass`` use all three)::

    step = optimizer_step(objective, optax.adam(lr), min_rows=2.0)   # value_and_grad, update, apply
    params, aux = fit_fold(step, (params, aux, opt.init(params)), X, y, m, key, epochs=100, batch_size=32)
    logits = map_folds(one_fold, folds, seed)                        # jit(vmap) over padded folds

``objective(params, aux, *batch) -> (loss, aux)``: ``aux`` is what rides along with the weights without being
trained (batch-normalization statistics, running confusion counts; ``{}`` when nothing does).  Folds of
unequal size are padded with zero-weight rows (:func:`anyloss_bench.data.pad_folds`); a batch with fewer than
``min_rows`` real rows (all padding, or one row under batch normalization) leaves everything as it was.

Why the folds train as one vmapped program rather than through ``compare``'s loop: a KEEL dataset's ten folds
and seven losses are 70 fits of 100 epochs; one compiled ``vmap`` over folds of a ``lax.scan`` over epochs and
mini-batches runs them in one dispatch per loss instead of ``folds x epochs x batches`` Python-level steps.
``compare``'s engine keeps its Python loop over epochs (it reports each epoch's time and loss, and draws its
batches from NumPy's generator as the torch engine does, so both backends see the same batches).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["masked_mean", "optimizer_step", "fit_fold", "map_folds", "fit_folds", "gd_validation_logits"]


def masked_mean(v: Any, m: Any) -> Any:
    """``sum(m * v) / max(sum(m), 1)``: the mean of a per-row loss over the real rows of a padded fold (``m`` = 1);
    0 for a batch of padding only."""
    import jax.numpy as jnp

    return jnp.sum(m * v) / jnp.maximum(jnp.sum(m), 1.0)


def optimizer_step(objective: Any, opt: Any, *, min_rows: float | None = None) -> Any:
    """``step((params, aux, state), batch) -> ((params, aux, state), loss)``: one optax update.

    ``batch`` is the tuple of arguments after ``aux`` (``(x, y, m)`` on padded folds, ``(x, y)`` otherwise).
    With ``min_rows``, a batch whose row mask ``batch[-1]`` sums below it changes nothing (all padding, or a
    single row, which batch normalization cannot normalise).
    """
    import jax
    import jax.numpy as jnp
    import optax

    def step(carry: Any, batch: Any) -> Any:
        params, aux, state = carry
        (value, new_aux), grads = jax.value_and_grad(objective, has_aux=True)(params, aux, *batch)
        updates, new_state = opt.update(grads, state, params)
        new = (optax.apply_updates(params, updates), new_aux, new_state)
        if min_rows is not None:
            keep = jnp.sum(batch[-1]) >= min_rows
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, carry)
        return new, value

    return step


def fit_fold(step: Any, carry: Any, X: Any, y: Any, m: Any, key: Any, *, epochs: int, batch_size: int,
             full_batch: bool = False) -> Any:
    """``(params, aux)`` after ``epochs`` passes of ``step`` (:func:`optimizer_step`) over one padded fold.

    Each epoch draws a random order of the real rows (``key`` split into one key per epoch), padding last,
    and cuts it into ``ceil(n / batch_size)`` batches; the last batch is topped up with zero-weight rows.
    ``full_batch``: one step per epoch on the whole fold, in its own order.  Traceable: call it inside
    ``jax.jit`` / ``jax.vmap`` (:func:`map_folds`).
    """
    import jax
    import jax.numpy as jnp

    n = X.shape[0]
    n_batches = 1 if full_batch else -(-n // batch_size)

    def epoch(carry: Any, key_e: Any) -> Any:
        if full_batch:
            return step(carry, (X, y, m))[0], None
        order = jnp.argsort(jax.random.uniform(key_e, (n,)) + 2.0 * (1.0 - m))
        pad = n_batches * batch_size - n
        idx = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)]).reshape(n_batches, batch_size)
        valid = jnp.concatenate([m[order], jnp.zeros((pad,))]).reshape(n_batches, batch_size)
        return jax.lax.scan(step, carry, (X[idx], y[idx], valid))[0], None

    (params, aux, _), _ = jax.lax.scan(epoch, carry, jax.random.split(key, epochs))
    return params, aux


def map_folds(one_fold: Any, folds: dict[str, Any], seed: int, *per_fold: Any) -> np.ndarray:
    """``one_fold(X, y, m, Xv, key, *per_fold)`` over the padded folds as one ``jit(vmap)`` program.

    Fold ``f`` gets the ``f``-th key of ``jax.random.split(PRNGKey(seed), F)`` and the ``f``-th entry of each
    ``per_fold`` array (e.g. a learning rate per fold).
    """
    import jax

    keys = jax.random.split(jax.random.PRNGKey(seed), folds["X"].shape[0])
    return np.asarray(jax.jit(jax.vmap(one_fold))(folds["X"], folds["y"], folds["m"], folds["Xv"], keys, *per_fold))


def fit_folds(make_objective: Any, init: Any, predict: Any, opt: Any, folds: dict[str, Any], *, epochs: int,
              batch_size: int, seed: int, full_batch: bool = False, min_rows: float | None = None,
              learning_rates: Any = None) -> np.ndarray:
    """Validation outputs ``(F, v, ...)`` of every padded fold trained from fresh weights, as one program.

    ``init(key) -> (params, aux)``; ``make_objective(y, m)`` gives the fold's objective (it may read the whole
    training fold, e.g. its class weights); ``predict(params, aux, Xv)``.  ``learning_rates`` (``(F,)``) sets
    ``state.hyperparams["learning_rate"]`` per fold (``opt`` from ``optax.inject_hyperparams``).
    """
    import jax.numpy as jnp

    def one_fold(X: Any, y: Any, m: Any, Xv: Any, key: Any, *lr: Any) -> Any:
        params, aux = init(key)
        state = opt.init(params)
        if lr:
            state.hyperparams["learning_rate"] = lr[0]
        step = optimizer_step(make_objective(y, m), opt, min_rows=min_rows)
        params, aux = fit_fold(step, (params, aux, state), X, y, m, key, epochs=epochs, batch_size=batch_size,
                               full_batch=full_batch)
        return predict(params, aux, Xv)

    extra = () if learning_rates is None else (jnp.asarray(learning_rates, jnp.float32),)
    return map_folds(one_fold, folds, seed, *extra)


def gd_validation_logits(make_step: Any, folds: dict[str, Any], iterations: int) -> Any:
    """Validation logits ``(F, v)`` (float64) of the linear unit ``z = X w + b`` trained from zero weights by
    ``iterations`` full-batch steps ``params = step(params, X, y, m)``, vmapped over the padded folds
    (``folds["X"], ["y"], ["m"], ["Xv"]``).

    ``make_step()`` builds the step inside the call's 64-bit mode (``jax.enable_x64``, scoped to this call, so
    nothing else changes dtype): the paper's SLP protocol and the strong baselines under it share this loop.
    """
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        step = make_step()

        def one_fold(X, y, m, Xv):
            params = {"w": jnp.zeros(X.shape[1], jnp.float64), "b": jnp.zeros((), jnp.float64)}
            params = jax.lax.fori_loop(0, iterations, lambda _, p: step(p, X, y, m), params)
            return Xv @ params["w"] + params["b"]

        args = [jnp.asarray(folds[k], jnp.float64) for k in ("X", "y", "m", "Xv")]
        return np.asarray(jax.jit(jax.vmap(one_fold))(*args), np.float64)
