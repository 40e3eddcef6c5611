"""torch's native forms of the core's replaceable steps (``anyloss_core.adapters.FastPaths``), registered on import.

What each buys on a CPU, where a loss step is bound by allocating n-element buffers
and by ``exp``:

* ``*_temporary`` and ``times_one_minus`` update the caller's fresh tensor in place
  (``sigmoid_``, ``mul_``, ``addcmul_``): a fresh n-element buffer costs page faults
  on top of the arithmetic.  Never for a tensor autograd records, nor while
  ``torch.compile`` traces: autograd would read the overwritten values, and the
  compiled path's selective checkpoint (``_autograd``) allows no in-place ops.
* ``dot``: one BLAS call instead of an n-element product and a sum.  (BLAS
  accumulates sequentially: for 1e7 float32 terms the relative error is about 1e-6,
  against 1e-7 for a pairwise sum.)
* ``counts_from_label_sums``: the binary counts as TP = y . A and FP = (1 - y) . A, FN and
  TN by differences from the label sums: no ``1 - A`` array (a fresh allocation whose page
  faults cost more than its arithmetic) and two dot products instead of four.
* ``dot_of_one_minus``: above ``_BLOCKED_ABOVE`` samples (on the CPU), ``1 - y`` block by block in
  one reused buffer (also the label check and the rescue slope: ``_BLOCK``, :func:`_block_size`).
* ``clip``: ``torch.clamp``; array-api-compat's wrapper promotes the scalars with
  ``torch.result_type``, which ``torch.compile(fullgraph=True)`` cannot trace.
* ``shrink``: ``hardshrink``, one kernel; ``shrink_temporary`` writes it into its input
  (``out=``; not under ``torch.func``, which has no batching rule for ``out=``).
* ``add_scaled_temporary``: ``add_(term, alpha=factor)``, one kernel (the rescue slope
  added to the pullback's gradient in the one-node backward).
* ``zero_with_gradient`` (the rescue term): :class:`_ZeroWithGradient`, a zero whose backward
  multiplies the upstream gradient by the slope.  The Array API form, ``sum(slope * (z - sg[z]))``,
  made the compiled CPU forward compute the slope and its masked product and sum every step,
  for a value of 0: with the node, the forward has no rescue arithmetic and inductor computes
  the slope in the backward pass from the saved sigmoid (``torch.compile`` at 1e6:
  benchmarks in docs/performance.md, seventh round).
* the value checks: one fused pass and one min/max reduction, no boolean temporaries
  (see :meth:`TorchFastPaths.all_binary`).
"""

from __future__ import annotations

from typing import Any

import torch

from anyloss_core.adapters import FastPaths, register_fast_paths

__all__ = ["TorchFastPaths", "is_torch_namespace", "reads_are_free"]

# array-api-compat's is_torch_namespace as a plain name check (theirs is lru_cache'd,
# which torch.compile warns about).
_TORCH_NAMESPACES = frozenset({"torch", "array_api_compat.torch"})

#: Elements per block where a step works block by block (the label check, FP's ``1 - y``, the rescue slope): its
#: temporary is one reused 256 kB buffer (float32) that stays in the cache, instead of an n-element array, whose
#: fresh pages cost more than its arithmetic (a 4 MB one at n = 1e6 came with about 1,000 page faults).
_BLOCK = 1 << 16
#: Above this many elements those steps work block by block; below it, the n-element temporary is small and
#: the blocks' extra kernels would cost more (n = 1e5: 1.93x BCE blocked by 2**16, 1.62x-1.66x whole;
#: ``benchmarks/block_sizes.py 1048576/1048576,65536/65536,65536/262144 1e5,3e5,1e6 30``).
_BLOCKED_ABOVE = 1 << 18
#: Up to this many elements the affine steps are one kernel (``scaled_plus``; above it, two passes).
_FUSED_AFFINE_MAX = 1 << 20
#: Up to this many labels the check reads them into Python (2 us at 32 labels, against 9 us for two kernels;
#: even at 128).
_CHECK_IN_PYTHON = 64
_BINARY = frozenset({0.0, 1.0})
# Bound once: looking an overload up through torch.ops costs about a microsecond per call.
_SIGMOID_BACKWARD = torch.ops.aten.sigmoid_backward.default
_SIGMOID_BACKWARD_OUT = torch.ops.aten.sigmoid_backward.grad_input


#: The dispatch-mode key of make_fx's proxy mode (read directly: ``get_proxy_mode`` costs twice as much).
PROXY_MODE = getattr(getattr(torch._C, "_TorchDispatchModeKey", None), "PROXY", None)


def recording() -> bool:
    """Whether a trace is recording the operations: ``torch.jit.trace``, or ``make_fx`` (so ``aot_function``)."""
    return torch.jit.is_tracing() or PROXY_MODE is not None and torch._C._get_dispatch_mode(PROXY_MODE) is not None


#: 0-d CPU tensors of constant offsets, by (value, dtype) (:meth:`TorchFastPaths.scaled_difference`): a CPU scalar
#: combines with a tensor on any device.  Emptied when full, as a loop over many scales would fill it.
_CONSTANTS: dict[tuple[float, torch.dtype], torch.Tensor] = {}


def _constant(value: float, dtype: torch.dtype) -> torch.Tensor:
    key = (value, dtype)
    tensor = _CONSTANTS.get(key)
    # _version: anyloss never writes to it (nor lets a trace keep it: scaled_difference); an edit through the visible
    # autograd API (add_, copy_, fill_) still makes it again.
    if tensor is None or tensor._version:
        if len(_CONSTANTS) >= 16:
            _CONSTANTS.clear()
        # On the CPU whatever the default device (torch.device(...) as a context, set_default_device), and a
        # normal tensor even when the first call runs under inference_mode.
        with torch.inference_mode(False):
            tensor = _CONSTANTS[key] = torch.scalar_tensor(value, dtype=dtype, device="cpu")
    return tensor


def is_torch_namespace(xp: Any) -> bool:
    """Whether ``xp`` is torch or array-api-compat's torch namespace."""
    return getattr(xp, "__name__", None) in _TORCH_NAMESPACES


def _needs_autograd(x: torch.Tensor) -> bool:
    # Updating a tensor that autograd records in place would be an error or, worse,
    # silently change what the backward pass reads.
    return bool(x.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling()


def _block_size(x: torch.Tensor) -> int:
    """Elements per block for a step that works on the 1-D ``x`` block by block, or 0 to do it whole.

    On the CPU, blocks of :data:`_BLOCK` above :data:`_BLOCKED_ABOVE` elements: a fresh temporary costs page
    faults.  Elsewhere whole arrays: a caching allocator has no fresh pages, and each block costs kernel
    launches, which bound an eager GPU step.  On an H200 at n = 1e7 the step was 5.44x BCE in blocks of 2**20
    and 2.71x whole; its extra memory 2.10x and 3.00x the logits (``benchmarks/device_blocks.py``).
    """
    if x.shape[0] <= _BLOCKED_ABOVE:  # first: the usual small batch reads no device
        return 0
    return _BLOCK if x.device.type == "cpu" else 0


def _functorch_wrapped(x: torch.Tensor) -> bool:
    functorch = getattr(torch._C, "_functorch", None)
    return functorch is not None and bool(functorch.is_functorch_wrapped_tensor(x))


def _as_index(ids: torch.Tensor) -> torch.Tensor:
    """Integer ids as the int64 index that ``gather``, ``index_select`` and ``scatter_add_`` take on every
    supported torch (2.13 takes int32 too, older releases int64 only; uint8 / int8 / int16 none)."""
    return ids if ids.dtype == torch.int64 else ids.to(torch.int64)


def reads_are_free(x: torch.Tensor) -> bool:
    """Whether reading ``x``'s values costs no wait: a CPU tensor (an accelerator's read waits for its queue)."""
    return x.is_cpu  # = device.type == "cpu", without building a device object


class TorchFastPaths(FastPaths):
    """In-place updates where autograd allows, BLAS dot, counts from the label sums, fused value checks."""

    __slots__ = ()  # no instance dict: see FastPaths

    counts_from_label_sums = True
    # Declared here although it is the default: under torch.compile a class attribute read through the base
    # class is a guard on that class's dict at every call.
    false_positives_by_difference = False

    def sigmoid_of_temporary(self, x: Any, xp: Any) -> Any:
        return torch.sigmoid(x) if _needs_autograd(x) else torch.sigmoid_(x)

    def scale_temporary(self, x: Any, scale: float, xp: Any) -> Any:
        return x * scale if _needs_autograd(x) else x.mul_(scale)

    # x * scale + offset for Python scalars in one kernel, torch.add(offset, x, alpha=scale) with the offset a
    # 0-d CPU tensor of x's dtype (a scalar argument on any device), where the two-step form makes two passes
    # (n = 1e6, one thread: 0.34 against 0.53 ms); the rounding differs from it by at most an ulp.  Up to
    # _FUSED_AFFINE_MAX elements: above it the new array's fresh pages dominate, and in the step (n = 1e7) this
    # kernel, its scalar first, was slower than the two passes (21 against 18.5 ms, profiler).
    def scaled_plus(self, x: Any, scale: Any, offset: Any, xp: Any) -> Any:
        # Python floats on the one-node path; 0-d tensors on the others (alpha takes numbers only).
        if x.numel() > _FUSED_AFFINE_MAX or type(scale) is not float or type(offset) is not float:
            return super().scaled_plus(x, scale, offset, xp)
        return torch.add(torch.scalar_tensor(offset, dtype=x.dtype), x, alpha=scale)

    def scaled_difference(self, x: Any, shift: float, scale: float, xp: Any) -> Any:
        if x.numel() > _FUSED_AFFINE_MAX or type(shift) is not float or type(scale) is not float:
            return super().scaled_difference(x, shift, scale, xp)
        # (x - shift) scale = x scale - shift scale, the offset a 0-d tensor made once per (value, dtype): the
        # amplifier's -L/2 is the same at every call (a new one costs a tensor allocation per eager call).
        if type(x) is not torch.Tensor or torch.compiler.is_compiling() or recording():
            # A fake tensor (make_fx, FakeTensorMode) takes no real constant; dynamo would guard on the dictionary; a
            # trace would keep the cached tensor itself as a constant of its graph, which its user may edit.
            return self.scaled_plus(x, scale, -shift * scale, xp)
        return torch.add(_constant(-shift * scale, x.dtype), x, alpha=scale)

    def multiply_temporary(self, x: Any, factor: Any, xp: Any) -> Any:
        return x * factor if _needs_autograd(x) else x.mul_(factor)

    def add_temporary(self, x: Any, term: Any, xp: Any) -> Any:
        return x + term if _needs_autograd(x) else x.add_(term)

    def add_scaled_temporary(self, x: Any, term: Any, factor: Any, xp: Any) -> Any:
        if _needs_autograd(x):
            return x + term * factor
        if isinstance(factor, torch.Tensor):  # a 0-d tensor (alpha takes numbers only): still one kernel
            return x.addcmul_(term, factor)
        return x.add_(term, alpha=factor)  # one kernel: x + factor * term

    def times_one_minus(self, x: Any, p: Any, xp: Any) -> Any:
        # x - x * p: one fused kernel.
        return x * (1.0 - p) if _needs_autograd(x) else x.addcmul_(x, p, value=-1.0)

    def times_sigmoid_slope(self, x: Any, s: Any, xp: Any) -> Any:
        # x * s * (1 - s) in one kernel (autograd's own for sigmoid) instead of two or three.
        # (Only the counts' pullback calls it, outside autograd and torch.func; the check is for safety.)
        if _needs_autograd(x):
            return _SIGMOID_BACKWARD(x, s)
        return _SIGMOID_BACKWARD_OUT(x, s, grad_input=x)  # elementwise: the output may be x

    def dot(self, a: Any, b: Any, xp: Any) -> Any:
        return torch.dot(a, b)

    def take_by_row(self, x: Any, ids: Any, xp: Any) -> Any:
        # One gather; array-api-compat's take_along_axis adds a where over the ids for negative ones (three
        # kernels) and torch.take_along_dim a remainder.
        return torch.gather(x, 1, _as_index(ids)[:, None])[:, 0]

    def take(self, x: Any, ids: Any, xp: Any) -> Any:
        return torch.index_select(x, 0, _as_index(ids))  # as take_by_row: no where over the ids

    def scatters_in_place(self, x: Any, xp: Any) -> bool:
        # Eagerly, n values scattered in place, not an (n, C) one-hot comparison and where (with the gathers,
        # n = 1e5, C = 10: 1.22x to 1.00x cross-entropy).  Not under autograd or while compiling: inductor fuses
        # the where into its one pass, and its scatter-add is a loop of its own.
        return not (_needs_autograd(x) or _functorch_wrapped(x))

    def add_by_row_temporary(self, x: Any, ids: Any, values: Any, xp: Any) -> Any:
        if not self.scatters_in_place(x, xp):
            return super().add_by_row_temporary(x, ids, values, xp)
        return x.scatter_add_(1, _as_index(ids)[:, None], values[:, None].to(x.dtype))

    def floats(self, values: Any, xp: Any) -> list[float]:
        # On a CPU float() of each is free.  On an accelerator each read waits for the device: the tensors
        # are stacked and copied once (one kernel and one wait; the eager step on a GPU, docs/performance.md).
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        if not tensors or reads_are_free(tensors[0]):
            return [float(v) for v in values]
        read = iter(torch.stack(tensors).tolist())
        return [next(read) if isinstance(v, torch.Tensor) else float(v) for v in values]

    def dot_of_one_minus(self, y: Any, a: Any, xp: Any) -> Any:
        # Above _BLOCKED_ABOVE labels, 1 - y block by block in one reused buffer: a fresh n-element
        # temporary costs page faults (40 MB at n = 1e7) and raises the step's peak memory.
        n = y.shape[0]
        size = _block_size(y)
        if not size or _needs_autograd(a) or _needs_autograd(y) or _functorch_wrapped(a):
            return torch.dot(torch.rsub(y, 1.0), a)  # torch.rsub: Tensor.__rsub__ is a Python wrapper (+0.7 us)
        buffer = torch.empty_like(y[:size])
        total = a.new_zeros(())
        for start in range(0, n, size):
            stop = min(start + size, n)
            neg = torch.neg(y[start:stop], out=buffer[:stop - start]).add_(1.0)  # 1 - y, exactly
            total += torch.dot(neg, a[start:stop])
        return total

    def add_scaled_shrunk_difference(self, x: Any, a: Any, b: Any, threshold: float, factor: Any,
                                     xp: Any) -> Any:
        n = x.shape[0]
        size = _block_size(x)
        if not size or _needs_autograd(x) or _functorch_wrapped(x):
            return super().add_scaled_shrunk_difference(x, a, b, threshold, factor, xp)
        buffer = torch.empty_like(x[:size])  # as above: no n-element difference
        for start in range(0, n, size):
            stop = min(start + size, n)
            block = torch.sub(a[start:stop], b[start:stop], out=buffer[:stop - start])
            self.add_scaled_temporary(x[start:stop], torch.hardshrink(block, threshold, out=block), factor, xp)
        return x

    def clip(self, x: Any, lo: float | None, hi: float | None, xp: Any) -> Any:
        return torch.clamp(x, lo, hi)

    def shrink(self, x: Any, threshold: float, xp: Any) -> Any:
        return torch.nn.functional.hardshrink(x, threshold)

    def shrink_temporary(self, x: Any, threshold: float, xp: Any) -> Any:
        if _needs_autograd(x) or _functorch_wrapped(x):  # vmap has no batching rule for out=
            return torch.nn.functional.hardshrink(x, threshold)
        return torch.hardshrink(x, threshold, out=x)  # elementwise: the output may be the input

    def all_binary(self, y: Any, xp: Any) -> bool:
        """``y - y * y`` is exactly 0 for 0 and 1 and nonzero or NaN for every other value.

        (Below 1 ``y * y`` rounds to less than ``y``, above 1 to more; ``inf - inf`` is
        NaN.)  So the check is one fused elementwise kernel and one min/max reduction,
        where ``all((y == 0) | (y == 1))`` runs three boolean kernels and a reduction and
        allocates three arrays: on one CPU thread 0.20 ms against 1.8 ms at n = 1e6.
        Above ``_BLOCKED_ABOVE`` labels on the CPU it runs block by block into one reused
        buffer (:func:`_block_size`): a fresh 40 MB temporary at n = 1e7 costs 45 ms in page
        faults alone, 4 MB blocks cost 3.7 ms in all (the boolean form: 33 ms).
        """
        if y.ndim == 1 and y.shape[0] <= _CHECK_IN_PYTHON:
            # A few labels: reading them costs less than launching two kernels (same verdict: NaN and
            # infinities are not in the set, -0.0 is, as in y - y * y).  tolist records nothing for autograd.
            return set(y.tolist()) <= _BINARY
        flat = y.detach().reshape(-1)  # no autograd record of the check
        size = _block_size(flat)
        if not size:
            return _zero_residual(torch.addcmul(flat, flat, flat, value=-1.0))
        buffer = torch.empty_like(flat[:size])
        for start in range(0, flat.shape[0], size):
            block = flat[start:start + size]
            out = buffer[:block.shape[0]]
            if not _zero_residual(torch.addcmul(block, block, block, value=-1.0, out=out)):
                return False
        return True

    def zero_with_gradient(self, x: Any, slope: Any, xp: Any) -> Any:
        if torch.compiler.is_compiling():  # dynamo traces no autograd.Function with a jvp
            if torch._C._are_functorch_transforms_active():
                # Under a torch.func transform dynamo inlines a Function's forward (a constant zero) and its
                # backward is lost: the Array API form there.  (The check folds to a constant when traced.)
                return super().zero_with_gradient(x, slope, xp)
            return _ZeroWithGradient.apply(x, slope)
        return _ZeroWithGradientForwardMode.apply(x, slope)

    def all_in_unit_interval(self, p: Any, xp: Any) -> bool:
        lo, hi = torch.aminmax(p.detach())  # one min/max pass, no allocation
        return float(lo) >= 0.0 and float(hi) <= 1.0

    def all_non_negative(self, w: Any, xp: Any) -> bool:
        return float(torch.amin(w.detach())) >= 0.0


class _ZeroWithGradient(torch.autograd.Function):
    """``zero_with_gradient(x, slope)``: a 0-d zero of ``x``'s dtype; its gradient in ``x`` is ``slope``.

    The forward computes nothing from ``x``; the backward is ``upstream * slope``.
    ``setup_context`` and ``generate_vmap_rule`` make it work under ``torch.func`` transforms
    too; ``slope`` is a constant (the caller detached it).  Forward mode is
    :class:`_ZeroWithGradientForwardMode` (dynamo cannot trace a Function with a ``jvp``).

    Examples:
        >>> x = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> zero = _ZeroWithGradient.apply(x, torch.tensor([0.5, 3.0]))
        >>> zero.backward(); float(zero), x.grad.tolist()
        (0.0, [0.5, 3.0])
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(())

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (slope,) = ctx.saved_tensors
        return grad * slope, None


class _ZeroWithGradientForwardMode(_ZeroWithGradient):
    """:class:`_ZeroWithGradient` with forward mode too (``jvp``: ``sum(slope * tangent)``; ``torch.func.jacfwd``,
    ``torch.func.hessian``), for eager calls."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(inputs[1])
        ctx.save_for_forward(inputs[1])

    @staticmethod
    def jvp(ctx: Any, x_tangent: torch.Tensor, slope_tangent: Any) -> torch.Tensor:
        (slope,) = ctx.saved_tensors
        return torch.sum(slope * x_tangent)


def _zero_residual(residual: torch.Tensor) -> bool:
    """Whether ``residual`` is 0 everywhere: one min/max pass (min and max propagate NaN)."""
    lo, hi = torch.aminmax(residual)
    return float(lo) == 0.0 and float(hi) == 0.0


#: The registered instance.
TORCH_FAST_PATHS = TorchFastPaths()
register_fast_paths(is_torch_namespace, TORCH_FAST_PATHS)
