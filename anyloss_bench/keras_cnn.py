"""Table 10's CNN in Keras 3: the twin of :func:`anyloss_bench.table10.cnn` and of its PyTorch training loop.

``anyloss reproduce --table 10 --backend keras`` trains this model on whichever Keras backend ``KERAS_BACKEND``
names (JAX, TensorFlow or PyTorch)::

    conv 3x3, 8 filters, "same", ReLU -> max-pool 2 -> conv 3x3, 16 filters, ReLU -> max-pool 2 -> dense (1 logit)

2,033 weights, layer by layer the shapes of the PyTorch CNN (channels last: Keras's CPU convolutions and pools
take NHWC).  What is matched, so that a difference between the two columns is the framework's and not the
protocol's:

- initial weights drawn from PyTorch's default distribution (``kaiming_uniform_(a=sqrt(5))`` for the kernels and
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for the biases: ``VarianceScaling(1/3, "fan_in", "uniform")`` and
  ``RandomUniform`` here; Keras's own default, Glorot with zero biases, is 2.4x wider on the dense layer), seeded
  per fold, the same for every loss in a fold (the numbers differ from PyTorch's: another generator);
- the mini-batches: each epoch a ``numpy.random.default_rng(seed)`` permutation cut into batches of 64, as
  :func:`anyloss_bench.engines.fit_torch` draws them (the same rows in the same batches, partial last batch
  kept), fed to ``model.fit`` one epoch at a time with ``shuffle=False``;
- Adam (learning rate 1e-3, ``epsilon=1e-8`` as in PyTorch; Keras's default is 1e-7);
- the losses on a linear output (logits): MSE on ``sigmoid(z)`` (``keras.losses.mean_squared_error``), BCE
  (``keras.losses.BinaryCrossentropy(from_logits=True)``), WBCE (the same with balanced per-sample weights,
  averaged over the batch as PyTorch's ``weight=`` is), AnyLoss (``anyloss_keras.AnyLoss(metric,
  from_logits=True)``, with ``momentum=`` and its ``running_metric`` compiled in for the running counts).

Example:
    >>> from anyloss_bench import keras_cnn
    >>> keras_cnn.cnn(0).count_params()
    2033
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np

from .engines import LossSpec, TrainResult, balanced_class_weights

#: Adam's epsilon in PyTorch (Keras's default is 1e-7).
TORCH_ADAM_EPSILON = 1e-8
#: ``jit_compile`` of ``model.compile``: "auto" (compiled; a training run of 630 steps per model pays for the
#: 1-5 s compile of each fresh model).  The tests set False: their runs of a few steps are eager in a second.
JIT_COMPILE: bool | str = "auto"


def _torch_default_init(keras: Any, fan_in: int, seed: int) -> dict[str, Any]:
    """PyTorch's default ``Conv2d`` / ``Linear`` initialization as Keras initializers: kernel and bias both
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (``VarianceScaling``'s uniform limit is ``sqrt(3 scale / fan_in)``)."""
    bound = 1.0 / np.sqrt(fan_in)
    return {"kernel_initializer": keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform", seed=seed),
            "bias_initializer": keras.initializers.RandomUniform(-bound, bound, seed=seed + 1)}


def cnn(seed: int) -> Any:
    """The Keras model: ``(n, 28, 28, 1)`` images to ``(n, 1)`` logits, weights drawn from ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)
    base = 4 * seed  # two initializer seeds per layer, distinct across layers and folds
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", **_torch_default_init(keras, 1 * 9, base)),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu",
                            **_torch_default_init(keras, 8 * 9, base + 2 * 10**6)),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(1, **_torch_default_init(keras, 16 * 7 * 7, base + 4 * 10**6)),
    ])


def channels_last(X: np.ndarray) -> np.ndarray:
    """``(n, 1, 28, 28)`` (table10's PyTorch layout) as ``(n, 28, 28, 1)``."""
    return np.ascontiguousarray(np.moveaxis(X, 1, -1))


def check_momentum(momentum: float | None) -> None:
    """A usage error unless ``anyloss_keras.AnyLoss`` takes ``momentum`` (running counts) and ``0 < m <= 1``."""
    if momentum is None:
        return
    import anyloss_keras

    from .data import UsageError

    if "momentum" not in inspect.signature(anyloss_keras.AnyLoss.__init__).parameters:
        raise UsageError("--momentum needs running counts (anyloss_keras.AnyLoss(metric, momentum=m)), which this "
                         "version of anyloss_keras does not have")
    if not 0 < momentum <= 1:
        raise UsageError(f"--momentum must be in (0, 1], got {momentum:g}")


def keras_loss(spec: LossSpec, momentum: float | None = None) -> tuple[Any, list[Any]]:
    """``(loss, metrics)`` for ``model.compile``: the loss of ``spec`` on logits (WBCE: BCE, the weights come as
    sample weights); ``metrics`` holds the running counts' metric when ``momentum`` is given."""
    import keras

    import anyloss_keras

    if spec.kind == "mse":
        def mse(t: Any, z: Any) -> Any:  # MSE on the probability, as the PyTorch loop computes it
            return keras.losses.mean_squared_error(t, keras.ops.sigmoid(z))
        return mse, []
    if spec.kind in ("bce", "wbce"):
        return keras.losses.BinaryCrossentropy(from_logits=True), []
    if spec.kind != "anyloss":
        raise ValueError(f"Table 10's Keras CNN trains mse, bce, wbce and AnyLoss, not {spec.kind!r}")
    extra: dict[str, Any] = {}
    if momentum is not None:
        check_momentum(momentum)
        extra["momentum"] = momentum
    loss = anyloss_keras.AnyLoss(metric=spec.metric, from_logits=True, approximation=spec.approximation,
                                 validate=False, **extra, **dict(spec.params))
    # The running counts live in a Keras variable that the JAX backend carries only as a metric's state.
    return loss, [loss.running_metric] if momentum is not None else []


def epoch_order(n: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """The rows of one epoch in training order: ``fit_torch``'s batches (a permutation of ``rng`` cut into
    ``batch_size`` pieces; the whole set in order, no draw, when one batch holds it)."""
    return np.arange(n) if batch_size >= n else rng.permutation(n)


def fit_cnn(model: Any, spec: LossSpec, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, *, epochs: int,
            lr: float, batch_size: int, seed: int, momentum: float | None = None) -> TrainResult:
    """Train the Keras ``model`` with Adam on ``spec`` as :func:`anyloss_bench.engines.fit_torch` trains the
    PyTorch one (same batches, rows of ``X`` in table10's ``(n, 1, 28, 28)`` layout); logits on ``X_val``."""
    import keras

    loss, metrics = keras_loss(spec, momentum)
    model.compile(optimizer=keras.optimizers.Adam(lr, epsilon=TORCH_ADAM_EPSILON), loss=loss, metrics=metrics,
                  jit_compile=JIT_COMPILE)
    Xk, yk = channels_last(X), y.reshape(-1, 1).astype("float32")
    weights = None
    if spec.kind == "wbce":
        w0, w1 = balanced_class_weights(y)
        weights = np.where(y == 1, w1, w0).astype("float32")
    n = len(y)
    rng = np.random.default_rng(seed)
    history, epoch_seconds = [], []
    start = time.perf_counter()
    for _ in range(epochs):
        epoch_start = time.perf_counter()
        order = epoch_order(n, batch_size, rng)
        # One fit call per epoch on the epoch's order (Keras keeps the compiled step, the optimizer and the
        # running counts between calls): the batches are the PyTorch loop's, not Keras's own shuffle.
        fit = model.fit(Xk[order], yk[order], batch_size=min(batch_size, n), epochs=1, shuffle=False, verbose=0,
                        sample_weight=None if weights is None else weights[order])
        history.append(float(fit.history["loss"][-1]))
        epoch_seconds.append(time.perf_counter() - epoch_start)
    seconds = time.perf_counter() - start
    val = model.predict(channels_last(X_val), batch_size=1024, verbose=0)[:, 0]
    return TrainResult(np.asarray(val, dtype=np.float32), history, seconds, epoch_seconds)


def backend_name() -> str:
    """``"keras (jax)"``: the command's backend and the Keras backend under it."""
    import keras

    return f"keras ({keras.backend.backend()})"
