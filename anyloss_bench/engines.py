"""Training engines: the paper's SLP and MLP trained with one loss, per backend.

Each engine takes standardized float32 features and 0/1 labels and returns the
validation logits, the training loss per epoch and the wall time.  The losses
come from the adapters (``anyloss_jax``, ``anyloss_torch``, ``anyloss_keras``) or
the framework's own MSE / BCE / class-weighted BCE / sigmoid focal loss; nothing here
re-implements a loss.

Models (the paper's section 4): SLP = one logistic unit; MLP = one hidden layer of
2 sigmoid units with batch normalization before the activation (Keras defaults:
momentum 0.99, epsilon 1e-3, in all three engines).

What the engines share: :func:`epoch_batches` (every epoch's batches, drawn from one NumPy
generator seeded by ``seed``, so JAX and torch train on the same batches) and :func:`run_epochs`
(the epoch loop: loss history, per-epoch time, ``on_epoch``).  The JAX engine's optimiser step is
:func:`anyloss_bench.jax_engine.optimizer_step`, the one ``suite``, the protocols and
``compare --task multiclass`` use (they run it over padded folds in one vmapped program,
:mod:`anyloss_bench.jax_engine`); the torch engine :func:`fit_torch` also trains table10's CNN.
Keras trains through ``model.fit``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

__all__ = ["LossSpec", "TrainResult", "train", "fit_torch", "check_momentum", "BACKENDS", "balanced_class_weights",
           "FOCAL_GAMMA", "epoch_batches", "run_epochs", "BatchGatherer"]

BACKENDS = ("jax", "torch", "keras")


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """What to minimise: "mse", "bce", "wbce", "focal", or an AnyLoss metric with its approximation."""

    kind: str  # "mse" | "bce" | "wbce" | "focal" | "anyloss"
    metric: str = "f1"
    params: tuple[tuple[str, float], ...] = ()
    approximation: str = "anyloss"


@dataclasses.dataclass
class TrainResult:
    val_logits: np.ndarray
    history: list[float]
    seconds: float
    #: Wall time of each epoch; the first includes compilation and warm-up.
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        """Median epoch time after the first (compilation and caches out of the way)."""
        steady = self.epoch_seconds[1:] or self.epoch_seconds or [self.seconds]
        return float(np.median(steady))


#: The focusing parameter of the sigmoid focal loss (Lin et al. 2017), every backend: the default of
#: ``optax.sigmoid_focal_loss``, ``keras.losses.BinaryFocalCrossentropy`` and torchvision's
#: ``sigmoid_focal_loss``; no alpha class weighting (optax's and Keras's default; torchvision's ``alpha=-1``).
FOCAL_GAMMA = 2.0


def balanced_class_weights(y: np.ndarray) -> tuple[float, float]:
    """``(w0, w1)`` with ``w_c = n / (2 n_c)``: scikit-learn's ``class_weight="balanced"`` for two classes."""
    y = np.asarray(y)
    n, n1 = len(y), int(np.sum(y == 1))
    n0 = n - n1
    return (n / (2 * n0) if n0 else 1.0), (n / (2 * n1) if n1 else 1.0)


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The row indices of one epoch's mini-batches, in training order: a permutation drawn from ``rng`` cut into
    ``batch_size`` pieces (the last one shorter); the whole set in order, with no draw, when one batch holds it.

    Every per-fold engine (JAX, torch, and so Keras's when it follows torch's batches) takes its batches here,
    so the backends of ``anyloss compare`` see the same batches for the same seed.
    """
    return [np.arange(n)] if batch_size >= n else _batches(n, batch_size, rng)


class BatchGatherer:
    """``gather(idx) -> (X[idx], y[idx])`` written into two buffers allocated once: no allocation per step.

    ``numpy.take(..., out=)`` into a preallocated buffer: on one CPU thread it gathers 4,096 random rows of 12
    float32 columns in about a quarter of the time of ``torch`` advanced indexing (``Xt[sel]``, ~4x slower) and
    half that of ``X[idx]``, which also allocates a new array every step.  The arrays returned are views of the
    buffers, overwritten by the next call: a step must be done with them (forward and backward) before it
    gathers again.  ``rows``: train on ``X[rows]`` without copying it (``idx`` then indexes ``rows``).

    >>> g = BatchGatherer(np.arange(10.).reshape(5, 2), np.arange(5), capacity=2)
    >>> xb, yb = g(np.array([4, 1]))
    >>> xb.tolist(), yb.tolist()
    ([[8.0, 9.0], [2.0, 3.0]], [4, 1])
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, capacity: int, rows: np.ndarray | None = None) -> None:
        self.X, self.y, self.rows = X, y, rows
        self.x_buffer = np.empty((capacity, *X.shape[1:]), X.dtype)
        self.y_buffer = np.empty((capacity, *y.shape[1:]), y.dtype)

    def __call__(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.rows is not None:
            idx = self.rows[idx]
        k = len(idx)
        xb, yb = self.x_buffer[:k], self.y_buffer[:k]
        np.take(self.X, idx, axis=0, out=xb)
        np.take(self.y, idx, axis=0, out=yb)
        return xb, yb


def run_epochs(epochs: int, one_epoch: Any, on_epoch: Any = None) -> tuple[list[float], list[float], float]:
    """``(loss per epoch, seconds per epoch, total seconds)`` of ``epochs`` calls ``one_epoch(e) -> (loss, rows)``.

    ``one_epoch`` returns a Python float (so the epoch's work is done when its time is taken) and the number of
    rows it trained; ``on_epoch(e, seconds, rows)`` is called after each epoch (e.g. for a rows/s line).
    """
    history, epoch_seconds = [], []
    start = time.perf_counter()
    for epoch in range(epochs):
        epoch_start = time.perf_counter()
        value, rows = one_epoch(epoch)
        history.append(value)
        epoch_seconds.append(time.perf_counter() - epoch_start)
        if on_epoch is not None:
            on_epoch(epoch, epoch_seconds[-1], rows)
    return history, epoch_seconds, time.perf_counter() - start


def _train_jax(spec, X, y, X_val, arch, epochs, lr, batch_size, seed, on_epoch=None, rows=None) -> TrainResult:
    import jax
    import jax.numpy as jnp
    import optax

    import anyloss_jax

    from .jax_engine import optimizer_step

    key = jax.random.PRNGKey(seed)
    d = X.shape[1]
    if arch == "slp":
        params = {"w": jnp.zeros((d,)), "b": jnp.zeros(())}
        stats: dict[str, Any] = {}

        def forward(p, st, x, training):
            return x @ p["w"] + p["b"], st
    else:
        k1, k2 = jax.random.split(key)
        params = {
            "w1": jax.random.normal(k1, (d, 2)) * (1.0 / np.sqrt(d)),
            "gamma": jnp.ones((2,)),
            "beta": jnp.zeros((2,)),
            "w2": jax.random.normal(k2, (2,)) * (1.0 / np.sqrt(2)),
            "b2": jnp.zeros(()),
        }
        stats = {"mean": jnp.zeros((2,)), "var": jnp.ones((2,))}

        def forward(p, st, x, training):
            # Batch normalization of the hidden layer (Keras defaults: momentum 0.99, epsilon 1e-3).
            h = x @ p["w1"]
            if training:
                mean, var = h.mean(0), h.var(0)
                st = {"mean": 0.99 * st["mean"] + 0.01 * mean, "var": 0.99 * st["var"] + 0.01 * var}
            else:
                mean, var = st["mean"], st["var"]
            h = (h - mean) / jnp.sqrt(var + 1e-3) * p["gamma"] + p["beta"]
            return jax.nn.sigmoid(h) @ p["w2"] + p["b2"], st

    w0, w1 = balanced_class_weights(y if rows is None else y[rows])

    def loss_fn(p, st, x, t):
        z, st = forward(p, st, x, True)
        if spec.kind == "mse":
            value = jnp.mean((jax.nn.sigmoid(z) - t) ** 2)
        elif spec.kind == "bce":
            value = optax.sigmoid_binary_cross_entropy(z, t.astype(z.dtype)).mean()
        elif spec.kind == "wbce":
            weight = jnp.where(t == 1, w1, w0).astype(z.dtype)
            value = (optax.sigmoid_binary_cross_entropy(z, t.astype(z.dtype)) * weight).mean()
        elif spec.kind == "focal":
            value = optax.sigmoid_focal_loss(z, t.astype(z.dtype), gamma=FOCAL_GAMMA).mean()
        else:
            value = anyloss_jax.anyloss(z, t, spec.metric, approximation=spec.approximation, validate=False,
                                        **dict(spec.params))
        return value, st

    opt = optax.adam(lr)
    carry = (params, stats, opt.init(params))
    update = optimizer_step(loss_fn, opt)  # jax_engine's step (the suite's too), on unpadded batches
    whole = jax.jit(update)

    @jax.jit
    def gathered(carry, X_all, y_all, idx):
        # The batch is gathered inside the compiled step: one dispatch per step instead of three.
        return update(carry, (X_all[idx], y_all[idx]))

    # device_put, not jnp.asarray: on the CPU it aliases a 64-byte-aligned array (table11's encoded inputs are)
    # instead of copying it; an unaligned one is copied as before.
    Xj, yj = jax.device_put(X), jax.device_put(y)
    n = len(y) if rows is None else len(rows)
    rng, state = np.random.default_rng(seed), {"carry": carry}

    def one_epoch(_: int) -> tuple[float, int]:
        values = []
        for idx in epoch_batches(n, batch_size, rng):
            if batch_size >= n and rows is None:
                state["carry"], value = whole(state["carry"], (Xj, yj))  # the whole set: no gather
            else:
                state["carry"], value = gathered(state["carry"], Xj, yj, idx if rows is None else rows[idx])
            values.append(value)
        return float(jnp.mean(jnp.stack(values))), n  # float(): waits for the epoch's last step

    history, epoch_seconds, seconds = run_epochs(epochs, one_epoch, on_epoch)
    params, stats, _ = state["carry"]
    logits, _ = forward(params, stats, jnp.asarray(X_val), False)
    return TrainResult(np.asarray(logits), history, seconds, epoch_seconds)


def _torch_model(arch: str, d: int) -> Any:
    """The paper's SLP (zero init) or MLP (Dense(2) -> batch normalization -> sigmoid -> Dense(1)) in torch."""
    import torch

    from .parallel import BatchNorm1d

    if arch == "slp":
        model = torch.nn.Linear(d, 1)
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
        return model
    # BatchNorm1d: torch's own in one process; the global batch's statistics under --nproc.
    return torch.nn.Sequential(torch.nn.Linear(d, 2, bias=False), BatchNorm1d(2, momentum=0.01, eps=1e-3),
                               torch.nn.Sigmoid(), torch.nn.Linear(2, 1))


def check_momentum(momentum: float | None, backend: str = "torch") -> None:
    """A usage error unless ``anyloss_<backend>.AnyLoss`` takes ``momentum`` (running counts) and ``0 < m <= 1``.

    ``backend``: ``"torch"`` (``compare``, ``table10 --framework torch``) or ``"keras"`` (``table10 --framework
    keras``)."""
    if momentum is None:
        return
    import importlib
    import inspect

    from .data import UsageError

    adapter = f"anyloss_{backend}"
    if "momentum" not in inspect.signature(importlib.import_module(adapter).AnyLoss.__init__).parameters:
        raise UsageError(f"--momentum needs running counts ({adapter}.AnyLoss(metric, momentum=m)), which this "
                         f"version of {adapter} does not have")
    if not 0 < momentum <= 1:
        raise UsageError(f"--momentum must be in (0, 1], got {momentum:g}")


def _torch_loss(spec: LossSpec, y: np.ndarray, *, distributed: bool, momentum: float | None) -> Any:
    """``f(z, t, reduction)``: the loss of ``spec``; ``reduction`` "mean" or "sum" (AnyLoss: always the batch's
    loss, counts all-reduced when ``distributed``)."""
    import torch

    import anyloss_torch

    if spec.kind == "mse":
        def loss_fn(z, t, reduction):
            return torch.nn.functional.mse_loss(torch.sigmoid(z), t.to(z.dtype), reduction=reduction)
    elif spec.kind == "bce":
        def loss_fn(z, t, reduction):
            return torch.nn.functional.binary_cross_entropy_with_logits(z, t.to(z.dtype), reduction=reduction)
    elif spec.kind == "wbce":
        w0, w1 = balanced_class_weights(y)

        def loss_fn(z, t, reduction):
            weight = torch.where(t == 1, w1, w0).to(z.dtype)
            return torch.nn.functional.binary_cross_entropy_with_logits(z, t.to(z.dtype), weight=weight,
                                                                        reduction=reduction)
    elif spec.kind == "focal":
        sigmoid_focal_loss = _torchvision_focal()

        def loss_fn(z, t, reduction):
            return sigmoid_focal_loss(z, t.to(z.dtype), alpha=-1, gamma=FOCAL_GAMMA, reduction=reduction)
    else:
        extra: dict[str, Any] = {"distributed": True} if distributed else {}
        if momentum is not None:
            check_momentum(momentum)
            extra["momentum"] = momentum
        module = anyloss_torch.AnyLoss(spec.metric, approximation=spec.approximation, validate=False,
                                       **extra, **dict(spec.params))

        def loss_fn(z, t, reduction):
            return module(z, t)
    return loss_fn


def fit_torch(model: Any, spec: LossSpec, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, *, epochs: int,
              lr: float, batch_size: int, seed: int, min_batch: int = 1, momentum: float | None = None,
              on_epoch: Any = None, rows: np.ndarray | None = None, compile: bool = False) -> TrainResult:
    """Train ``model`` (logits ``(n, 1)``) with Adam on ``spec``, mini-batches streamed from the arrays.

    Each epoch shuffles the row indices (``numpy`` generator seeded by ``seed``) and takes ``batch_size`` of them
    per step, gathered into buffers allocated once (:class:`BatchGatherer`; no per-row Python, no allocation per
    step; on a GPU, ``index_select`` on the device).  ``rows``: train on ``X[rows], y[rows]`` without copying them.
    ``compile``: the model's forward pass and the loss (and so their backward) run as one ``torch.compile``
    program (``dynamic=False``: one compilation for the full batches, one for the shorter last); one process
    only; the optimizer step stays eager.  Global batches smaller than ``min_batch`` are skipped (2 for batch
    normalization).  Under a ``torch.distributed`` process group of ``W`` ranks (``anyloss --nproc``, torchrun)
    every rank draws the same global batches and trains on its :func:`anyloss_bench.parallel.shard` of each,
    the model wrapped in ``DistributedDataParallel``: AnyLoss with ``distributed=True``, mean losses as
    ``sum(shard) * W / n_global`` (DDP averages the gradients over ranks), so the steps are the single-process
    ones up to rounding.  ``on_epoch(epoch, seconds, rows)`` after each epoch (rows: global rows trained).
    """
    import torch

    from .parallel import all_reduce_sum, device, shard, world

    rank, size = world()
    if compile and size > 1:
        from .data import UsageError

        raise UsageError("--compile runs in one process (leave out --nproc)")
    dev = device()
    model = model.to(dev)
    loss_fn = _torch_loss(spec, y if rows is None else y[rows], distributed=size > 1, momentum=momentum)
    net = model
    if size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(y) if rows is None else len(rows)
    rng = np.random.default_rng(seed)
    on_cpu = dev.type == "cpu"
    if on_cpu:
        Xt, yt = torch.as_tensor(X), torch.as_tensor(y)  # no copy
        gather = BatchGatherer(X, y, min(batch_size, n), rows)
    else:
        Xt, yt = torch.as_tensor(X, device=dev), torch.as_tensor(y, device=dev)
        on_device = None if rows is None else torch.as_tensor(rows, device=dev)

    def batch_loss(xb: Any, tb: Any, n_global: int, net: Any = net) -> Any:
        z = net(xb)[:, 0]
        return loss_fn(z, tb, "mean") if size == 1 else _scaled(loss_fn(z, tb, "sum"), spec, size, n_global)

    if compile:
        # Each fit's closure is new code for dynamo: without a reset the cache of earlier fits fills up and after
        # 8 recompilations dynamo silently runs the step eagerly.
        torch._dynamo.reset()
    step_loss = torch.compile(batch_loss, dynamic=False) if compile else batch_loss

    def one_epoch(_: int, opt: Any = opt, step_loss: Any = step_loss) -> tuple[float, int]:
        values, trained = [], 0
        for idx in epoch_batches(n, batch_size, rng):
            if len(idx) < min_batch:
                continue  # batch normalization needs two samples
            local = idx if size == 1 else shard(idx, rank, size)
            if batch_size >= n and size == 1 and rows is None:
                xb, tb = Xt, yt  # the whole set: no copy
            elif on_cpu:
                xb, tb = (torch.from_numpy(a) for a in gather(local))  # views of the buffers
            else:
                sel = torch.from_numpy(local).to(dev)
                sel = sel if on_device is None else on_device[sel]
                xb, tb = Xt.index_select(0, sel), yt.index_select(0, sel)
            opt.zero_grad()
            loss = step_loss(xb, tb, len(idx))
            loss.backward()  # done with this step's buffers before the next gather overwrites them
            opt.step()
            values.append(loss.detach())
            trained += len(idx)
        value = torch.stack(values).mean() if values else torch.zeros((), device=dev)
        if size > 1 and spec.kind != "anyloss":  # each rank holds W x its part of the mean: average them
            value = all_reduce_sum(value.reshape(1))[0] / size
        return float(value), trained

    history, epoch_seconds, seconds = run_epochs(epochs, one_epoch, on_epoch)
    del one_epoch, batch_loss, step_loss, net, opt  # the DDP wrapper (its reducer holds the process group) goes
    # before the caller tears down
    model.eval()
    with torch.no_grad():
        val = model(torch.as_tensor(X_val, device=dev))[:, 0].cpu().numpy()
    return TrainResult(val, history, seconds, epoch_seconds)


def _scaled(total: Any, spec: LossSpec, size: int, n_global: int) -> Any:
    """A shard's share of the global batch's loss such that DDP's average over ``size`` ranks is that loss."""
    if spec.kind == "anyloss":
        return total  # the counts were all-reduced: already the global batch's loss
    return total * (size / n_global)


def _train_torch(spec, X, y, X_val, arch, epochs, lr, batch_size, seed, momentum=None, on_epoch=None, rows=None,
                 compile=False) -> TrainResult:
    import torch

    torch.manual_seed(seed)
    model = _torch_model(arch, X.shape[1])
    return fit_torch(model, spec, X, y, X_val, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                     min_batch=2 if arch == "mlp" else 1, momentum=momentum, on_epoch=on_epoch, rows=rows,
                     compile=compile)


def _torchvision_focal() -> Any:
    try:
        from torchvision.ops import sigmoid_focal_loss
    except ImportError:
        from .data import UsageError

        raise UsageError("loss 'focal' on --backend torch needs torchvision: pip install torchvision") from None
    return sigmoid_focal_loss


def _train_keras(spec, X, y, X_val, arch, epochs, lr, batch_size, seed) -> TrainResult:
    import keras

    import anyloss_keras

    keras.utils.set_random_seed(seed)
    layers: list[Any] = [keras.Input((X.shape[1],))]
    if arch == "mlp":
        layers += [keras.layers.Dense(2, use_bias=False), keras.layers.BatchNormalization(),
                   keras.layers.Activation("sigmoid")]
    layers.append(keras.layers.Dense(1, kernel_initializer="zeros" if arch == "slp" else "glorot_uniform"))
    model = keras.Sequential(layers)
    if spec.kind == "mse":
        def mse(t, z):
            return keras.ops.mean((keras.ops.sigmoid(z[:, 0]) - keras.ops.cast(t[:, 0], z.dtype)) ** 2)
        loss: Any = mse
    elif spec.kind in ("bce", "wbce"):
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
    elif spec.kind == "focal":
        loss = keras.losses.BinaryFocalCrossentropy(gamma=FOCAL_GAMMA, from_logits=True)
    else:
        loss = anyloss_keras.AnyLoss(metric=spec.metric, from_logits=True, approximation=spec.approximation,
                                     validate=False, **dict(spec.params))
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    timer = _epoch_timer(keras)
    start = time.perf_counter()
    fit = model.fit(X, y.reshape(-1, 1).astype("float32"), epochs=epochs, batch_size=min(batch_size, len(y)),
                    shuffle=True, verbose=0, callbacks=[timer],
                    class_weight=dict(enumerate(balanced_class_weights(y))) if spec.kind == "wbce" else None)
    seconds = time.perf_counter() - start
    return TrainResult(model.predict(X_val, verbose=0)[:, 0], list(fit.history["loss"]), seconds, timer.seconds)


def _epoch_timer(keras: Any) -> Any:
    """A Keras callback that records the wall time of each epoch."""

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def train(backend: str, spec: LossSpec, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, *, arch: str,
          epochs: int, lr: float, batch_size: int, seed: int, momentum: float | None = None,
          on_epoch: Any = None, rows: np.ndarray | None = None, compile: bool = False) -> TrainResult:
    """Train ``arch`` with ``spec`` on ``(X, y)``; logits on ``X_val``, loss per epoch, seconds.

    ``momentum``: AnyLoss with running counts (``anyloss_torch.AnyLoss(metric, momentum=m)``; torch only).
    ``on_epoch(epoch, seconds, rows)``: called after each epoch (torch and JAX), e.g. for a rows/s line.
    ``rows``: train on ``X[rows], y[rows]`` without copying them (torch and JAX; the batches are those of
    ``train(..., X[rows], y[rows], ...)``).  ``compile``: ``torch.compile`` the forward pass and loss (torch,
    one process).  The labels are checked to be 0/1 here, once, so the losses run with ``validate=False``.
    """
    from .data import UsageError

    if momentum is not None and backend != "torch":
        raise UsageError(f"--momentum (running counts) runs on --backend torch, not {backend}")
    if compile and backend != "torch":
        raise UsageError(f"--compile (torch.compile) is for --backend torch, not {backend} (JAX's step is "
                         "compiled already)")
    y = y.astype(np.int64, copy=False)
    if not ((y == 0) | (y == 1)).all():
        raise UsageError("the labels must be 0 or 1")
    engine = {"jax": _train_jax, "torch": _train_torch, "keras": _train_keras}[backend]
    extra: dict[str, Any] = {"on_epoch": on_epoch} if on_epoch is not None else {}
    if momentum is not None:
        extra["momentum"] = momentum
    if compile:
        extra["compile"] = True
    if rows is not None:
        rows = np.asarray(rows, dtype=np.intp)
        if backend == "keras":  # model.fit takes arrays: the copy is made here
            X, y, rows = X[rows], y[rows], None
        else:
            extra["rows"] = rows
    return engine(spec, X.astype(np.float32, copy=False), y, X_val.astype(np.float32, copy=False), arch, epochs,
                  lr, batch_size, seed, **extra)
