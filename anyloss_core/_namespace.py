"""Array namespace resolution and the few native fast paths the core uses.

The core is written against the Python Array API standard.  ``get_namespace``
finds the namespace of the arrays it is given (through array-api-compat), or
takes the one a caller hands it (``xp=``, as the Keras adapter does with its
``keras.ops`` shim).  Nothing here imports a framework: a framework module is
only looked up in ``sys.modules`` once an array of that framework has been seen,
which means the user already imported it.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import array_api_compat

from ._types import Array, Namespace

__all__ = [
    "clip",
    "dot",
    "get_namespace",
    "compute_dtype",
    "sigmoid",
    "softmax",
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
    """The framework behind a namespace, if it is one we have a fast path for."""
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


def sigmoid_of_temporary(x: Array, xp: Namespace) -> Array:
    """``sigmoid(x)`` for an ``x`` the caller owns and no longer needs: in place where that is cheap.

    torch gets ``torch.sigmoid_`` (on a CPU a fresh n-element buffer costs page faults
    on top of the arithmetic); elsewhere :func:`sigmoid` (JAX arrays are immutable,
    and XLA reuses buffers itself).
    """
    framework = _framework_module(xp)
    if framework is not None and framework.__name__ == "torch" and not _needs_autograd(x):
        return framework.sigmoid_(x)
    return sigmoid(x, xp)


def scale_temporary(x: Array, scale: float, xp: Namespace) -> Array:
    """``x * scale`` for an ``x`` the caller owns and no longer needs: in place where autograd allows.

    Not in place for a torch tensor that autograd records or ``torch.compile`` traces:
    the torch adapter's compiled path saves selected activations for the backward,
    and PyTorch asks that such a region hold no in-place ops.
    """
    framework = _framework_module(xp)
    if framework is not None and framework.__name__ == "torch" and _needs_autograd(x):
        return x * scale
    x *= scale  # a rebinding for immutable arrays (JAX)
    return x


def times_one_minus(x: Array, p: Array, xp: Namespace) -> Array:
    """``x * (1 - p)`` for an ``x`` the caller owns: in place (one fused kernel) on torch."""
    framework = _framework_module(xp)
    if framework is not None and framework.__name__ == "torch" and not _needs_autograd(x):
        return x.addcmul_(x, p, value=-1.0)
    return x * (1.0 - p)


def _needs_autograd(x: Array) -> bool:
    # In-place updates of a tensor that autograd records would be an error or, worse,
    # silently change what the backward pass reads.
    torch = sys.modules["torch"]
    return bool(x.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling()


def clip(x: Array, lo: float | None, hi: float | None, xp: Namespace) -> Array:
    """``clip(x, lo, hi)`` with Python-scalar bounds; either bound may be ``None``.

    torch gets ``torch.clamp`` directly: array-api-compat's wrapper promotes the
    scalars with ``torch.result_type``, which ``torch.compile(fullgraph=True)``
    cannot trace.
    """
    framework = _framework_module(xp)
    if framework is not None and framework.__name__ == "torch":
        return framework.clamp(x, lo, hi)
    return xp.clip(x, lo, hi)


def dot(a: Array, b: Array, xp: Namespace) -> Array:
    """``sum(a * b)`` of two 1-D arrays, as a 0-d array.

    torch gets one BLAS dot: eager torch would otherwise allocate an n-element
    product per count, and on a CPU fresh large allocations cost more than the
    arithmetic.  (BLAS accumulates sequentially: for 1e7 float32 terms the
    relative error is about 1e-6, against 1e-7 for a pairwise sum.)  Elsewhere
    ``sum(a * b)``, which XLA fuses into one pass and NumPy sums pairwise.
    """
    framework = _framework_module(xp)
    if framework is not None and framework.__name__ == "torch":
        return framework.dot(a, b)
    return xp.sum(a * b)


def compute_dtype(dtype: Any, xp: Namespace) -> Any:
    """The floating dtype the counts are accumulated in: at least float32.

    float16 and bfloat16 inputs are promoted, because a sum of n values in half
    precision loses integers above 2048 and overflows above 65504.
    """
    if xp.isdtype(dtype, "real floating"):
        return xp.result_type(dtype, xp.float32)
    return xp.float32


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


def shrink(x: Array, threshold: float, xp: Namespace) -> Array:
    """``x`` where ``|x| > threshold``, else 0: torch's ``hardshrink`` (one kernel), ``where`` elsewhere."""
    framework = _framework_module(xp)
    if framework is not None and framework.__name__ == "torch":
        return framework.nn.functional.hardshrink(x, threshold)
    return xp.where(xp.abs(x) > threshold, x, xp.zeros_like(x))


def differentiable(xp: Namespace) -> bool:
    """Whether arrays of ``xp`` can carry gradients (torch, JAX, the Keras shim), so gradient-only terms matter."""
    return getattr(xp, "stop_gradient", None) is not None or _framework_module(xp) is not None


# --- value checks: one fused pass where the framework has the ops (anyloss_core._confusion) ------------


def _torch_of(x: Array) -> Any:
    """The torch module when ``x`` is a torch tensor (the value checks' fast path), else ``None``.

    By the array's type, not the namespace: Keras on PyTorch hands the core torch
    tensors with its own ``keras.ops`` namespace, whose calls cost more.
    """
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(x, torch.Tensor) else None


#: Labels checked per block in torch: the check's temporary stays one reused 4 MB buffer (float32).
_CHECK_BLOCK = 1 << 20


def all_binary(y: Array, xp: Namespace) -> bool:
    """Whether every label is 0 or 1; False for NaN and infinities.

    ``y - y * y`` is exactly 0 for 0 and 1 and nonzero or NaN for every other value
    (below 1 ``y * y`` rounds to less than ``y``, above 1 to more; ``inf - inf`` is
    NaN), so in torch the check is one fused elementwise kernel and one min/max
    reduction, both vectorised, where ``all((y == 0) | (y == 1))`` runs three
    boolean kernels and a reduction and allocates three arrays: on one CPU thread
    0.20 ms against 1.8 ms at n = 1e6.  Above 2**20 labels it runs block by block
    into one reused 4 MB buffer: a fresh 40 MB temporary at n = 1e7 costs 45 ms in
    page faults alone, the blocks 3.7 ms in all (the boolean form: 33 ms).
    Elsewhere the boolean expression, which XLA fuses and NumPy runs fast.
    """
    torch = _torch_of(y)
    if torch is not None:
        flat = y.detach().reshape(-1)  # no autograd record of the check
        if flat.shape[0] <= _CHECK_BLOCK:
            return _zero_residual(torch, torch.addcmul(flat, flat, flat, value=-1.0))
        buffer = torch.empty_like(flat[:_CHECK_BLOCK])
        for start in range(0, flat.shape[0], _CHECK_BLOCK):
            block = flat[start:start + _CHECK_BLOCK]
            out = buffer[:block.shape[0]]
            if not _zero_residual(torch, torch.addcmul(block, block, block, value=-1.0, out=out)):
                return False
        return True
    return bool(xp.all((y == 0) | (y == 1)))


def _zero_residual(torch: Any, residual: Array) -> bool:
    """Whether ``residual`` is 0 everywhere: one min/max pass (min and max propagate NaN)."""
    lo, hi = torch.aminmax(residual)
    return float(lo) == 0.0 and float(hi) == 0.0


def all_in_unit_interval(p: Array, xp: Namespace) -> bool:
    """Whether ``0 <= p <= 1`` everywhere; False for NaN.  torch: one min/max pass, no allocation."""
    torch = _torch_of(p)
    if torch is not None:
        lo, hi = torch.aminmax(p.detach())
        return float(lo) >= 0.0 and float(hi) <= 1.0
    return bool(xp.all((p >= 0) & (p <= 1)))


def all_non_negative(w: Array, xp: Namespace) -> bool:
    """Whether ``w >= 0`` everywhere; False for NaN.  torch: one min pass, no allocation."""
    torch = _torch_of(w)
    if torch is not None:
        return float(torch.amin(w.detach())) >= 0.0
    return bool(xp.all(w >= 0))
