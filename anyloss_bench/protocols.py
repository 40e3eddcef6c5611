"""Training protocols of ``anyloss suite`` and ``anyloss reproduce`` (``--protocol``).

``paper``: the single-layer perceptron exactly as the authors' code trains it
(doheonhan/anyloss, notebooks 4-10 / 4-30 "Single Perceptron ... Datasets"; the AnyLoss
losses with ``rescue=0``, the paper's gradient, also under ``paper-code``): float64,
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

``paper-code``: ``paper`` plus what the authors' MLP notebook (4-40, "MLP ... 102
Datasets") does beyond the paper's text, a *leak*, never a default.  One model per
dataset is built before the cross-validation loop and compiled and fit again for every
fold and loss without re-initialisation: in each fold BCE starts from where the
previous fold's last loss left the model, then accuracy, F1 (F0.5 and F2, trained for
the chain and not reported), G-mean and balanced accuracy each start from the previous
loss's final weights (and batch-normalization statistics; a fresh Adam for every fit,
as each ``compile`` makes one).  "MSE" has a model of its own (a linear output fitted
to 0/1 labels, positive when the output is above 0.5), carried over the folds the same
way.  So from the second fold on, every model has already trained on the current
validation fold.  The notebook's accuracy, G-mean and balanced-accuracy losses also take
``n`` as the training-fold size inside a mini-batch (``yl = y_train.shape[0]``): the
batch's soft TN gains ``n_train - batch`` (:func:`notebook_confusion`).  The SLP under
``paper-code`` is ``paper``'s SLP (notebook 4-30 starts every loss and fold at zero).

``tuned``: every loss picks its Adam learning rate from :data:`TUNED_GRID` by inner
validation on the training fold only (one stratified 80/20 split of it, the same
budget for every loss), scoring the AnyLoss losses on their own metric and every other
loss on F1; the loss is then trained again on the whole training fold with that rate
(the Adam engine of ``--protocol adam``, all folds and all grid points vmapped).

``adam``: the earlier protocol of this project, kept for comparison: the SLP is a
logistic unit trained in float32 with Adam at the same per-loss learning rates,
"MSE" on the sigmoid output against 0/1 labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .baselines import STRONG, all_inner_splits, thresholded_scores, train_slp_gd
from .jax_engine import gd_validation_logits

PROTOCOLS = ("paper", "paper-code", "tuned", "adam")
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
    import optax

    import anyloss_jax

    from .jax_engine import masked_mean as mean

    if loss == "mse":  # the delta rule: a linear output against -1/+1, halved (see the module docstring)
        return lambda z, y, m: 0.5 * mean((z - (2.0 * y - 1.0)) ** 2, m)
    if loss == "bce":
        return lambda z, y, m: mean(optax.sigmoid_binary_cross_entropy(z, y), m)
    spec = _anyloss_spec(loss)
    # rescue=0: the paper's gradient, as the authors' code (the library's default rescue gradient moved
    # 0.4% of this protocol's validation predictions on 10 KEEL sets: docs/howto/training.md).
    return lambda z, y, m: anyloss_jax.anyloss(z, y, spec[0], sample_weight=m, validate=False,
                                               approximation=spec[1], rescue=0.0, **dict(spec[2]))


def _anyloss_spec(loss: str) -> tuple[str, str, tuple]:
    from .common import LOSSES

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
    return gd_validation_logits(lambda: paper_slp_step(loss, lr), folds, iterations)


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


def baseline_slp_scores(X: np.ndarray, y: np.ndarray, splits: list, metrics: tuple[str, ...], *, lr: float,
                        iterations: int, seed: int, losses: tuple[str, ...] = STRONG
                        ) -> dict[str, dict[str, list[float]]]:
    """``{loss: {metric: [score per fold]}}`` of the strong baselines on the paper's SLP (``--protocol paper``).

    They train like the paper's BCE: float64, zero init, full-batch gradient descent at BCE's learning rate
    ``lr``; ``wbce`` and ``focal`` predict positive when ``z > 0``, ``bce+threshold`` when ``z`` is above the
    threshold tuned for each metric on inner folds of the training fold.
    """
    data = pad_folds64(X, y, splits)
    out: dict[str, dict[str, list[float]]] = {}
    for loss in losses:
        if loss == "bce+threshold":
            outer = train_slp_paper("bce", data, lr=lr, iterations=iterations)
            inner = all_inner_splits(y, splits, seed)
            inner_data = pad_folds64(X, y, [pair for pairs in inner for pair in pairs])
            inner_logits = train_slp_paper("bce", inner_data, lr=lr, iterations=iterations)
            out[loss] = thresholded_scores(y, splits, outer, inner, inner_logits, metrics)
        else:
            logits = train_slp_gd(loss, data, lr=lr, iterations=iterations)
            out[loss] = score_folds(logits, data["y_val"], metrics)
    return out


# --- paper-code: the notebook's MLP, one model carried over losses and folds ------------------------

#: The notebook's (4-40) chains: MSE's model alone; then one model for BCE and the AnyLoss losses, in this order.
PAPER_CODE_CHAINS = (("mse",), ("bce", "accuracy", "f1", "f0.5", "f2", "gmean", "balanced_accuracy"))
#: The notebook's losses that take ``n`` as the training-fold size inside a mini-batch.
TRAINING_SET_N = ("accuracy", "gmean", "balanced_accuracy")


def notebook_confusion(z: Any, y: Any, m: Any, n_train: Any, *, approximation: str = "anyloss") -> Any:
    """The soft confusion of a mini-batch as the notebook counts it for accuracy, G-mean and B-Acc: the batch's
    counts with TN raised by ``n_train - batch``, i.e. ``n`` is the training-fold size (``yl``)."""
    import jax.numpy as jnp

    import anyloss_core as al

    c = al.soft_confusion(y, z, from_logits=True, sample_weight=m, approximation=approximation, validate=False,
                          xp=jnp)
    return c._replace(tn=c.tn + (n_train - jnp.sum(m)))


def paper_code_loss(loss: str) -> Any:
    """``f(z, y, m, n_train) -> scalar``: the notebook's MLP loss on output ``z`` (a logit; MSE's is linear)."""
    import jax.numpy as jnp
    import optax

    import anyloss_core as al
    import anyloss_jax

    from .common import LOSSES
    from .jax_engine import masked_mean as mean

    if loss == "mse":  # Dense(1) without activation against 0/1 labels
        return lambda z, y, m, n: mean((z - y) ** 2, m)
    if loss == "bce":
        return lambda z, y, m, n: mean(optax.sigmoid_binary_cross_entropy(z, y), m)
    if LOSSES[loss].kind != "anyloss":
        raise ValueError(f"paper-code trains the notebook's losses (MSE, BCE, AnyLoss, SOL), not {loss!r}")
    metric, approximation, params = _anyloss_spec(loss)
    if loss in TRAINING_SET_N:
        fn = al.get_metric(metric)
        return lambda z, y, m, n: 1.0 - fn(notebook_confusion(z, y, m, n, approximation=approximation), jnp)
    return lambda z, y, m, n: anyloss_jax.anyloss(z, y, metric, sample_weight=m, validate=False,
                                                  approximation=approximation, rescue=0.0, **dict(params))


def paper_code_fit(loss: str, *, epochs: int, lr: float, batch_size: int) -> Any:
    """A jitted ``fit(params, stats, X, y, m, key) -> (params, stats)``: ``epochs`` of mini-batch Adam (a fresh
    optimizer, as the notebook's ``compile``) from the given weights, on one padded training fold
    (:func:`anyloss_bench.jax_engine.fit_fold`)."""
    import jax
    import jax.numpy as jnp
    import optax

    from . import jax_engine, models

    loss_fn, forward, opt = paper_code_loss(loss), models.forward("mlp"), optax.adam(lr)

    def fit(params, stats, X, y, m, key):
        n_train = jnp.sum(m)

        def objective(p, st, x, t, mb):
            z, st = forward(p, st, x, mb, True)
            return loss_fn(z, t, mb, n_train), st

        # min_rows 2: all padding, or a batch of one (batch normalization needs two), changes nothing.
        step = jax_engine.optimizer_step(objective, opt, min_rows=2.0)
        return jax_engine.fit_fold(step, (params, stats, opt.init(params)), X, y, m, key, epochs=epochs,
                                   batch_size=batch_size)

    return jax.jit(fit)


def paper_code_mlp_logits(folds: dict[str, Any], losses: tuple[str, ...] | list[str], *, lrs: dict[str, float],
                          batch_sizes: dict[str, int], epochs: int = 100, seed: int = 0,
                          chains: tuple[tuple[str, ...], ...] = PAPER_CODE_CHAINS,
                          record: Any = None) -> dict[str, np.ndarray]:
    """``{loss: validation logits (F, v)}`` of the notebook's MLP: one model per chain, built once (``seed``),
    fit fold after fold and, within a fold, loss after loss of the chain, never re-initialised.

    ``losses`` are those reported; a chain's other losses (F0.5, F2) are trained too, since the next loss starts
    from them, at ``lrs.get(loss, lrs["f1"])``.  A loss in no chain gets a chain of its own.  ``record(loss, fold,
    params_before, params_after)``, when given, sees every fit (the tests use it).
    """
    import jax
    import jax.numpy as jnp

    from . import models

    chains = tuple(c for c in chains if any(loss in losses for loss in c))
    chained = {loss for c in chains for loss in c}
    chains += tuple((loss,) for loss in losses if loss not in chained)
    F, n, d = folds["X"].shape
    forward = models.forward("mlp")
    fits = {loss: paper_code_fit(loss, epochs=epochs, lr=lrs.get(loss, lrs.get("f1", 1e-3)),
                                 batch_size=batch_sizes.get(loss, batch_sizes.get("f1", n)))
            for c in chains for loss in c}
    out = {loss: np.zeros(folds["Xv"].shape[:2], np.float32) for loss in losses}
    for c, chain in enumerate(chains):
        params, stats = models.init("mlp", d, jax.random.PRNGKey(seed))  # one model per chain, before the folds
        for f in range(F):
            X, y, m = (jnp.asarray(folds[k][f]) for k in ("X", "y", "m"))
            for j, loss in enumerate(chain):
                key = jax.random.fold_in(jax.random.PRNGKey(seed), 1000 * f + 10 * j + c)
                before = params
                params, stats = fits[loss](params, stats, X, y, m, key)
                if record is not None:
                    record(loss, f, before, params)
                if loss in out:
                    out[loss][f] = np.asarray(forward(params, stats, jnp.asarray(folds["Xv"][f]), None, False)[0])
    return out


def paper_code_predictions(loss: str, logits: np.ndarray) -> np.ndarray:
    """The notebook's decision: ``round(output)``, i.e. output > 0.5 for MSE's linear output, p > 0.5 (z > 0) else."""
    return (np.asarray(logits) > (0.5 if loss == "mse" else 0.0)).astype(np.float64)


def paper_code_scores(X: np.ndarray, y: np.ndarray, losses: tuple[str, ...] | list[str], lrs: dict[str, float],
                      splits: list, metrics: tuple[str, ...], *, batch_sizes: dict[str, int] | None = None,
                      epochs: int = 100, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """``{loss: {metric: [score per fold]}}`` of the notebook's MLP (carry-over) on one dataset."""
    import anyloss_core as al

    from .common import LOSSES, paper_batch_size
    from .data import pad_folds

    folds = pad_folds(X, y, splits)
    names = {loss for c in PAPER_CODE_CHAINS for loss in c} | set(losses)
    sizes = {loss: paper_batch_size(LOSSES[loss], "mlp", folds["n_train"]) for loss in names}
    sizes.update(batch_sizes or {})
    logits = paper_code_mlp_logits(folds, losses, lrs=lrs, batch_sizes=sizes, epochs=epochs, seed=seed)
    return {loss: {metric: [float(al.score(metric, yv, paper_code_predictions(loss, logits[loss][f, : len(yv)])))
                            for f, yv in enumerate(folds["y_val"])] for metric in metrics} for loss in losses}


# --- tuned: each loss's Adam learning rate by inner validation on the training fold ------------------

#: The learning rates every loss chooses from.
TUNED_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
#: The share of the training fold held out to choose the learning rate (one stratified split).
TUNED_HOLDOUT = 0.2


def tuning_metric(loss: str) -> str:
    """What a loss's learning rate is chosen on: an AnyLoss loss's own metric; F1 for every other loss."""
    from .common import LOSSES

    spec = LOSSES[loss]
    if spec.kind == "anyloss" and spec.metric in ("accuracy", "f1", "gmean", "balanced_accuracy"):
        return spec.metric
    return "f1"


def _engine_loss(loss: str) -> Any:
    """``f(z, y, m)`` of any command loss for the Adam engine (the suite's MSE on the sigmoid output)."""
    import jax
    import jax.numpy as jnp
    import optax

    import anyloss_jax

    from .common import LOSSES
    from .engines import FOCAL_GAMMA
    from .jax_engine import masked_mean as mean

    spec = LOSSES[loss]

    if spec.kind == "mse":
        return lambda z, y, m: mean((jax.nn.sigmoid(z) - y) ** 2, m)
    if spec.kind == "bce":
        return lambda z, y, m: mean(optax.sigmoid_binary_cross_entropy(z, y), m)
    if spec.kind == "focal":
        return lambda z, y, m: mean(optax.sigmoid_focal_loss(z, y, gamma=FOCAL_GAMMA), m)
    if spec.kind == "wbce":
        def wbce(z, y, m):  # scikit-learn's "balanced" weights of the (unpadded) training rows
            n, n1 = jnp.sum(m), jnp.sum(m * y)
            w = jnp.where(y == 1, n / (2 * jnp.maximum(n1, 1.0)), n / (2 * jnp.maximum(n - n1, 1.0)))
            return mean(w * optax.sigmoid_binary_cross_entropy(z, y), m)
        return wbce
    return lambda z, y, m: anyloss_jax.anyloss(z, y, spec.metric, sample_weight=m, validate=False,
                                               approximation=spec.approximation, **dict(spec.params))


def train_folds_lr(loss: str, arch: str, folds: dict[str, Any], lrs: np.ndarray, *, epochs: int, batch_size: int,
                   seed: int) -> np.ndarray:
    """The Adam engine of ``anyloss suite`` with one learning rate per fold (``lrs``, shape ``(F,)``): validation
    logits ``(F, v)``; one vmapped program whatever the rates (``optax.inject_hyperparams``)."""
    import optax

    from . import jax_engine, models

    loss_fn, forward = _engine_loss(loss), models.forward(arch)
    n, d = folds["X"].shape[1:]

    def make_objective(y_fold, m_fold):
        def objective(params, stats, x, y, m):
            z, stats = forward(params, stats, x, m, True)
            return loss_fn(z, y, m), stats
        return objective

    return jax_engine.fit_folds(make_objective, lambda key: models.init(arch, d, key),
                                lambda params, stats, Xv: forward(params, stats, Xv, None, False)[0],
                                optax.inject_hyperparams(optax.adam)(learning_rate=1.0), folds, epochs=epochs,
                                batch_size=batch_size, seed=seed, full_batch=arch == "slp" or batch_size >= n,
                                min_rows=1.0 if arch == "slp" else 2.0, learning_rates=lrs)


def inner_splits(y: np.ndarray, splits: list, seed: int, holdout: float = TUNED_HOLDOUT) -> list:
    """Per outer fold, one stratified ``holdout`` split of its *training* indices: ``(inner_train, inner_val)``
    as indices into the whole dataset (subsets of the outer training fold, never of its validation fold)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    out = []
    for k, (tr, _) in enumerate(splits):
        sss = StratifiedShuffleSplit(1, test_size=holdout, random_state=seed + k)
        itr, iva = next(sss.split(np.zeros(len(tr)), y[tr]))
        out.append((tr[itr], tr[iva]))
    return out


def choose_lrs(scores: np.ndarray, grid: tuple[float, ...] = TUNED_GRID) -> np.ndarray:
    """Per fold, the grid rate of the best inner-validation score (``scores``: (grid, F)); ties go to the
    smaller rate (the first in the grid)."""
    return np.asarray(grid)[np.argmax(np.asarray(scores), axis=0)]


def tuned_scores(X: np.ndarray, y: np.ndarray, arch: str, losses: tuple[str, ...] | list[str], splits: list,
                 metrics: tuple[str, ...], *, epochs: dict[str, int] | int, batch_size: Any, seed: int = 0,
                 grid: tuple[float, ...] = TUNED_GRID, trainer: Any = None
                 ) -> tuple[dict[str, dict[str, list[float]]], dict[str, list[float]]]:
    """``({loss: {metric: [score per fold]}}, {loss: [chosen rate per fold]})`` under ``--protocol tuned``.

    For each loss and outer fold: every rate of ``grid`` trained on 80% of the training fold and scored on the
    other 20% (:func:`tuning_metric`), the best rate trained again on the whole training fold and scored on the
    validation fold.  ``batch_size(loss, n_train)`` gives the batch; ``trainer`` stands for
    :func:`train_folds_lr` (same signature) in the tests.
    """
    import anyloss_core as al

    from .common import RESAMPLED
    from .data import UsageError, pad_folds

    unsupported = [loss for loss in losses if loss in RESAMPLED]
    if unsupported:
        raise UsageError(f"--protocol tuned does not train {unsupported[0]!r}")
    order = list(losses)
    if "bce+threshold" in losses:  # BCE's tuned fits first: bce+threshold reuses them
        losses = ["bce", *(loss for loss in losses if loss != "bce")]
    outer_logits: dict[str, np.ndarray] = {}
    trainer = trainer or train_folds_lr
    inner = inner_splits(y, splits, seed)
    inner_data, outer_data = pad_folds(X, y, inner), pad_folds(X, y, splits)
    F, G = len(splits), len(grid)
    # All grid points of all folds as one batch of G * F "folds" (grid-major).
    tiled = {k: np.concatenate([inner_data[k]] * G) for k in ("X", "y", "m", "Xv")}
    tiled.update(y_val=inner_data["y_val"] * G, n_train=inner_data["n_train"])
    scores: dict[str, dict[str, list[float]]] = {}
    chosen: dict[str, list[float]] = {}
    for loss in losses:
        n_epochs = epochs if isinstance(epochs, int) else epochs[loss]
        if loss == "bce+threshold":  # tuned BCE, thresholds from inner folds fitted at each fold's tuned rate
            scores[loss], chosen[loss] = _tuned_thresholded(X, y, arch, splits, metrics, outer_logits["bce"],
                                                            chosen["bce"], trainer, epochs=n_epochs,
                                                            batch_size=batch_size, seed=seed)
            continue
        target = tuning_metric(loss)
        logits = trainer(loss, arch, tiled, np.repeat(np.asarray(grid, np.float64), F), epochs=n_epochs,
                         batch_size=batch_size(loss, inner_data["n_train"]), seed=seed)
        val = np.array([[float(al.score(target, yv, logits[g * F + f, : len(yv)].astype(np.float64),
                                        from_logits=True))
                         for f, yv in enumerate(inner_data["y_val"])] for g in range(G)])
        lrs = choose_lrs(val, grid)
        logits = outer_logits[loss] = trainer(loss, arch, outer_data, lrs, epochs=n_epochs,
                         batch_size=batch_size(loss, outer_data["n_train"]), seed=seed)
        scores[loss] = {metric: [float(al.score(metric, yv, logits[f, : len(yv)].astype(np.float64),
                                                from_logits=True))
                                 for f, yv in enumerate(outer_data["y_val"])] for metric in metrics}
        chosen[loss] = [float(v) for v in lrs]
    return {loss: scores[loss] for loss in order}, {loss: chosen[loss] for loss in order}


def _tuned_thresholded(X: np.ndarray, y: np.ndarray, arch: str, splits: list, metrics: tuple[str, ...],
                       bce_logits: np.ndarray, bce_lrs: list[float], trainer: Any, *, epochs: int, batch_size: Any,
                       seed: int) -> tuple[dict[str, list[float]], list[float]]:
    """``bce+threshold`` under ``tuned``: the tuned BCE's validation logits, each metric's threshold chosen on
    out-of-fold logits of inner BCE fits (:mod:`anyloss_bench.baselines`) trained at that fold's tuned rate."""
    from . import baselines
    from .data import pad_folds

    inner = baselines.all_inner_splits(y, splits, seed)
    inner_data = pad_folds(X, y, [pair for pairs in inner for pair in pairs])
    lrs = np.array([bce_lrs[k] for k, pairs in enumerate(inner) for _ in pairs])
    logits = trainer("bce", arch, inner_data, lrs, epochs=epochs, batch_size=batch_size("bce", inner_data["n_train"]),
                     seed=seed)
    return baselines.thresholded_scores(y, splits, bce_logits, inner, logits, metrics), list(bce_lrs)


def reproduce_results(protocol: str, data: Any, arch: str, losses: list[str], lrs: dict[str, float],
                      metrics: tuple[str, ...], *, folds: int, seed: int, epochs: Any) -> dict[str, Any]:
    """``{loss: {metric: {mean, std}}}`` of ``anyloss reproduce`` under ``paper-code`` (the MLP) or ``tuned``.

    ``paper-code``: :func:`paper_code_scores` at the command's learning rates; the SOL losses, absent from the
    notebook's chain, each carry one model of their own over the folds (as the authors' SOL notebook 4-22 does).
    ``tuned``: :func:`tuned_scores` (``lrs`` unused); ``epochs(loss, arch)`` gives each loss's epochs.
    """
    from .common import LOSSES, paper_batch_size, stratified_splits

    splits = stratified_splits(data.y, folds, seed)
    if protocol == "paper-code":
        scores = paper_code_scores(data.X, data.y, losses, lrs, splits, metrics, epochs=epochs(losses[0], arch),
                                   seed=seed)
    else:
        scores, _ = tuned_scores(data.X, data.y, arch, losses, splits, metrics, seed=seed,
                                 epochs={loss: epochs(loss, arch) for loss in losses},
                                 batch_size=lambda loss, n: paper_batch_size(LOSSES[loss], arch, n))
    return {loss: {m: {"mean": float(np.mean(v)), "std": float(np.std(v))} for m, v in s.items()}
            for loss, s in scores.items()}
