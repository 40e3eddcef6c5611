"""The valid range of the amplifying scale L for a floating dtype (section 3.1, Table 1)."""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

__all__ = ["DEFAULT_SCALE", "check_scale", "scale_range"]

#: The default amplifying scale ``L`` of every loss, core and adapters (the paper's 73).
#: Inside the float64 range at accuracy 1e-3 (``scale_range("float64", 0.001) == (13.85, 73.62)``).
DEFAULT_SCALE: Final = 73.0

# Floating formats NumPy does not know, by their bits of precision (with the
# implicit bit) and largest finite value.
_EXTRA_FORMATS = {"bfloat16": (2.0**-7, 3.3895313892515355e38)}


def check_scale(scale: Any) -> float:
    """The amplifying scale ``L`` as a float; ``ValueError`` unless finite and > 0.

    Every entry point runs it (binary, multi-class, multi-label, the adapters'
    classes), also where the approximation ignores the scale, so a bad value fails
    the same way whatever the task.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a positive number, got {type(scale).__name__}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    return float(scale)


def _eps_and_max(dtype: Any) -> tuple[float, float]:
    name = getattr(dtype, "name", None) or str(dtype)
    name = name.rsplit(".", 1)[-1].strip("'\"<>")  # torch.float32, <dtype: 'float32'>, ...
    if name.startswith("dtype: "):
        name = name[len("dtype: ") :].strip("'\"")
    if name in _EXTRA_FORMATS:
        return _EXTRA_FORMATS[name]
    try:
        info = np.finfo(np.dtype(name))
    except (TypeError, ValueError):
        raise ValueError(f"scale_range needs a floating dtype, got {dtype!r}") from None
    return float(info.eps), float(info.max)


def scale_range(
    dtype: Any = "float64", accuracy: float = 1e-15, *, resolution: float | None = 0.01
) -> tuple[float, float]:
    r"""The range ``(L_min, L_max)`` of the scale ``L`` for a dtype and accuracy level.

    With ``t = accuracy`` (how close to 0 or 1 a prediction counts as decided):

    * "Amplifier": :math:`|A(p) - 1/2| \ge |p - 1/2|` at :math:`p = t` and
      :math:`1 - t`, which gives :math:`L \ge \ln((1 - t)/t) / (1/2 - t)`.
    * "No 0/1": :math:`0 < A(p) < 1` as computed in the dtype for
      :math:`p \in [t, 1 - t]`.  :math:`1 / (1 + e^{-x})` rounds to 1 once
      :math:`e^{-x} \le \varepsilon / 2` (half the machine epsilon), i.e. for
      :math:`x \ge \ln(2 / \varepsilon)`, and :math:`A(t)` underflows to 0 once
      :math:`e^{x}` overflows; so :math:`L \le \min(\ln(2/\varepsilon), \ln(\max))
      / (1/2 - t)`.

    The range is empty when ``L_min > L_max`` (float64 at ``t = 1e-16``, as in Table 1).

    Like Table 1, the bounds are the smallest and largest multiples of
    ``resolution`` that satisfy the conditions (so ``L_min`` is rounded up and
    ``L_max`` down: Table 1's 13.85 is the exact bound 13.8413 rounded up); pass
    ``resolution=None`` for the exact real-valued bounds.

    Args:
        dtype: a floating dtype or its name: "float64", "float32", "float16",
            "bfloat16", ``np.float32``, ``torch.float16``, ...
        accuracy: the accuracy level ``t`` in (0, 0.5).
        resolution: grid step of the returned bounds, or ``None`` for exact bounds.

    Examples:
        >>> import anyloss_core as al
        >>> al.scale_range("float64", 0.001)
        (13.85, 73.62)
        >>> al.scale_range("float32", 0.01)  # L = 73 saturates float32: see the docs on choosing L
        (9.38, 33.95)
        >>> [round(v, 4) for v in al.scale_range("float64", 0.001, resolution=None)]
        [13.8412, 73.6208]
    """
    if not (isinstance(accuracy, (int, float)) and 0.0 < accuracy < 0.5):
        raise ValueError(f"accuracy must be a number in (0, 0.5), got {accuracy!r}")
    eps, largest = _eps_and_max(dtype)
    t = float(accuracy)
    half_width = 0.5 - t
    l_min = math.log((1.0 - t) / t) / half_width
    l_max = min(math.log(2.0 / eps), math.log(largest)) / half_width
    if resolution is None:
        return l_min, l_max
    if not (isinstance(resolution, (int, float)) and resolution > 0):
        raise ValueError(f"resolution must be > 0 or None, got {resolution!r}")
    # round() only removes the representation error of k * resolution (13.850000000000001).
    digits = max(0, -math.floor(math.log10(resolution))) + 6
    return (
        round(math.ceil(l_min / resolution) * resolution, digits),
        round(math.floor(l_max / resolution) * resolution, digits),
    )
