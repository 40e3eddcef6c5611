"""Array namespace resolution: which namespace, which framework behind it, whether values can be read.

The core is written against the Python Array API standard.  ``get_namespace``
finds the namespace of the arrays it is given (through array-api-compat), or
takes the one a caller hands it (``xp=``, as the Keras adapter does with its
``keras.ops`` shim).  This is the one module of the core that knows frameworks by
name: the functions whose *meaning* needs the framework's own op (a sigmoid that
cannot overflow, a stop-gradient, softmax) and :func:`values_available`, which must
recognise tracers.  Steps that are only *faster* natively live behind the
per-backend hooks of :mod:`anyloss_core._fast_paths`.  Nothing here imports a
framework: a framework module is only looked up in ``sys.modules`` once an array
of that framework has been seen, which means the user already imported it.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import array_api_compat

from ._types import Array, Namespace

__all__ = [
    "compute_dtype",
    "differentiable",
    "get_namespace",
    "promotion_settings",
    "sigmoid",
    "softmax",
    "stop_gradient",
    "values_available",
]


def get_namespace(*arrays: Any, xp: Namespace | None = None) -> Namespace:
    """The Array API namespace of ``arrays``, or ``xp`` when given.

    Python scalars and ``None`` are ignored, so optional arguments can be passed
    straight through.  NumPy arrays resolve to ``array_api_compat.numpy``.
    """
    if xp is not None:
        return xp
    present = [a for a in arrays if a is not None and type(a) not in (bool, int, float, complex)]
    if not present:
        raise TypeError("anyloss needs at least one array argument to find its array namespace")
    torch_namespace = sys.modules.get("array_api_compat.torch")
    if torch_namespace is not None and all(_is_torch_tensor(a) for a in present):
        # What array_namespace returns for torch tensors, without its lru_cache'd type
        # lookups: torch.compile cannot trace into a cache and warns at every compile.
        return torch_namespace
    return array_api_compat.array_namespace(*present)


def _is_torch_tensor(x: Array) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


# array-api-compat's is_torch_namespace / is_jax_namespace, as plain name checks
# (theirs are lru_cache'd, which torch.compile warns about).
_TORCH_NAMESPACES = frozenset({"torch", "array_api_compat.torch"})
_JAX_NAMESPACES = frozenset({"jax.numpy", "jax.experimental.array_api"})


def _framework_module(xp: Namespace) -> ModuleType | None:
    """The framework behind a namespace, if it is one whose own ops the functions below use."""
    name = getattr(xp, "__name__", None)
    if name in _TORCH_NAMESPACES:
        return sys.modules.get("torch")
    if name in _JAX_NAMESPACES:
        return sys.modules.get("jax")
    return None


def sigmoid(x: Array, xp: Namespace) -> Array:
    """Logistic function ``1 / (1 + exp(-x))`` that cannot overflow.

    Uses the framework's own sigmoid where there is one (torch, JAX, or a
    namespace that exports ``sigmoid``, like the Keras shim): one fused kernel
    with a well-conditioned derivative.  Otherwise the standard form below.
    """
    native = getattr(xp, "sigmoid", None)
    if native is None:
        framework = _framework_module(xp)
        if framework is not None and framework.__name__ == "torch":
            native = framework.sigmoid
        elif framework is not None and framework.__name__ == "jax":
            native = framework.nn.sigmoid
    if native is not None:
        return native(x)
    # exp(-|x|) lies in (0, 1], so neither branch can overflow, and both branches
    # have finite derivatives: ``where`` then never multiplies an inf by zero,
    # which is what makes the naive 1 / (1 + exp(-x)) give NaN gradients at
    # x = -1000 under autodiff.
    e = xp.exp(-xp.abs(x))
    inv = 1.0 / (1.0 + e)
    return xp.where(x >= 0, inv, e * inv)


def softmax(z: Array, xp: Namespace) -> Array:
    """Softmax over the last axis, ``exp(z - max z) / sum exp(z - max z)``.

    The framework's own where there is one (torch, JAX, or a namespace that exports
    ``softmax``, like the Keras shim): its backward uses the output only,
    ``y (g - sum(g y))``, where autodiff of the formula below also differentiates
    the max shift (whose gradient is zero) and needs ``exp`` again.
    """
    framework = _framework_module(xp)
    if framework is not None and framework.__name__ == "torch":
        return framework.softmax(z, dim=-1)
    if framework is not None and framework.__name__ == "jax":
        return framework.nn.softmax(z, axis=-1)
    native = getattr(xp, "softmax", None)
    if native is not None:
        return native(z, axis=-1)
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def compute_dtype(dtype: Any, xp: Namespace) -> Any:
    """The floating dtype the counts are accumulated in: at least float32.

    float16 and bfloat16 inputs are promoted, because a sum of n values in half
    precision loses integers above 2048 and overflows above 65504.
    """
    if xp.isdtype(dtype, "real floating"):
        return xp.result_type(dtype, xp.float32)
    return xp.float32


def promotion_settings() -> Any:
    """The process-wide settings that change dtype promotion: JAX's x64 flag once JAX is loaded, else ``None``.

    ``compute_dtype`` of a float64 array under a JAX namespace is float32 or float64 as the
    flag says (``jax.enable_x64`` switches it for a block), so what ``anyloss_core._inputs``
    remembers per signature is keyed on it too.
    """
    jax = sys.modules.get("jax")
    return None if jax is None else bool(jax.config.jax_enable_x64)


def values_available(x: Array, xp: Namespace) -> bool:
    """True when checking the values of ``x`` is cheap and allowed.

    False under tracing (``jax.jit``, ``torch.compile``, ``torch.func.vmap``,
    any torch.func transform, a symbolic Keras tensor) and on accelerators, where reading a value back would
    force a host-device synchronisation in every training step.
    """
    if _is_torch_tensor(x):
        # Before the namespace's hook: every call of a torch loss passes here, and a
        # missing attribute of array_api_compat.torch costs a microsecond (its module
        # __getattr__ falls back to torch); the Keras shim's hook gives the same answer
        # for a torch tensor.  And before array-api-compat's type checks, which are
        # lru_cache'd (see get_namespace).
        torch = sys.modules["torch"]
        if torch.compiler.is_compiling():
            return False
        if not x.is_cpu:  # = device.type == "cpu", at a third of the cost
            return False
        functorch = getattr(torch._C, "_functorch", None)
        if functorch is not None and functorch.is_functorch_wrapped_tensor(x):
            return False
        return True
    hook = getattr(xp, "values_available", None)
    if hook is not None:
        return bool(hook(x))
    if array_api_compat.is_jax_array(x):
        # array-api-compat calls every JAX array lazy; only tracers are.
        jax = sys.modules["jax"]
        if isinstance(x, jax.core.Tracer):
            return False
        return all(d.platform == "cpu" for d in x.devices())
    if array_api_compat.is_lazy_array(x):
        return False
    return True


def class_range(ids: Array, classes: int, xp: Namespace) -> tuple[Array, Array]:
    """``ids`` and the classes ``0 .. classes - 1`` beside them, of one integer dtype on the ids' device: the
    ids' own, or int32 for 8- and 16-bit ids (:func:`comparable_ids`).

    Examples:
        >>> import numpy as np, array_api_compat.numpy as xp
        >>> ids, classes = class_range(np.array([0, 3], dtype=np.uint8), 300, xp)
        >>> ids.dtype, classes.dtype, int(classes[-1])
        (dtype('int32'), dtype('int32'), 299)
    """
    ids = comparable_ids(ids, xp)
    return ids, xp.arange(classes, dtype=ids.dtype, device=device_of(ids, xp))


def comparable_ids(ids: Array, xp: Namespace) -> Array:
    """Class ids of an 8- or 16-bit integer dtype as int32, other ids as they are.  A class count, a class
    range or an ``ignore_index`` in a narrow dtype overflows or wraps: with uint8 ids and 300 classes, classes
    256-299 matched ids 0-43 and the loss was silently wrong (array-api-strict raised); and TensorFlow's range
    has no uint8 kernel.  Wider ids are never cast (int32 could wrap them), nor float ids (predicted class ids
    given as floats)."""
    if xp.isdtype(ids.dtype, "integral") and xp.iinfo(ids.dtype).bits < 32:
        return xp.astype(ids, xp.int32)
    return ids


def device_of(x: Array, xp: Namespace) -> Any:
    """The device of ``x``, for arrays the core creates beside it (``xp.arange(C, device=device_of(ids, xp))``).

    ``array_api_compat.device``, or a namespace's ``device_of`` hook (the Keras shim: ``None``, since
    ``keras.ops`` places what it creates itself).  Without it a CUDA tensor's one-hot compared
    its ids with a ``(C,)`` range on the CPU and failed.
    """
    if _is_torch_tensor(x):
        return x.device  # not array-api-compat's lru_cache'd type checks: torch.compile traces them, warning
    hook = getattr(xp, "device_of", None)
    return hook(x) if hook is not None else array_api_compat.device(x)


def finfo_tiny(dtype: Any, xp: Namespace) -> float:
    """Smallest positive normal number of a floating dtype."""
    return float(xp.finfo(dtype).smallest_normal)


def stop_gradient(x: Array, xp: Namespace) -> Array:
    """``x`` as a constant for autodiff: the framework's own stop-gradient, or ``x`` where nothing differentiates.

    torch ``Tensor.detach``, ``jax.lax.stop_gradient``, or a namespace's ``stop_gradient``
    (the Keras shim's ``keras.ops.stop_gradient``); NumPy and array-api-strict have no
    autodiff, so there ``x`` is already a constant.
    """
    native = getattr(xp, "stop_gradient", None)
    if native is not None:
        return native(x)
    framework = _framework_module(xp)
    if framework is not None and framework.__name__ == "torch":
        return x.detach()
    if framework is not None and framework.__name__ == "jax":
        return framework.lax.stop_gradient(x)
    return x


def differentiable(xp: Namespace) -> bool:
    """Whether arrays of ``xp`` can carry gradients (torch, JAX, the Keras shim), so gradient-only terms matter."""
    return getattr(xp, "stop_gradient", None) is not None or _framework_module(xp) is not None


def __getattr__(name: str) -> object:
    # Names that moved to anyloss_core._fast_paths, for importers of the old path.
    if name in ("clip", "dot", "shrink"):
        from . import _fast_paths

        return getattr(_fast_paths, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
