"""anyloss_torch: AnyLoss as native PyTorch losses.

``nn.Module`` classes (``AnyLoss``, ``F1Loss``, ``FBetaLoss``, ``AccuracyLoss``,
``GMeanLoss``, ``BalancedAccuracyLoss``) and the functional ``anyloss``, called
``(input, target)`` like ``nn.BCEWithLogitsLoss`` and taking logits by default.
The math is ``anyloss_core``'s; this package adapts it to torch conventions.
:mod:`anyloss_torch.interop` is the entry point for other adapters (``anyloss_keras``
on the PyTorch backend): a configured loss on torch tensors.
``skip_guard_on_anyloss_globals`` is a ``guard_filter_fn`` for ``torch.compile``: it leaves out the
guards on anyloss's own functions and constants, which are most of what a compiled call costs over BCE.

Examples:
    >>> import torch, anyloss_torch
    >>> loss_fn = anyloss_torch.F1Loss()
    >>> logits = torch.tensor([-3.0, 2.0, 4.0], requires_grad=True)
    >>> loss = loss_fn(logits, torch.tensor([0, 1, 1]))
    >>> loss.backward()
    >>> round(loss.item(), 4)
    0.0
"""

from ._compile import skip_guard_on_anyloss_globals
from ._functional import (
    accuracy_loss,
    anyloss,
    balanced_accuracy_loss,
    f1_loss,
    fbeta_loss,
    gmean_loss,
)
from ._modules import AccuracyLoss, AnyLoss, BalancedAccuracyLoss, F1Loss, FBetaLoss, GMeanLoss

__all__ = [
    "AccuracyLoss",
    "AnyLoss",
    "BalancedAccuracyLoss",
    "F1Loss",
    "FBetaLoss",
    "GMeanLoss",
    "accuracy_loss",
    "anyloss",
    "balanced_accuracy_loss",
    "f1_loss",
    "fbeta_loss",
    "gmean_loss",
    "skip_guard_on_anyloss_globals",
]
