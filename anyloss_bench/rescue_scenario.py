"""The training issue's scenario: an MLP on breast-cancer features *not* standardised, F1 loss vs BCE.

Linear(30, 32) -> ReLU -> Linear(32, 1) (torch's default initialisation), Adam 1e-3, full batch, 300 steps,
malignant (212 of 569) as the positive class; prints the train F1 (logit > 0) per seed of the default
``F1Loss()`` (rescue gradient on), ``rescue=0`` (the paper's gradient) and the framework's own BCE::

    python -m anyloss_bench.rescue_scenario torch        # or jax, or keras (KERAS_BACKEND picks the backend)
    python -m anyloss_bench.rescue_scenario torch --standardise

``tests/test_rescue.py`` trains the same networks through :func:`train_f1`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

STEPS, LR = 300, 1e-3


def data(standardise: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Breast-cancer features (float32, raw unless ``standardise``) and labels, malignant = 1."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, target = load_breast_cancer(return_X_y=True)
    if standardise:
        X = StandardScaler().fit_transform(X)
    return X.astype(np.float32), (target == 0).astype(np.float32)


def _f1(y: np.ndarray, logits: Any) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, np.asarray(logits) > 0))


def _torch(X: np.ndarray, y: np.ndarray, loss_fn: Any, seed: int) -> float:
    import torch

    Xt, yt = torch.tensor(X), torch.tensor(y)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(30, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.Adam(net.parameters(), LR)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss_fn(net(Xt).squeeze(1), yt).backward()
        optimizer.step()
    with torch.no_grad():
        return _f1(y, net(Xt).squeeze(1).numpy())


def _jax(X: np.ndarray, y: np.ndarray, loss_fn: Any, seed: int) -> float:
    import jax
    import jax.numpy as jnp
    import optax

    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    b1, b2 = 1 / np.sqrt(30), 1 / np.sqrt(32)  # torch.nn.Linear's initialisation
    params = {"w1": jax.random.uniform(k1, (30, 32), minval=-b1, maxval=b1), "b1": jnp.zeros(32),
              "w2": jax.random.uniform(k2, (32,), minval=-b2, maxval=b2), "b2": jnp.zeros(())}

    def forward(p: Any) -> Any:
        return jax.nn.relu(X @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    optimizer = optax.adam(LR)

    @jax.jit
    def step(p: Any, s: Any) -> Any:
        updates, s = optimizer.update(jax.grad(lambda p: loss_fn(forward(p), y))(p), s)
        return optax.apply_updates(p, updates), s

    state = optimizer.init(params)
    for _ in range(STEPS):
        params, state = step(params, state)
    return _f1(y, forward(params))


def _keras(X: np.ndarray, y: np.ndarray, loss_fn: Any, seed: int) -> float:
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(LR), loss=loss_fn)
    model.fit(X, y, batch_size=len(X), epochs=STEPS, verbose=0)
    return _f1(y, model.predict(X, verbose=0)[:, 0])


_TRAINERS: dict[str, Callable[[np.ndarray, np.ndarray, Any, int], float]] = {
    "torch": _torch, "jax": _jax, "keras": _keras}


def train_f1(framework: str, loss_fn: Any, seed: int, *, standardise: bool = False) -> float:
    """Train F1 of the scenario's MLP trained with ``loss_fn`` (logits, targets) in ``framework``."""
    X, y = data(standardise)
    return _TRAINERS[framework](X, y, loss_fn, seed)


def losses(framework: str) -> dict[str, Any]:
    """The default F1 loss, the same with ``rescue=0``, and the framework's BCE, on logits."""
    if framework == "torch":
        import torch

        import anyloss_torch

        return {"F1Loss()": anyloss_torch.F1Loss(), "F1Loss(rescue=0)": anyloss_torch.F1Loss(rescue=0.0),
                "BCEWithLogitsLoss": torch.nn.BCEWithLogitsLoss()}
    if framework == "jax":
        import optax

        import anyloss_jax

        return {"f1_loss": anyloss_jax.f1_loss,
                "f1_loss(rescue=0)": lambda z, t: anyloss_jax.f1_loss(z, t, rescue=0.0),
                "optax BCE": lambda z, t: optax.sigmoid_binary_cross_entropy(z, t).mean()}
    import keras

    import anyloss_keras

    return {f"{keras.backend.backend()}: F1Loss(from_logits=True)": anyloss_keras.F1Loss(from_logits=True),
            f"{keras.backend.backend()}: F1Loss(from_logits=True, rescue=0)":
                anyloss_keras.F1Loss(from_logits=True, rescue=0.0),
            f"{keras.backend.backend()}: BinaryCrossentropy(from_logits=True)":
                keras.losses.BinaryCrossentropy(from_logits=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=tuple(_TRAINERS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--standardise", action="store_true")
    args = parser.parse_args()
    for name, loss_fn in losses(args.framework).items():
        scores = [train_f1(args.framework, loss_fn, seed, standardise=args.standardise) for seed in range(args.seeds)]
        print(f"{name:45s} train F1 per seed: {', '.join(f'{s:.3f}' for s in scores)}  (mean {np.mean(scores):.3f})")


if __name__ == "__main__":
    main()
