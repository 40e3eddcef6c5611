"""The training issue's scenario: an MLP on breast-cancer features *not* standardised, F1 loss vs BCE.

Linear(30, 32) -> ReLU -> Linear(32, 1) (torch's default initialisation), Adam 1e-3, full batch, 300 steps,
malignant (212 of 569) as the positive class; prints the train F1 (logit > 0) per seed of the default
``F1Loss()`` (rescue gradient on), ``rescue=0`` (the paper's gradient) and the framework's own BCE.

    python benchmarks/rescue_scenario.py torch            # or jax, or keras (KERAS_BACKEND picks the backend)
    python benchmarks/rescue_scenario.py torch --standardise
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

STEPS, LR = 300, 1e-3


def data(standardise: bool) -> tuple[np.ndarray, np.ndarray]:
    X, target = load_breast_cancer(return_X_y=True)
    if standardise:
        X = StandardScaler().fit_transform(X)
    return X.astype(np.float32), (target == 0).astype(np.float32)


def torch_runs(X, y, seeds):
    import torch

    import anyloss_torch

    Xt, yt = torch.tensor(X), torch.tensor(y)

    def run(loss_fn, seed):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(30, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
        optimizer = torch.optim.Adam(net.parameters(), LR)
        for _ in range(STEPS):
            optimizer.zero_grad()
            loss_fn(net(Xt).squeeze(1), yt).backward()
            optimizer.step()
        with torch.no_grad():
            return f1_score(y, net(Xt).squeeze(1).numpy() > 0)

    losses = {"F1Loss()": anyloss_torch.F1Loss(), "F1Loss(rescue=0)": anyloss_torch.F1Loss(rescue=0.0),
              "BCEWithLogitsLoss": torch.nn.BCEWithLogitsLoss()}
    return {name: [run(fn, s) for s in seeds] for name, fn in losses.items()}


def jax_runs(X, y, seeds):
    import jax
    import jax.numpy as jnp
    import optax

    import anyloss_jax

    def run(loss, seed):
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        b1, b2 = 1 / np.sqrt(30), 1 / np.sqrt(32)  # torch.nn.Linear's initialisation
        params = {"w1": jax.random.uniform(k1, (30, 32), minval=-b1, maxval=b1), "b1": jnp.zeros(32),
                  "w2": jax.random.uniform(k2, (32,), minval=-b2, maxval=b2), "b2": jnp.zeros(())}

        def forward(p):
            return jax.nn.relu(X @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

        optimizer = optax.adam(LR)

        @jax.jit
        def step(p, s):
            updates, s = optimizer.update(jax.grad(lambda p: loss(forward(p), y))(p), s)
            return optax.apply_updates(p, updates), s

        state = optimizer.init(params)
        for _ in range(STEPS):
            params, state = step(params, state)
        return f1_score(y, np.asarray(forward(params)) > 0)

    losses = {"f1_loss": anyloss_jax.f1_loss, "f1_loss(rescue=0)": lambda z, t: anyloss_jax.f1_loss(z, t, rescue=0.0),
              "optax BCE": lambda z, t: optax.sigmoid_binary_cross_entropy(z, t).mean()}
    return {name: [run(fn, s) for s in seeds] for name, fn in losses.items()}


def keras_runs(X, y, seeds):
    import keras

    import anyloss_keras

    def run(make_loss, seed):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(LR), loss=make_loss())
        model.fit(X, y, batch_size=len(X), epochs=STEPS, verbose=0)
        return f1_score(y, model.predict(X, verbose=0)[:, 0] > 0)

    losses = {"F1Loss(from_logits=True)": lambda: anyloss_keras.F1Loss(from_logits=True),
              "F1Loss(from_logits=True, rescue=0)": lambda: anyloss_keras.F1Loss(from_logits=True, rescue=0.0),
              "BinaryCrossentropy(from_logits=True)": lambda: keras.losses.BinaryCrossentropy(from_logits=True)}
    return {f"{keras.backend.backend()}: {name}": [run(fn, s) for s in seeds] for name, fn in losses.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=("torch", "jax", "keras"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--standardise", action="store_true")
    args = parser.parse_args()
    X, y = data(args.standardise)
    runs = {"torch": torch_runs, "jax": jax_runs, "keras": keras_runs}[args.framework](X, y, range(args.seeds))
    for name, scores in runs.items():
        print(f"{name:45s} train F1 per seed: {', '.join(f'{s:.3f}' for s in scores)}  (mean {np.mean(scores):.3f})")


if __name__ == "__main__":
    main()
