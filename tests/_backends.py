"""One adapter object per array backend, so that one test body runs on all of them.

The ``backend`` fixture of ``tests/conftest.py`` yields one :class:`Backend` per
backend the session selects (``ANYLOSS_TEST_BACKENDS``).  A test passes NumPy
arrays and a loss configuration; the adapter converts them, calls the backend's
loss with its own argument order and input default, takes the gradient with
respect to the predictions where the framework has autodiff, and brings the
result back as a :class:`Result` of NumPy values::

    def test_loss_is_finite(backend):
        result = backend.value_and_grad(np.array([0, 1]), np.array([-1e4, 1e4]), "f1", from_logits=True)
        assert np.isfinite(result.value) and np.isfinite(result.grad).all()

==================  ===================================================  =============  ========================
backend             loss called as                                       input default  gradient
==================  ===================================================  =============  ========================
numpy               ``anyloss_core.anyloss(y_true, y_pred)``             probabilities  none
array_api_strict    ``anyloss_core.anyloss(y_true, y_pred)``             probabilities  none
torch               ``anyloss_torch.anyloss(input, target)``             logits         autograd
jax                 ``anyloss_jax.anyloss(logits, labels)``              logits         ``jax.value_and_grad``
keras               ``anyloss_keras.<Name>Loss(...)(y_true, y_pred)``    probabilities  the Keras backend's own
==================  ===================================================  =============  ========================
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

#: The order the tests run the backends in (and the ids they carry).
NAMES = ("numpy", "array_api_strict", "torch", "jax", "keras")
#: A configured loss class per metric name, where the framework has classes.
CLASS_NAMES = {"f1": "F1Loss", "fbeta": "FBetaLoss", "accuracy": "AccuracyLoss", "gmean": "GMeanLoss",
               "balanced_accuracy": "BalancedAccuracyLoss"}


@dataclasses.dataclass(frozen=True)
class Result:
    """A loss (and its gradient with respect to the predictions) brought back to NumPy."""

    value: float
    dtype: str  # the loss's dtype, by name ("float32")
    shape: tuple[int, ...]
    grad: np.ndarray | None = None  # as float64, the shape of the predictions
    grad_dtype: str | None = None


class Backend:
    """The interface every backend's adapter has; the subclasses below fill it in.

    Capabilities (``has``): ``"grad"`` autodiff with respect to the predictions;
    ``"float64"`` float64 losses in this process; ``"classes"`` configured loss
    classes that check their configuration at construction; ``"dtype_as_given"``
    the loss takes the predictions' dtype as given (Keras's ``Loss`` casts them to
    its own dtype first, so integer predictions are accepted there); ``"value_checks"`` its arrays live on
    the CPU, where eager calls check label and prediction values (on an accelerator they are skipped, as
    docs/errors.md says: reading a value back would wait for the device in every step).
    """

    name: str
    input_default: str  # "logits" or "probabilities": what from_logits defaults to
    float_dtypes: tuple[str, ...]  # the float dtypes predictions may have here
    capabilities: frozenset[str]

    def has(self, *capabilities: str) -> bool:
        return set(capabilities) <= self.capabilities

    def __repr__(self) -> str:
        return f"<backend {self.name}>"

    def loss_dtype(self, dtype: str) -> str:
        """The dtype the loss has for predictions of ``dtype``: float64 stays, lower precisions accumulate in
        float32."""
        return "float64" if dtype == "float64" else "float32"

    def loss(self, y: Any, pred: Any, metric: str = "f1", *, dtype: str = "float64", weight: Any = None,
             **config: Any) -> Result:
        """The loss of NumPy ``y`` (labels) and ``pred`` (converted to ``dtype``) with a configuration."""
        raise NotImplementedError

    def value_and_grad(self, y: Any, pred: Any, metric: str = "f1", *, dtype: str = "float32", weight: Any = None,
                       jit: bool = False, **config: Any) -> Result:
        """The loss and its gradient with respect to ``pred``; ``jit`` compiles the step where the framework's
        users do so by default (``jax.jit``)."""
        raise NotImplementedError(f"{self.name} has no gradient")

    def curvature(self, y: Any, pred: Any, direction: Any, metric: str = "f1", **config: Any) -> float:
        """``d^T H d``: the loss's second derivative along ``direction`` at ``pred`` (float64), by the
        framework's own second-order autodiff (backend ``"grad"`` and ``"float64"``)."""
        raise NotImplementedError(self.name)

    def build(self, metric: str = "f1", **config: Any) -> Any:
        """A configured loss object (the named class for the metric where there is one)."""
        raise NotImplementedError(f"{self.name} has no loss classes")


def _dtype_name(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1]


class CoreBackend(Backend):
    """``anyloss_core`` on NumPy or array-api-strict (no autodiff: values only)."""

    input_default = "probabilities"

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "numpy":
            self.xp = importlib.import_module("array_api_compat.numpy")
            self.float_dtypes = ("float16", "float32", "float64")
        else:
            self.xp = importlib.import_module("array_api_strict")
            self.float_dtypes = ("float32", "float64")
        self.capabilities = frozenset({"float64", "dtype_as_given", "value_checks"})
        self.al = importlib.import_module("anyloss_core")

    def _array(self, a: Any, dtype: str | None = None) -> Any:
        if a is None:
            return None
        a = np.asarray(a)
        if dtype is None:
            return self.xp.asarray(a)
        return self.xp.asarray(a.astype(dtype), dtype=getattr(self.xp, dtype))

    def loss(self, y, pred, metric="f1", *, dtype="float64", weight=None, **config):
        loss = self.al.anyloss(self._array(y), self._array(pred, dtype), metric,
                               sample_weight=self._array(weight), **config)
        name = next(d for d in self.float_dtypes if loss.dtype == getattr(self.xp, d))
        return Result(float(loss), name, tuple(loss.shape))


class TorchBackend(Backend):
    name = "torch"
    input_default = "logits"
    float_dtypes = ("float16", "bfloat16", "float32", "float64")

    def __init__(self) -> None:
        self.torch = importlib.import_module("torch")
        self.module = importlib.import_module("anyloss_torch")
        # ANYLOSS_TEST_DEVICE=cuda runs these cases on a GPU (a lent device machine); CI has none: "cpu".
        self.device = os.environ.get("ANYLOSS_TEST_DEVICE", "cpu")
        on_cpu = {"value_checks"} if self.device == "cpu" else set()
        self.capabilities = frozenset({"grad", "float64", "classes", "dtype_as_given"} | on_cpu)

    def _call(self, y, pred, metric, dtype, weight, requires_grad, config):
        torch, device = self.torch, self.device
        x = torch.tensor(np.asarray(pred, np.float64), device=device).to(getattr(torch, dtype))
        x.requires_grad_(requires_grad)
        # Weights as float64 whatever the predictions' dtype: a mixed pair is what users pass.
        w = None if weight is None else torch.tensor(np.asarray(weight, np.float64), device=device)
        return x, self.module.anyloss(x, torch.as_tensor(np.asarray(y), device=device), metric, weight=w, **config)

    def loss(self, y, pred, metric="f1", *, dtype="float64", weight=None, **config):
        _, loss = self._call(y, pred, metric, dtype, weight, False, config)
        return Result(loss.item(), _dtype_name(loss.dtype), tuple(loss.shape))

    def value_and_grad(self, y, pred, metric="f1", *, dtype="float32", weight=None, jit=False, **config):
        x, loss = self._call(y, pred, metric, dtype, weight, True, config)
        loss.backward()
        return Result(loss.item(), _dtype_name(loss.dtype), tuple(loss.shape),
                      x.grad.double().numpy(force=True), _dtype_name(x.grad.dtype))

    def curvature(self, y, pred, direction, metric="f1", **config):
        x, loss = self._call(y, pred, metric, "float64", None, True, config)
        return _torch_curvature(self.torch, loss, x, self.torch.tensor(np.asarray(direction, np.float64),
                                                                        device=self.device))

    def build(self, metric="f1", **config):
        return _build(self.module, metric, config)


def _torch_curvature(torch: Any, loss: Any, x: Any, d: Any) -> float:
    """``d^T H d`` of ``loss`` in ``x``: a backward that records a graph (``create_graph``), then a second one."""
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    (hd,) = torch.autograd.grad(torch.sum(grad * d), x)
    return float(torch.sum(hd * d))


def _jax_curvature(jax: Any, fn: Callable[[Any], Any], x: Any, d: Any) -> float:
    """``d^T H d`` of ``fn`` at ``x``: forward over reverse (``jax.jvp`` of ``jax.grad``)."""
    return float(jax.numpy.vdot(jax.jvp(jax.grad(fn), (x,), (d,))[1], d))


class JaxBackend(Backend):
    name = "jax"
    input_default = "logits"
    # float64 predictions run inside ``jax.enable_x64`` when JAX_ENABLE_X64 is off, but the "float64"
    # capability (the float64 reference) follows the flag: the nox session runs the reference tests
    # again with it on, and without it JAX's own default, float32, is what is checked.
    float_dtypes = ("float16", "bfloat16", "float32", "float64")

    def __init__(self) -> None:
        self.jax = importlib.import_module("jax")
        self.jnp = importlib.import_module("jax.numpy")
        self.module = importlib.import_module("anyloss_jax")
        x64 = bool(self.jax.config.jax_enable_x64)
        on_cpu = {"value_checks"} if self.jax.default_backend() == "cpu" else set()  # JAX takes a GPU if it has one
        self.capabilities = frozenset({"grad", "dtype_as_given"} | ({"float64"} if x64 else set()) | on_cpu)

    @contextlib.contextmanager
    def _precision(self, dtype: str) -> Iterator[None]:
        if dtype == "float64" and not self.jax.config.jax_enable_x64:
            with self.jax.enable_x64(True):
                yield
        else:
            yield

    def _fn(self, y, metric, dtype, weight, config) -> Callable[[Any], Any]:
        labels = self.jnp.asarray(np.asarray(y))
        w = None if weight is None else self.jnp.asarray(np.asarray(weight), dtype=dtype)
        return lambda logits: self.module.anyloss(logits, labels, metric, sample_weight=w, **config)

    def loss(self, y, pred, metric="f1", *, dtype="float64", weight=None, **config):
        with self._precision(dtype):
            loss = self._fn(y, metric, dtype, weight, config)(self.jnp.asarray(np.asarray(pred), dtype=dtype))
            return Result(float(loss), str(loss.dtype), tuple(loss.shape))

    def value_and_grad(self, y, pred, metric="f1", *, dtype="float32", weight=None, jit=False, **config):
        with self._precision(dtype):
            step = self.jax.value_and_grad(self._fn(y, metric, dtype, weight, config))
            loss, grad = (self.jax.jit(step) if jit else step)(self.jnp.asarray(np.asarray(pred), dtype=dtype))
            return Result(float(loss), str(loss.dtype), tuple(loss.shape),
                          np.asarray(grad.astype("float64") if dtype == "float64" else grad.astype("float32"),
                                     np.float64), str(grad.dtype))

    def curvature(self, y, pred, direction, metric="f1", **config):
        with self._precision("float64"):
            as_array = functools.partial(self.jnp.asarray, dtype="float64")
            return _jax_curvature(self.jax, self._fn(y, metric, "float64", None, config), as_array(np.asarray(pred)),
                                  as_array(np.asarray(direction)))


class KerasBackend(Backend):
    """``anyloss_keras`` on the Keras backend of the session (``KERAS_BACKEND``); gradients with that
    framework's autodiff.  A Keras ``Loss`` computes in its own dtype whatever the predictions' dtype:
    float32, or float64 where :meth:`loss` asks for it (``dtype="float64"``) for float64 predictions."""

    name = "keras"
    input_default = "probabilities"

    def __init__(self) -> None:
        self.keras = importlib.import_module("keras")
        self.module = importlib.import_module("anyloss_keras")
        self.framework = self.keras.backend.backend()
        float64 = self.framework != "jax" or bool(importlib.import_module("jax").config.jax_enable_x64)
        self.float_dtypes = ("float16", "bfloat16", "float32") + (("float64",) if float64 else ())
        self.capabilities = frozenset({"grad", "classes"} | ({"float64"} if float64 else set())
                                      | ({"value_checks"} if self._on_cpu() else set()))

    def _on_cpu(self) -> bool:
        """Whether Keras's backend puts new tensors on the CPU (each backend takes a GPU if it sees one)."""
        if self.framework == "tensorflow":
            return not importlib.import_module("tensorflow").config.list_logical_devices("GPU")
        if self.framework == "jax":
            return importlib.import_module("jax").default_backend() == "cpu"
        return not importlib.import_module("torch").cuda.is_available()

    def _tensor(self, pred, dtype):
        return self.keras.ops.convert_to_tensor(np.asarray(pred, np.float64), dtype=dtype)

    def _fn(self, y, metric, dtype, weight, config) -> Callable[[Any], Any]:
        loss_fn = self.build(metric, dtype="float64" if dtype == "float64" else None, **config)
        return lambda pred: loss_fn(np.asarray(y), pred, sample_weight=weight)

    def _numpy(self, x) -> np.ndarray:
        if self.framework == "torch":
            return x.detach().cpu().double().numpy()
        return np.asarray(x).astype(np.float64)  # bfloat16 arrives as ml_dtypes' bfloat16

    def loss(self, y, pred, metric="f1", *, dtype="float64", weight=None, **config):
        loss = self._fn(y, metric, dtype, weight, config)(self._tensor(pred, dtype))
        return Result(float(self._numpy(loss)), self.keras.backend.standardize_dtype(loss.dtype), tuple(loss.shape))

    def value_and_grad(self, y, pred, metric="f1", *, dtype="float32", weight=None, jit=False, **config):
        fn, x = self._fn(y, metric, dtype, weight, config), self._tensor(pred, dtype)
        if self.framework == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = fn(x)
            grad = tape.gradient(loss, x)
        elif self.framework == "jax":
            import jax

            loss, grad = jax.value_and_grad(fn)(x)
        else:
            x = x.detach().requires_grad_(True)
            loss = fn(x)
            loss.backward()
            grad = x.grad
        standardize = self.keras.backend.standardize_dtype
        return Result(float(self._numpy(loss)), standardize(loss.dtype), tuple(loss.shape), self._numpy(grad),
                      standardize(grad.dtype))

    def curvature(self, y, pred, direction, metric="f1", **config):
        fn, x, d = self._fn(y, metric, "float64", None, config), self._tensor(pred, "float64"), \
            self._tensor(direction, "float64")
        if self.framework == "tensorflow":  # nested tapes
            import tensorflow as tf

            with tf.GradientTape() as outer:
                outer.watch(x)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    loss = fn(x)
                along = tf.reduce_sum(inner.gradient(loss, x) * d)
            return float(tf.reduce_sum(outer.gradient(along, x) * d))
        if self.framework == "jax":
            return _jax_curvature(importlib.import_module("jax"), fn, x, d)
        x = x.detach().requires_grad_(True)
        return _torch_curvature(importlib.import_module("torch"), fn(x), x, d)

    def build(self, metric="f1", **config):
        return _build(self.module, metric, config)


def _build(module: Any, metric: str, config: dict[str, Any]) -> Any:
    config = {k: v for k, v in config.items() if v is not None}
    if metric in CLASS_NAMES:
        return getattr(module, CLASS_NAMES[metric])(**config)
    return module.AnyLoss(metric, **config)


@functools.cache
def get(name: str) -> Backend:
    """The adapter of backend ``name`` (one per process: a framework is imported once)."""
    if name in ("numpy", "array_api_strict"):
        return CoreBackend(name)
    return {"torch": TorchBackend, "jax": JaxBackend, "keras": KerasBackend}[name]()
