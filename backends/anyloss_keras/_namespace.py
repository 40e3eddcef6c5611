"""A small Array-API-style namespace on ``keras.ops``, for the core.

array-api-compat does not know TensorFlow tensors, so the Keras adapter hands the
core this namespace instead: the handful of functions the core calls, each a
``keras.ops`` call, so one code path serves the TensorFlow, JAX and PyTorch
backends.  It covers only what ``anyloss_core`` uses.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import array_api_compat
import keras
from keras import ops

from anyloss_core import adapters

float16, float32, float64, bool = "float16", "float32", "float64", "bool"  # noqa: A001
int32 = "int32"  # 8- and 16-bit class ids are compared as int32 (anyloss_core._namespace.comparable_ids)

asarray = ops.convert_to_tensor
reshape = ops.reshape
sum = ops.sum  # noqa: A001
where = ops.where
stack = ops.stack  # the running counts' update stacks the four counts
stop_gradient = ops.stop_gradient  # gradient-only terms (the rescue, the running counts)
sqrt = ops.sqrt
exp = ops.exp
abs = ops.abs  # noqa: A001
tanh = ops.tanh
sin = ops.sin
cos = ops.cos  # the sol-cosine derivative (its closed-form pullback)
sigmoid = ops.sigmoid  # the backend's own, stable sigmoid
softmax = ops.softmax  # the backend's own (its backward uses the output only)
all = ops.all  # noqa: A001
any = ops.any  # noqa: A001
ones_like = ops.ones_like
zeros_like = ops.zeros_like
isfinite = ops.isfinite
log = ops.log


def mean(x: Any, axis: Any = None) -> Any:
    # Not ops.mean: on the torch backend it computes float64 input in float32.
    count = math.prod(x.shape) if axis is None else x.shape[axis]
    return ops.sum(x, axis=axis) / float(count)


max = ops.max  # noqa: A001
min = ops.min  # noqa: A001
argmax = ops.argmax


def arange(stop: int, dtype: Any = None, device: Any = None) -> Any:
    return ops.arange(stop, dtype=None if dtype is None else _name(dtype))


def ones(shape: tuple[int, ...], dtype: Any = None, device: Any = None) -> Any:
    return ops.ones(shape, dtype=None if dtype is None else _name(dtype))


def device_of(x: Any) -> None:
    """No device to pass on: ``keras.ops`` places the arrays it creates on the backend's own device."""
    return None


def finfo(dtype: Any) -> Any:
    import numpy as np

    return np.finfo(_name(dtype))


def iinfo(dtype: Any) -> Any:
    import numpy as np

    return np.iinfo(_name(dtype))


_KINDS = {
    "bool": ("bool",),
    "integral": ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
    "real floating": ("float16", "bfloat16", "float32", "float64"),
}


def _name(dtype: Any) -> str:
    return keras.backend.standardize_dtype(dtype)


def isdtype(dtype: Any, kind: str | tuple[str, ...]) -> bool:
    kinds = (kind,) if isinstance(kind, str) else kind
    name = _name(dtype)
    return builtins.any(name in _KINDS[k] for k in kinds)  # the module's `any` is keras.ops.any


_FLOAT_RANK = {"float16": 1, "bfloat16": 1, "float32": 2, "float64": 3}


def result_type(*dtypes: Any) -> str:
    """Array API promotion for the dtypes the core mixes (floats, with ints or bools).

    Not ``keras.backend.result_type``: on the torch backend it gives float32 for
    (float64, float32).
    """
    floats = sorted({_name(d) for d in dtypes} & set(_FLOAT_RANK), key=_FLOAT_RANK.__getitem__)
    if not floats:
        return keras.backend.result_type(*(_name(d) for d in dtypes))
    if floats[-1] in ("float16", "bfloat16") and len(floats) == 2:
        return "float32"  # float16 with bfloat16
    return floats[-1]


def astype(x: Any, dtype: Any, copy: bool = True) -> Any:  # keras.ops.cast never aliases anyway
    return ops.cast(x, _name(dtype))


def clip(x: Any, lo: float | None, hi: float | None) -> Any:
    # where() with bounds of x's dtype: on the torch backend ops.maximum(float64, float64)
    # returns float32.
    dtype = _name(x.dtype)
    if lo is not None:
        bound = ops.convert_to_tensor(lo, dtype=dtype)
        x = ops.where(x < bound, bound, x)
    if hi is not None:
        bound = ops.convert_to_tensor(hi, dtype=dtype)
        x = ops.where(x > bound, bound, x)
    return x


def values_available(x: Any) -> bool:
    """Concrete values outside tracing (``tf.function``, ``jit``, compile) and accelerators."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and not tf.is_symbolic_tensor(x) and "GPU" not in (x.device or "")
    try:
        namespace = array_api_compat.array_namespace(x)
    except TypeError:
        return False
    return adapters.values_available(x, namespace)
