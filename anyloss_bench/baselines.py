"""The strong baselines shared by ``compare``, ``suite`` and ``reproduce``: ``bce+threshold``, ``wbce``, ``focal``.

- ``wbce``: binary cross-entropy with balanced class weights ``w_c = n / (2 n_c)`` (scikit-learn's
  ``class_weight="balanced"``), ``n`` and ``n_c`` counted on the training fold; the loss is the mean of the
  weighted per-sample terms.
- ``focal``: the sigmoid focal loss of Lin et al. (2017), ``optax.sigmoid_focal_loss`` with ``gamma = 2`` and no
  ``alpha`` (:data:`anyloss_bench.engines.FOCAL_GAMMA`).
- ``bce+threshold``: BCE, then per target metric the logit threshold that maximises that metric on out-of-fold
  scores of the training fold (``INNER_FOLDS`` stratified inner folds, :func:`inner_splits`), found by
  ``anyloss_core.best_threshold`` (:func:`best_thresholds`); nothing outside the training fold is read.

``compare`` trains them one fold at a time (``anyloss_bench.engines``, ``common.tuned_thresholds``); ``suite`` and
``reproduce`` train all folds of one loss at once (a ``jax.vmap`` over folds), with the same splits and rules.
Under ``--protocol paper`` the paper's SLP trains them like BCE: float64, zero init, full-batch plain gradient
descent at BCE's learning rate (:func:`anyloss_bench.protocols.baseline_slp_scores`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The strong baselines, in the order the tables show them.
STRONG = ("bce+threshold", "wbce", "focal")
#: Inner folds of ``bce+threshold`` (its cost: INNER_FOLDS + 1 BCE fits per outer fold).
INNER_FOLDS = 3
#: The seed offset of the j-th inner fit (``seed + INNER_SEED_STEP * (j + 1)``).
INNER_SEED_STEP = 7919


def inner_splits(y: np.ndarray, train_index: np.ndarray, *, seed: int, inner_folds: int = INNER_FOLDS
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(fit rows, scored rows)`` of each inner fold of ``train_index``, as indices into the whole dataset.

    ``inner_folds`` stratified splits (fewer when the minority class of the training fold is smaller); with fewer
    than 2 minority samples one pair ``(train_index, train_index)``: the training fold's own, in-sample scores.
    """
    from sklearn.model_selection import StratifiedKFold

    y_tr = np.asarray(y)[train_index]
    k = min(inner_folds, int(y_tr.sum()), int(len(y_tr) - y_tr.sum()))
    if k < 2:
        return [(train_index, train_index)]
    inner = StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y_tr)), y_tr)
    return [(train_index[itr], train_index[iva]) for itr, iva in inner]


def best_thresholds(y: np.ndarray, scores: np.ndarray, metrics: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Per metric, the logit threshold that maximises it (``anyloss_core.best_threshold``; positive when above)."""
    import anyloss_core as al

    return {m: float(al.best_threshold(np.asarray(y), np.asarray(scores, np.float64), m).threshold) for m in metrics}


def pooled_scores(y: np.ndarray, train_index: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]],
                  logits: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, logits)`` of the training fold's rows, each scored by the inner model that did not fit it."""
    position = {int(i): p for p, i in enumerate(train_index)}
    scores = np.empty(len(train_index))
    for (_, scored), z in zip(pairs, logits, strict=True):
        scores[[position[int(i)] for i in scored]] = np.asarray(z, np.float64)[: len(scored)]
    return np.asarray(y)[train_index], scores


def thresholded_scores(y: np.ndarray, splits: list, outer_logits: np.ndarray, inner: list[list],
                       inner_logits: np.ndarray, metrics: tuple[str, ...]) -> dict[str, list[float]]:
    """``{metric: [score per outer fold]}`` of ``bce+threshold``.

    ``outer_logits`` (F, v): BCE's validation logits; ``inner[f]``: the :func:`inner_splits` pairs of fold ``f``,
    whose held-out logits are the next rows of ``inner_logits`` (all folds' inner fits, in order).
    """
    import anyloss_core as al

    out: dict[str, list[float]] = {m: [] for m in metrics}
    row = 0
    for f, (tr, va) in enumerate(splits):
        pairs = inner[f]
        labels, pooled = pooled_scores(y, tr, pairs, list(inner_logits[row: row + len(pairs)]))
        row += len(pairs)
        cut = best_thresholds(labels, pooled, metrics)
        z = np.asarray(outer_logits[f, : len(va)], np.float64)
        for m in metrics:
            out[m].append(float(al.score(m, np.asarray(y)[va], (z > cut[m]).astype(np.float64))))
    return out


def all_inner_splits(y: np.ndarray, splits: list, seed: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """:func:`inner_splits` of every outer fold ``k``, seeded ``seed + k`` as ``compare`` does."""
    return [inner_splits(y, tr, seed=seed + k) for k, (tr, _) in enumerate(splits)]


# --- JAX losses on padded folds ---------------------------------------------------------------------


def class_weights(y: Any, m: Any) -> tuple[Any, Any]:
    """``(w0, w1)``, ``w_c = n / (2 n_c)`` over the real rows (``m = 1``); 1 for an absent class
    (:func:`anyloss_bench.engines.balanced_class_weights` on a masked fold)."""
    import jax.numpy as jnp

    n, n1 = jnp.sum(m), jnp.sum(m * y)
    n0 = n - n1
    w0 = jnp.where(n0 > 0, n / (2 * jnp.maximum(n0, 1.0)), 1.0)
    return w0, jnp.where(n1 > 0, n / (2 * jnp.maximum(n1, 1.0)), 1.0)


def masked_loss(kind: str) -> Any:
    """``f(z, y, m, w) -> scalar`` for ``"wbce"`` or ``"focal"``: the mean over the real rows (``m`` = 1) of the
    per-sample loss; ``w = (w0, w1)`` are the training fold's class weights (used by ``wbce``)."""
    import jax.numpy as jnp
    import optax

    from .engines import FOCAL_GAMMA
    from .jax_engine import masked_mean as mean

    if kind == "wbce":
        return lambda z, y, m, w: mean(jnp.where(y == 1, w[1], w[0]) * optax.sigmoid_binary_cross_entropy(z, y), m)
    if kind == "focal":
        return lambda z, y, m, w: mean(optax.sigmoid_focal_loss(z, y, gamma=FOCAL_GAMMA), m)
    raise ValueError(f"no masked loss {kind!r}")


def train_slp_gd(kind: str, folds: dict[str, Any], *, lr: float, iterations: int) -> np.ndarray:
    """Validation logits ``(F, v)`` of the paper's SLP trained with ``wbce`` or ``focal``: float64, zero init,
    ``iterations`` full-batch gradient-descent steps ``theta -= lr * grad`` (as
    :func:`anyloss_bench.protocols.train_slp_paper` trains BCE), vmapped over folds."""
    import jax

    from .jax_engine import gd_validation_logits

    def make_step():
        loss_fn = masked_loss(kind)

        def objective(params, X, y, m):
            return loss_fn(X @ params["w"] + params["b"], y, m, class_weights(y, m))

        def step(params, X, y, m):
            grads = jax.grad(objective)(params, X, y, m)
            return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

        return step

    return gd_validation_logits(make_step, folds, iterations)


def beats(ours: float, theirs: list[float | None]) -> bool:
    """Strictly above every baseline score given (``None``: not run, ignored); False if none was run."""
    known = [t for t in theirs if t is not None]
    return bool(known) and all(ours > t for t in known)
