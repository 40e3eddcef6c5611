"""Small compiled calls as one region that dynamo does not trace into: fewer guards per call.

Every call of a ``torch.compile``'d function first evaluates its guards, the checks that
what dynamo's trace read is unchanged.  A binary loss traced through the core and this
adapter reads a few hundred functions and constants (558 guard lines for ``F1Loss()`` in
torch 2.13, against a few dozen for ``BCEWithLogitsLoss``), and at small batches checking
them is the compiled call's largest cost over BCE's.  Here the loss is one
``torch._dynamo.nonstrict_trace`` call instead: dynamo guards only its arguments (the
tensors, and the loss's settings as numbers and names), and AOTAutograd still traces the
core's plain composition into the same graph, which inductor fuses as before.

The region applies when :func:`region_settings` returns settings:

* under ``torch.compile`` (dynamo tracing), and ``torch._dynamo.nonstrict_trace`` exists
  (torch 2.7 and later);
* a binary task, not ``distributed``, with no running counts (the callers' own branches);
* a metric given by its registered name, still registered as the function the
  configuration resolved (a name registered again with ``overwrite=True`` after the loss
  was built keeps the traced path, and the loss's own metric), and a named approximation:
  the region's arguments must be numbers and names, and it resolves them again;
* on a CPU, fewer than :data:`REGION_MAX_CPU_NUMEL` logits; on other devices every size.

From :data:`REGION_MAX_CPU_NUMEL` logits on a CPU the traced path's selective checkpoint
(``anyloss_torch._autograd._checkpoint_context``) pays for its guards: it saves the
sigmoids that inductor's partitioner would recompute, and that cannot be done inside a
nonstrict region (torch 2.13's partitioner fails on a checkpoint traced there).  On an
accelerator the traced path is plain autodiff already, which is what the region traces.
Figures: ``benchmarks/compiled_guards.py`` and docs/performance.md (ninth round).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

import anyloss_core as al
from anyloss_core.adapters import LossConfig

from ._autograd import Path, soft_loss

__all__ = ["REGION_MAX_CPU_NUMEL", "loss_in_one_region", "region_settings"]

#: From this many logits on a CPU the traced path, with its saved sigmoids, is faster than the region
#: (``benchmarks/compiled_guards.py``, torch 2.13, one thread: the region 1.12x-1.16x BCE up to 8192 logits where
#: the traced path gave 1.22x-1.29x, and 1.22x at 32,768 where the traced path gave 1.15x-1.20x).
REGION_MAX_CPU_NUMEL = 1 << 14

_nonstrict_trace = getattr(torch._dynamo, "nonstrict_trace", None)


def _same_metric(a: Any, b: Any) -> bool:
    """Whether two resolved metrics are one function with the same bound parameters (``get_metric`` binds
    parameters with a new ``functools.partial`` at each call)."""
    if isinstance(a, functools.partial) and isinstance(b, functools.partial):
        return a.func is b.func and a.args == b.args and a.keywords == b.keywords
    return a is b


def region_settings(config: LossConfig, input: torch.Tensor, rescue: float) -> dict[str, Any] | None:
    """The arguments of :func:`loss_in_one_region` besides the tensors, or ``None`` when the region does not
    apply (see the module docstring).  Called on the traced path, so what it reads is guarded: the
    configuration's fields and the metric registry's entry for the metric's name."""
    if _nonstrict_trace is None or not torch.compiler.is_compiling() or config.task != "binary":
        return None
    if not isinstance(config.metric, str) or not isinstance(config.approximation, str):
        return None  # a function cannot be an argument of the region
    if input.device.type == "cpu" and input.numel() >= REGION_MAX_CPU_NUMEL:
        return None
    if not _same_metric(al.get_metric(config.metric, **config.metric_params), config.metric_fn):
        return None  # the name was registered again after the configuration resolved it
    # Numbers, names and a dict of them: dynamo specialises the region on their values.
    return {"metric": config.metric, "metric_params": dict(config.metric_params), "from_logits": config.from_logits,
            "scale": config.scale, "approximation": config.approximation, "validate": config.validate,
            "rescue": rescue}


def _loss(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
          settings: dict[str, Any]) -> torch.Tensor:
    settings = dict(settings)
    metric_fn = al.get_metric(settings.pop("metric"), **settings.pop("metric_params"))
    # Plain autodiff: AOTAutograd traces the composition, and inductor fuses it as on the traced path.
    return soft_loss(input, target, weight, metric_fn, path=Path.AUTODIFF, **settings)


# Two signatures: the region's arguments cannot be None.
def _unweighted(input: torch.Tensor, target: torch.Tensor, settings: dict[str, Any]) -> torch.Tensor:
    return _loss(input, target, None, settings)


def _weighted(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
              settings: dict[str, Any]) -> torch.Tensor:
    return _loss(input, target, weight, settings)


if _nonstrict_trace is not None:
    _unweighted = _nonstrict_trace(_unweighted)
    _weighted = _nonstrict_trace(_weighted)


def loss_in_one_region(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                       settings: dict[str, Any]) -> torch.Tensor:
    """``1 - metric(soft counts)`` plus the rescue term, as one region dynamo does not trace into; ``settings``
    from :func:`region_settings` (never ``None``)."""
    if weight is None:
        return _unweighted(input, target, settings)
    return _weighted(input, target, weight, settings)
