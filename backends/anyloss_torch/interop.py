"""The torch adapter's entry points for other adapters: a configured loss on torch tensors.

``anyloss_keras`` on the PyTorch backend computes its loss on torch tensors; it calls
these instead of this package's private modules, so that they can change freely.
They are also what ``anyloss_torch.AnyLoss`` and ``anyloss_torch.anyloss`` run.

* :func:`config_loss`: ``1 - metric(soft counts)`` of a batch for an
  :class:`anyloss_core.adapters.LossConfig`, with the adapter's fast paths (one
  autograd node on a CPU, the compiled-CPU checkpoint policy, compiled calls as regions with few guards,
  :mod:`anyloss_torch._region`) where they apply.
* :func:`config_counts`: the soft counts of a batch for a configuration, summed over a
  process group when ``distributed`` (for running counts).
* :func:`all_reduce_counts`: the four counts summed over a ``torch.distributed`` process
  group, with autograd.

Examples:
    >>> import torch
    >>> from anyloss_core.adapters import LossConfig
    >>> from anyloss_torch.interop import config_loss
    >>> config = LossConfig("f1", from_logits=True)
    >>> round(config_loss(config, torch.tensor([-3.0, 2.0, 4.0]), torch.tensor([0, 1, 1])).item(), 4)
    0.0
"""

from __future__ import annotations

from typing import Any

import torch

import anyloss_core as al
from anyloss_core.adapters import LossConfig

from ._autograd import global_counts, rescue_loss_term, soft_loss
from ._distributed import all_reduce_counts
from ._region import loss_in_regions, region_settings

__all__ = ["all_reduce_counts", "config_counts", "config_loss", "config_rescue_term"]


def config_loss(config: LossConfig, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                *, distributed: bool = False, process_group: Any = None, rescue: bool = True,
                regions: bool = True) -> torch.Tensor:
    """The loss of a batch for ``config``: ``1 - metric(soft counts)``, plus the rescue term.

    ``input`` holds logits or probabilities as ``config.from_logits`` says; ``target`` and
    ``weight`` are tensors on its device.  ``distributed`` sums the counts over
    ``process_group`` first; ``rescue=False`` leaves the rescue term to the caller.
    ``regions=False`` keeps the traced path under ``torch.compile`` (:mod:`anyloss_torch._region`),
    as the functional losses do.
    """
    rescue_weight = config.rescue if rescue else 0.0
    if regions and not distributed:
        settings = region_settings(config, input, rescue_weight)
        if settings is not None:  # under torch.compile: fewer guards
            return loss_in_regions(input, target, weight, settings)
    return soft_loss(input, target, weight, config.loss_metric, distributed=distributed,
                     process_group=process_group, average=config.average, metric_params=config.metric_params,
                     rescue=rescue_weight, **config.counts_options)


def config_counts(config: LossConfig, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                  *, distributed: bool = False, process_group: Any = None) -> al.Confusion:
    """The soft counts of a batch for ``config``, summed over ``process_group`` when ``distributed``."""
    return global_counts(input, target, weight, distributed=distributed, process_group=process_group,
                         **config.counts_options)


def config_rescue_term(config: LossConfig, input: torch.Tensor, target: torch.Tensor,
                       weight: torch.Tensor | None = None, *, distributed: bool = False,
                       process_group: Any = None) -> Any:
    """The rescue term of a binary ``config`` (0 in value; ``0.0`` where it does not apply)."""
    if config.task != "binary":
        return 0.0
    return rescue_loss_term(input, target, weight, rescue=config.rescue, distributed=distributed,
                            process_group=process_group, from_logits=config.from_logits, scale=config.scale,
                            approximation=config.approximation)
