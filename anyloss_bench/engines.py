"""Training engines: the paper's SLP and MLP trained with one loss, per backend.

Each engine takes standardized float32 features and 0/1 labels and returns the
validation logits, the training loss per epoch and the wall time.  The losses
come from the adapters (``anyloss_jax``, ``anyloss_torch``, ``anyloss_keras``) or
the framework's own MSE / BCE; nothing here re-implements a loss.

Models (the paper's section 4): SLP = one logistic unit; MLP = one hidden layer of
2 sigmoid units.  The paper also batch-normalizes each layer of the MLP; these
engines do not (yet), which the docs state.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

__all__ = ["LossSpec", "TrainResult", "train", "BACKENDS"]

BACKENDS = ("jax", "torch", "keras")


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """What to minimise: "mse", "bce", or an AnyLoss metric with its approximation."""

    kind: str  # "mse" | "bce" | "anyloss"
    metric: str = "f1"
    params: tuple[tuple[str, float], ...] = ()
    approximation: str = "anyloss"


@dataclasses.dataclass
class TrainResult:
    val_logits: np.ndarray
    history: list[float]
    seconds: float


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def _train_jax(spec, X, y, X_val, arch, epochs, lr, batch_size, seed) -> TrainResult:
    import anyloss_jax
    import jax
    import jax.numpy as jnp
    import optax

    key = jax.random.PRNGKey(seed)
    d = X.shape[1]
    if arch == "slp":
        params = {"w": jnp.zeros((d,)), "b": jnp.zeros(())}

        def forward(p, x):
            return x @ p["w"] + p["b"]
    else:
        k1, k2 = jax.random.split(key)
        params = {
            "w1": jax.random.normal(k1, (d, 2)) * (1.0 / np.sqrt(d)),
            "b1": jnp.zeros((2,)),
            "w2": jax.random.normal(k2, (2,)) * (1.0 / np.sqrt(2)),
            "b2": jnp.zeros(()),
        }

        def forward(p, x):
            return jax.nn.sigmoid(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def loss_fn(p, x, t):
        z = forward(p, x)
        if spec.kind == "mse":
            return jnp.mean((jax.nn.sigmoid(z) - t) ** 2)
        if spec.kind == "bce":
            return optax.sigmoid_binary_cross_entropy(z, t.astype(z.dtype)).mean()
        return anyloss_jax.anyloss(z, t, spec.metric, approximation=spec.approximation, validate=False,
                                   **dict(spec.params))

    opt = optax.adam(lr)
    state = opt.init(params)

    @jax.jit
    def step(p, s, x, t):
        value, grads = jax.value_and_grad(loss_fn)(p, x, t)
        updates, s = opt.update(grads, s)
        return optax.apply_updates(p, updates), s, value

    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    rng = np.random.default_rng(seed)
    history = []
    start = time.perf_counter()
    for _ in range(epochs):
        total = 0.0
        batches = [None] if batch_size >= len(y) else _batches(len(y), batch_size, rng)
        values = []
        for idx in batches:
            if idx is None:
                params, state, value = step(params, state, Xj, yj)
            else:
                params, state, value = step(params, state, Xj[idx], yj[idx])
            values.append(value)
        total = float(jnp.mean(jnp.stack(values)))
        history.append(total)
    seconds = time.perf_counter() - start
    return TrainResult(np.asarray(forward(params, jnp.asarray(X_val))), history, seconds)


def _train_torch(spec, X, y, X_val, arch, epochs, lr, batch_size, seed) -> TrainResult:
    import anyloss_torch
    import torch

    torch.manual_seed(seed)
    d = X.shape[1]
    if arch == "slp":
        model = torch.nn.Linear(d, 1)
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
    else:
        model = torch.nn.Sequential(torch.nn.Linear(d, 2), torch.nn.Sigmoid(), torch.nn.Linear(2, 1))
    if spec.kind == "mse":
        def loss_fn(z, t):
            return torch.nn.functional.mse_loss(torch.sigmoid(z), t.float())
    elif spec.kind == "bce":
        def loss_fn(z, t):
            return torch.nn.functional.binary_cross_entropy_with_logits(z, t.float())
    else:
        module = anyloss_torch.AnyLoss(spec.metric, approximation=spec.approximation, validate=False,
                                       **dict(spec.params))

        def loss_fn(z, t):
            return module(z, t)

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    rng = np.random.default_rng(seed)
    history = []
    start = time.perf_counter()
    for _ in range(epochs):
        values = []
        batches = [None] if batch_size >= len(y) else _batches(len(y), batch_size, rng)
        for idx in batches:
            xb, tb = (Xt, yt) if idx is None else (Xt[idx], yt[idx])
            opt.zero_grad()
            loss = loss_fn(model(xb)[:, 0], tb)
            loss.backward()
            opt.step()
            values.append(loss.detach())
        history.append(float(torch.stack(values).mean()))
    seconds = time.perf_counter() - start
    with torch.no_grad():
        val = model(torch.tensor(X_val))[:, 0].numpy()
    return TrainResult(val, history, seconds)


def _train_keras(spec, X, y, X_val, arch, epochs, lr, batch_size, seed) -> TrainResult:
    import anyloss_keras
    import keras

    keras.utils.set_random_seed(seed)
    layers: list[Any] = [keras.Input((X.shape[1],))]
    if arch == "mlp":
        layers.append(keras.layers.Dense(2, activation="sigmoid"))
    layers.append(keras.layers.Dense(1, kernel_initializer="zeros" if arch == "slp" else "glorot_uniform"))
    model = keras.Sequential(layers)
    if spec.kind == "mse":
        def mse(t, z):
            return keras.ops.mean((keras.ops.sigmoid(z[:, 0]) - keras.ops.cast(t[:, 0], z.dtype)) ** 2)
        loss: Any = mse
    elif spec.kind == "bce":
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
    else:
        loss = anyloss_keras.AnyLoss(metric=spec.metric, from_logits=True, approximation=spec.approximation,
                                     validate=False, **dict(spec.params))
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    start = time.perf_counter()
    fit = model.fit(X, y.reshape(-1, 1).astype("float32"), epochs=epochs, batch_size=min(batch_size, len(y)),
                    shuffle=True, verbose=0)
    seconds = time.perf_counter() - start
    return TrainResult(model.predict(X_val, verbose=0)[:, 0], list(fit.history["loss"]), seconds)


def train(backend: str, spec: LossSpec, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, *, arch: str,
          epochs: int, lr: float, batch_size: int, seed: int) -> TrainResult:
    """Train ``arch`` with ``spec`` on ``(X, y)``; logits on ``X_val``, loss per epoch, seconds."""
    engine = {"jax": _train_jax, "torch": _train_torch, "keras": _train_keras}[backend]
    return engine(spec, X.astype(np.float32), y.astype(np.int64), X_val.astype(np.float32), arch, epochs, lr,
                  batch_size, seed)
