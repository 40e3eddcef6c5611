"""Closed-form backwards that have no derivative of their own, under ``create_graph=True``, nor a ``jvp``.

A closed-form backward (the core's pullback, the metric's gradient on floats) computes the first derivative
without recording how it depends on the input.  When the backward pass records a graph, that gradient must
either be differentiated for real (the one-node loss recomputes its plain composition) or raise when
differentiated; what it must not do is pass for a constant, which gives a silently wrong second derivative.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.autograd import forward_ad

__all__ = ["SECOND_DERIVATIVE_ERROR", "first_order", "has_tangent", "no_second_derivative"]


def first_order(backward: Any, differentiable: Any = None) -> Any:
    """``backward`` of a closed form with no derivative of its own: as it is when the backward pass records no
    graph (the usual case); when it does (``create_graph=True``), computed without a graph and marked so that
    differentiating it again raises, rather than treating the gradient as a constant (a silently wrong second
    derivative: a Hessian-vector product, a meta-gradient through an inner step, a gradient penalty).

    ``once_differentiable`` marks the gradient only when the upstream gradient requires one, which a loss
    node's constant upstream (``backward()`` of the loss) does not: a model's parameters between the loss and
    the second derivative would then see no error and miss the loss's curvature.  So this marks it always.

    ``differentiable(ctx, *grads)``, when given, is used instead where ``ctx.recompute`` is set: a backward
    that records a graph of the loss's own curvature (``anyloss_torch._autograd._differentiable_backward``)."""

    @functools.wraps(backward)
    def dispatch(ctx: Any, *grads: Any) -> Any:
        if not torch.is_grad_enabled():
            return backward(ctx, *grads)
        if differentiable is not None and ctx.recompute is not None:
            return differentiable(ctx, *grads)
        with torch.no_grad():
            outputs = backward(ctx, *grads)
        return no_second_derivative(outputs)

    return dispatch


def has_tangent(input: torch.Tensor) -> bool:
    """Whether ``input`` is a dual tensor of ``torch.autograd.forward_ad`` (forward mode), which the closed forms'
    nodes do not serve (they have no ``jvp``): such calls take the plain composition.  Outside a dual level
    (the usual case) one read of a module global."""
    return forward_ad._current_level >= 0 and forward_ad.unpack_dual(input).tangent is not None


def no_second_derivative(outputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """``outputs`` (a backward's gradients) as aliases whose own gradient is an error naming what to do."""
    tensors = [i for i, out in enumerate(outputs) if isinstance(out, torch.Tensor)]
    error = torch._C._functions.DelayedError(SECOND_DERIVATIVE_ERROR, len(tensors))
    marked = error(*[outputs[i].detach().requires_grad_() for i in tensors])
    marked = marked if isinstance(marked, tuple) else (marked,)
    result = list(outputs)
    for i, out in zip(tensors, marked, strict=True):
        result[i] = out
    return tuple(result)


SECOND_DERIVATIVE_ERROR = (
    b"anyloss: this gradient has no derivative of its own (a closed-form backward: the analytic counts of a "
    b"distributed or accelerator call, running counts, per-class counts).  For second derivatives compute "
    b"the loss in a torch.func transform (torch.func.grad / jacfwd / hessian), which differentiates the plain "
    b"composition"
)
