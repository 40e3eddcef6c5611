"""Closed-form backwards under ``create_graph=True`` (second derivatives), and forward mode.

A closed-form backward (the core's pullback, the metric's gradient on floats) computes the first derivative
without recording how it depends on the input.  When the backward pass records a graph, that gradient must
either be differentiated for real or raise when differentiated; what it must not do is pass for a constant,
which gives a silently wrong second derivative (a Hessian-vector product, a meta-gradient through an inner
step, a gradient penalty).  A node that keeps a recomputation (:func:`keep_for_recompute`) differentiates the
plain composition again; the others mark their gradient with an error (:func:`first_order`).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.autograd import forward_ad

__all__ = ["PER_CLASS_COUNTS", "RUNNING_COUNTS", "first_order", "has_tangent", "keep_anchor", "keep_for_recompute"]

#: What the error says for each node without a recomputation.
RUNNING_COUNTS = (
    b"anyloss: the gradient of a loss with running counts (momentum=) has no derivative of its own, and "
    b"torch.func cannot run it (the counts are updated in place): compute second derivatives with momentum=None"
)
PER_CLASS_COUNTS = (
    b"anyloss: the gradient of the per-class counts (a closed-form backward: eager from 32,768 logits, and "
    b"compiled) has no derivative of its own: compute second derivatives of this loss inside a torch.func transform "
    b"(torch.func.grad / jacfwd / hessian), which differentiates the plain composition"
)


def first_order(message: bytes | None = None) -> Any:
    """A decorator of a closed-form ``backward``: as it is when the backward pass records no graph (the usual
    case).  When it does (``create_graph=True``), a node that kept a recomputation (:func:`keep_for_recompute`)
    differentiates it; the others compute the closed form and mark it so that differentiating it raises
    ``message``.

    ``once_differentiable`` marks the gradient only when the upstream gradient requires one, which a loss node's
    constant upstream (``backward()`` of the loss) does not; and its mark has no edge to the node's input, so
    ``torch.autograd.grad(..., inputs=params)`` never reaches it.  This mark takes the saved input (and the
    upstream gradients) as its own inputs: it is on every path from the gradient back to the parameters."""

    def decorate(backward: Any) -> Any:
        @functools.wraps(backward)
        def dispatch(ctx: Any, *grads: Any) -> Any:
            if not torch.is_grad_enabled():
                return backward(ctx, *grads)
            if getattr(ctx, "recompute", None) is not None:
                return _differentiated(ctx, *grads)
            with torch.no_grad():
                outputs = backward(ctx, *grads)
            return _marked(outputs, (_anchor(ctx), *grads), message)

        return dispatch

    return decorate


def keep_anchor(ctx: Any, input: torch.Tensor) -> None:
    """Give the error mark of a node without a recomputation an edge to ``input``'s graph without holding its
    storage or its version (a later in-place edit of the logits must not fail the usual backward): a recorded
    one-element copy.  (A node that saves its input anyway need not: :func:`first_order` then takes the last
    saved tensor.)"""
    with torch.enable_grad():
        ctx.anchor = input.reshape(-1)[:1].clone() if input.requires_grad else None


def _anchor(ctx: Any) -> Any:
    """The tensor whose graph the error mark takes as an input: :func:`keep_anchor`'s, or the node's input, saved
    last."""
    if hasattr(ctx, "anchor"):
        return ctx.anchor
    return ctx.saved_tensors[-1] if ctx.saved_tensors else None


def keep_for_recompute(ctx: Any, fn: Any, input: torch.Tensor, *args: Any) -> None:
    """Keep ``fn(input, *args)``, the node's output as a plain composition, for a backward that records a graph.

    The input and the tensors among ``args`` (labels, weights) are saved tensors: freed after the backward as
    the node's other buffers, and checked for in-place changes before a recomputation reads them.  The input is
    held until the backward, as ``BCEWithLogitsLoss`` holds its own."""
    tensors = [a if isinstance(a, torch.Tensor) else None for a in args]
    ctx.save_for_backward(input, *tensors)
    ctx.recompute = (fn, tuple(None if isinstance(a, torch.Tensor) else a for a in args))


def _differentiated(ctx: Any, *grads: Any) -> tuple[Any, ...]:
    """The node's gradient from its recomputed plain composition, differentiated with ``create_graph``: its
    own derivative is then the loss's.  As everywhere the rescue term adds gradient but no curvature
    (``anyloss_core._rescue``)."""
    fn, others = ctx.recompute
    input, *tensors = ctx.saved_tensors
    args = tuple(other if tensor is None else tensor for tensor, other in zip(tensors, others, strict=True))
    with torch.enable_grad():
        (grad_input,) = torch.autograd.grad(fn(input, *args), input, grads, create_graph=True)
    return (grad_input, *(None for _ in ctx.needs_input_grad[1:]))


def _marked(outputs: tuple[Any, ...], anchors: tuple[Any, ...], message: bytes | None) -> tuple[Any, ...]:
    """``outputs`` (a backward's gradients) as aliases whose own gradient raises ``message``; the error node also
    takes ``anchors`` (the node's input, the upstream gradients) as inputs, so every path back through them
    reaches it."""
    tensors = [i for i, out in enumerate(outputs) if isinstance(out, torch.Tensor)]
    anchors = tuple(a for a in anchors if isinstance(a, torch.Tensor) and a.requires_grad)
    error = torch._C._functions.DelayedError(message or b"anyloss: this gradient has no derivative of its own",
                                             len(tensors) + len(anchors))
    marked = error(*(outputs[i].detach().requires_grad_() for i in tensors), *anchors)
    marked = marked if isinstance(marked, tuple) else (marked,)
    result = list(outputs)
    for i, out in zip(tensors, marked[:len(tensors)], strict=True):
        result[i] = out
    return tuple(result)


def has_tangent(*arrays: Any) -> bool:
    """Whether any of ``arrays`` (logits, labels, weights) is a dual tensor of ``torch.autograd.forward_ad``
    (forward mode), which the closed forms' nodes do not serve (they have no ``jvp``, and labels and weights are
    not their inputs): such calls take the plain composition.  Outside a dual level (the usual case) one read of
    a module global."""
    if forward_ad._current_level < 0:
        return False
    return any(isinstance(a, torch.Tensor) and forward_ad.unpack_dual(a).tangent is not None for a in arrays)
