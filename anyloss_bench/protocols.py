"""Training protocols of ``anyloss suite`` and ``anyloss reproduce`` (``--protocol``).

``paper``: the single-layer perceptron exactly as the authors' code trains it
(doheonhan/anyloss, notebooks 4-10 / 4-30 "Single Perceptron ... Datasets"): float64,
a bias initialised at zero with the weights, full-batch plain gradient descent
``theta <- theta - lr * grad``, 1,000 iterations, a fresh start for every loss and
fold.  "MSE" is the delta rule: a *linear* output ``z`` fitted by mean squared error
to labels -1/+1, predicting positive when ``z > 0``; BCE and the AnyLoss losses put
a sigmoid on ``z`` and predict positive when ``p > 0.5`` (``A(p) > 0.5`` is the same
cut), i.e. also ``z > 0``.  The gradients come from our losses (``anyloss_jax`` and
``optax``) by ``jax.grad`` in float64; only two constant factors of the notebook's
hand-written gradients are carried over, so that every update equals the notebook's:

- the delta rule's gradient is ``-(y - z) X / n``, half the gradient of
  ``mean((y - z)^2)``: we minimise ``mean((y - z)^2) / 2``;
- the G-mean gradient is written as ``-2 (...) / sqrt(...)``, four times the exact
  gradient of ``1 - sqrt(TPR * TNR)``: the G-mean loss's step is ``4 * lr``.

The MLP has no ``paper`` variant of its own: ``anyloss_bench.suite`` already trains
the paper's architecture (2 sigmoid units with batch normalization), optimizer
(Adam), epochs and batches, with fresh weights for every loss and fold.

``adam``: the earlier protocol of this project, kept for comparison: the SLP is a
logistic unit trained in float32 with Adam at the same per-loss learning rates,
"MSE" on the sigmoid output against 0/1 labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PROTOCOLS = ("paper", "adam")
DEFAULT_PROTOCOL = "paper"

#: Learning rates of the authors' 102-dataset SLP notebook (4-30), the paper's Table 15.
PAPER_SLP_LEARNING_RATES = {"mse": 1e-2, "bce": 1e-1, "accuracy": 5e-3, "f1": 1e-2, "gmean": 5e-3,
                            "balanced_accuracy": 5e-3}
PAPER_SLP_ITERATIONS = 1000
#: The notebook's G-mean gradient is 4x the exact gradient of its loss (see the module docstring).
GRADIENT_FACTOR = {"gmean": 4.0}


def check_protocol(name: str) -> str:
    from .data import UsageError

    if name not in PROTOCOLS:
        raise UsageError(f"unknown --protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    return name


def paper_slp_loss(loss: str) -> Any:
    """``f(z, y, m) -> scalar``: the loss the paper's SLP minimises, on logits ``z``, 0/1 labels ``y`` and a
    row mask ``m`` (0 for padding rows)."""
    import jax.numpy as jnp
    import optax

    import anyloss_jax

    def mean(v, m):
        return jnp.sum(m * v) / jnp.maximum(jnp.sum(m), 1.0)

    if loss == "mse":  # the delta rule: a linear output against -1/+1, halved (see the module docstring)
        return lambda z, y, m: 0.5 * mean((z - (2.0 * y - 1.0)) ** 2, m)
    if loss == "bce":
        return lambda z, y, m: mean(optax.sigmoid_binary_cross_entropy(z, y), m)
    spec = _anyloss_spec(loss)
    return lambda z, y, m: anyloss_jax.anyloss(z, y, spec[0], sample_weight=m, validate=False,
                                               approximation=spec[1], **dict(spec[2]))


def _anyloss_spec(loss: str) -> tuple[str, str, tuple]:
    from .cli import LOSSES

    spec = LOSSES[loss]
    return spec.metric, spec.approximation, spec.params


def paper_slp_step(loss: str, lr: float) -> Any:
    """One full-batch gradient-descent update ``params -> params - lr * factor * grad`` (float64 under
    ``jax.enable_x64``); ``params = {"w": (d,), "b": ()}``, the bias being the notebook's intercept column."""
    import jax

    loss_fn = paper_slp_loss(loss)
    step_size = lr * GRADIENT_FACTOR.get(loss, 1.0)

    def objective(params, X, y, m):
        return loss_fn(X @ params["w"] + params["b"], y, m)

    def step(params, X, y, m):
        grads = jax.grad(objective)(params, X, y, m)
        return jax.tree_util.tree_map(lambda p, g: p - step_size * g, params, grads)

    return step


def pad_folds64(X: np.ndarray, y: np.ndarray, splits: list) -> dict[str, Any]:
    """Like :func:`anyloss_bench.data.pad_folds`, in float64: per-fold standardized features, zero-padded."""
    from .data import fold_features

    features = [fold_features(X, tr, va, None) for tr, va in splits]
    folds, d = len(splits), max(X_tr.shape[1] for X_tr, _ in features)
    n, v = max(len(tr) for tr, _ in splits), max(len(va) for _, va in splits)
    out: dict[str, Any] = {"X": np.zeros((folds, n, d)), "y": np.zeros((folds, n)), "m": np.zeros((folds, n)),
                           "Xv": np.zeros((folds, v, d))}
    for f, ((tr, va), (X_tr, X_va)) in enumerate(zip(splits, features, strict=True)):
        w = X_tr.shape[1]
        out["X"][f, : len(tr), :w], out["y"][f, : len(tr)], out["m"][f, : len(tr)] = X_tr, y[tr], 1.0
        out["Xv"][f, : len(va), :w] = X_va
    out["y_val"] = [np.asarray(y[va]) for _, va in splits]
    return out


def train_slp_paper(loss: str, folds: dict[str, Any], *, lr: float, iterations: int = PAPER_SLP_ITERATIONS
                    ) -> np.ndarray:
    """Validation logits ``(F, v)`` (float64) of every fold: zero init, ``iterations`` GD steps, vmapped over folds.

    64-bit mode is switched on only inside this call (``jax.enable_x64``), so nothing else changes dtype.
    """
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        step = paper_slp_step(loss, lr)

        def one_fold(X, y, m, Xv):
            params = {"w": jnp.zeros(X.shape[1], jnp.float64), "b": jnp.zeros((), jnp.float64)}
            params = jax.lax.fori_loop(0, iterations, lambda _, p: step(p, X, y, m), params)
            return Xv @ params["w"] + params["b"]

        run = jax.jit(jax.vmap(one_fold))
        args = [jnp.asarray(folds[k], jnp.float64) for k in ("X", "y", "m", "Xv")]
        return np.asarray(run(*args), np.float64)


def predictions(logits: np.ndarray) -> np.ndarray:
    """The paper's decision: positive when ``z > 0`` (sign(z) for the delta rule, ``p > 0.5`` for the others)."""
    return (np.asarray(logits) > 0).astype(np.float64)


def score_folds(logits: np.ndarray, y_val: list[np.ndarray], metrics: tuple[str, ...]) -> dict[str, list[float]]:
    """``{metric: [score per fold]}`` of the paper's 0/1 predictions."""
    import anyloss_core as al

    return {metric: [float(al.score(metric, yv, predictions(logits[f, : len(yv)])))
                     for f, yv in enumerate(y_val)] for metric in metrics}


def paper_slp_scores(X: np.ndarray, y: np.ndarray, losses: tuple[str, ...] | list[str], lrs: dict[str, float],
                     splits: list, metrics: tuple[str, ...], iterations: int = PAPER_SLP_ITERATIONS
                     ) -> dict[str, dict[str, list[float]]]:
    """``{loss: {metric: [score per fold]}}`` of the paper's SLP on one dataset."""
    data = pad_folds64(X, y, splits)
    return {loss: score_folds(train_slp_paper(loss, data, lr=lrs[loss], iterations=iterations), data["y_val"],
                              metrics) for loss in losses}
