"""Compiled binary calls as regions that dynamo does not trace into: fewer guards per call.

Every call of a ``torch.compile``'d function first evaluates its guards, the checks that
what dynamo's trace read is unchanged.  A binary loss traced through the core and this
adapter reads a few hundred functions and constants (558 guard lines for ``F1Loss()`` in
torch 2.13, against a few dozen for ``BCEWithLogitsLoss``), and checking them is the
compiled call's largest cost over BCE's at small and middling batches.  Here the loss is
made of ``torch._dynamo.nonstrict_trace`` calls instead: dynamo guards only their arguments
(the tensors, and the loss's settings as numbers and names), and AOTAutograd still traces
the core's composition into the same graph, which inductor fuses as before.

* Below :data:`SAVED_SIGMOIDS_MIN_CPU_NUMEL` logits on a CPU, and at every size on other
  devices, the loss is one region holding the plain composition (``soft_loss(...,
  path=Path.AUTODIFF)``), as the traced path on an accelerator.
* From :data:`SAVED_SIGMOIDS_MIN_CPU_NUMEL` logits on a CPU, the counts and the rescue term
  are one region inside the traced path's selective checkpoint
  (:func:`anyloss_torch._autograd.saving_checkpoint`: the sigmoids saved for the backward,
  which then computes no ``exp``), and the metric of the counts a second region.  The
  checkpoint must stay outside: torch 2.13's partitioner fails on one traced inside a
  nonstrict region.  Dynamo traces the checkpoint itself (279 guard lines, against 240 for
  one region).

The regions apply when :func:`region_settings` returns settings:

* under ``torch.compile`` (dynamo tracing), on torch 2.13 or later (:data:`TORCH_RUNS_REGIONS`);
* a binary task, not ``distributed``, with no running counts, from a loss module or Keras on
  torch (``anyloss_torch.interop.config_loss``; the functional losses pass ``regions=False``:
  measured in regions they had half the guards and 0.07x-0.14x BCE less per call, but a float argument
  that changes between calls then compiles once per value, :func:`_concrete`, where the traced path
  compiles it once; ``benchmarks/compiled_functional.py``);
* not while ``torch.export`` traces (strict export fails on a region's pytree specs), and inputs
  of at most two dimensions (``(batch, h, w)`` masks spread per-image weights over the inner
  sizes, which a region's body reads as unknown once they are dynamic);
* one of anyloss's own metrics (a user's metric may read globals or state that a region
  would not guard), given by its name and still registered as the function the configuration
  resolved (a name registered again with ``overwrite=True`` after the loss was built keeps the
  traced path, and the loss's own metric), and a named approximation: a region's arguments
  must be numbers and names, and it resolves them again.

A region's body must not fix a size: the core reads a dimension that is not an integer (a
``torch.SymInt`` while AOTAutograd traces) as unknown, so the batch size stays symbolic.  It
does fix a symbolic float (:func:`_concrete`): the core's checks take numbers.

Figures: ``benchmarks/compiled_guards.py`` and docs/performance.md (ninth round).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

import anyloss_core as al
from anyloss_core.adapters import LossConfig, is_built_in_metric

from ._autograd import Path, counts_and_term, saving_checkpoint, soft_loss

__all__ = ["SAVED_SIGMOIDS_MIN_CPU_NUMEL", "loss_in_regions", "region_settings"]

#: From this many logits on a CPU the region's counts are computed inside the checkpoint that saves the sigmoids:
#: below it the two ``exp`` per sample that the backward then recomputes cost less than the checkpoint's own guards
#: (``benchmarks/compiled_guards.py``, torch 2.13, one thread, two runs: at 4096 logits both forms gave 1.13x-1.16x
#: BCE; at 8192 one region gave 1.18x-1.24x and the checkpointed form 1.13x-1.14x; at 32, 1.11x-1.12x and 1.15x).
SAVED_SIGMOIDS_MIN_CPU_NUMEL = 1 << 12

#: Whether this torch can run the regions: ``torch._dynamo.nonstrict_trace`` came in 2.7, but only from 2.13 is
#: ``torch.compiler.is_compiling()`` true while AOTAutograd traces a region's body, which the core reads to skip
#: its value checks on fake tensors (before, those checks fail on data-dependent values).  Read from the version:
#: looking the decorator up would import ``torch._dynamo`` with this module (1.3 s), which eager users never need.
TORCH_RUNS_REGIONS = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 13)  # 2.13.0a0+git too

#: The settings that are the core's counts options (the others: the metric, its parameters, the rescue weight).
_COUNTS_OPTIONS = ("from_logits", "scale", "approximation", "validate")


def _same_metric(a: Any, b: Any) -> bool:
    """Whether two resolved metrics are one function with the same bound parameters (``get_metric`` binds
    parameters with a new ``functools.partial`` at each call)."""
    if isinstance(a, functools.partial) and isinstance(b, functools.partial):
        return a.func is b.func and a.args == b.args and a.keywords == b.keywords
    return a is b


def _specialised(value: Any) -> Any:
    # float() of a float that dynamo traces as symbolic (under dynamic=True) gives the checkpointed form a value it
    # can pass into the counts' region: without it dynamo failed ("Argument 'item' of Node 'flat_apply_capture' does
    # not belong to this Graph", tests/test_torch_region.py::test_dynamic_true_compiles_the_regions_whole).
    return float(value) if isinstance(value, float) else value


def region_settings(config: LossConfig, input: torch.Tensor, rescue: float) -> dict[str, Any] | None:
    """The arguments of :func:`loss_in_regions` besides the tensors, or ``None`` when the regions do not apply
    (see the module docstring).  Called on the traced path, so what it reads is guarded: the configuration's
    fields and the metric registry's entry for the metric's name."""
    if not TORCH_RUNS_REGIONS or not torch.compiler.is_compiling() or config.task != "binary":
        return None
    if torch.compiler.is_exporting():
        return None  # torch.export(strict=True) fails on a region's pytree specs
    if input.ndim > 2:
        # (batch, h, w) masks: per-image weights are spread over the inner sizes, which a region's body reads as
        # unknown once dynamo makes them dynamic (a new image size).
        return None
    if not isinstance(config.metric, str) or not isinstance(config.approximation, str):
        return None  # a function cannot be an argument of a region
    if not is_built_in_metric(config.metric_fn):
        return None  # a metric of the user's may read globals or state, which a region would not guard
    if not _same_metric(al.get_metric(config.metric, **config.metric_params), config.metric_fn):
        return None  # the name was registered again after the configuration resolved it
    # Numbers, names and a dict of them (a float that changed between calls arrives symbolic: _concrete).
    return {"metric": config.metric, "metric_params": {k: _specialised(v) for k, v in config.metric_params.items()},
            "from_logits": config.from_logits, "scale": _specialised(config.scale),
            "approximation": config.approximation, "validate": config.validate, "rescue": _specialised(rescue)}


def _concrete(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with every symbolic float made a Python float.  Dynamo passes a float that changed between
    calls (a module's ``beta`` after ``load_state_dict``; every float under ``dynamic=True``) as a
    ``torch.SymFloat``, which the core's checks reject; ``float()`` of it, here while AOTAutograd traces, fixes
    its value with a guard, so that another value compiles again, as on the traced path with a constant."""
    def concrete(value: Any) -> Any:
        return float(value) if isinstance(value, torch.SymFloat) else value

    return {name: ({k: concrete(v) for k, v in value.items()} if isinstance(value, dict) else concrete(value))
            for name, value in settings.items()}


def _metric_fn(settings: dict[str, Any]) -> Any:
    return al.get_metric(settings["metric"], **settings["metric_params"])


def _counts_options(settings: dict[str, Any]) -> dict[str, Any]:
    return {name: settings[name] for name in _COUNTS_OPTIONS}


# The regions' bodies, with weights and without: a region's arguments cannot be None.
def _loss(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, settings: dict[str, Any]) -> torch.Tensor:
    # Plain autodiff: AOTAutograd traces the composition, and inductor fuses it as on the traced path.
    settings = _concrete(settings)
    return soft_loss(input, target, weight, _metric_fn(settings), path=Path.AUTODIFF, rescue=settings["rescue"],
                     **_counts_options(settings))


def _unweighted_loss(input: torch.Tensor, target: torch.Tensor, settings: dict[str, Any]) -> torch.Tensor:
    return _loss(input, target, None, settings)  # type: ignore[arg-type]


def _counts(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
            settings: dict[str, Any]) -> tuple[Any, ...]:
    settings = _concrete(settings)
    return counts_and_term(input, target, weight, _counts_options(settings), settings["rescue"])


def _unweighted_counts(input: torch.Tensor, target: torch.Tensor, settings: dict[str, Any]) -> tuple[Any, ...]:
    return _counts(input, target, None, settings)  # type: ignore[arg-type]


def _loss_of_counts(counts: tuple[Any, ...], settings: dict[str, Any]) -> torch.Tensor:
    loss = al.confusion_loss(al.Confusion(*counts[:4]), _metric_fn(_concrete(settings)))
    return loss + counts[4] if len(counts) > 4 else loss


def _in_region(body: Callable[..., Any], *args: Any) -> Any:
    """``body(*args)`` as a region.  The decorator is applied here, while dynamo traces (it handles the call), so
    that importing this module does not import ``torch._dynamo``."""
    return torch._dynamo.nonstrict_trace(body)(*args)


def loss_in_regions(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                    settings: dict[str, Any]) -> torch.Tensor:
    """``1 - metric(soft counts)`` plus the rescue term, in regions dynamo does not trace into; ``settings`` from
    :func:`region_settings` (never ``None``)."""
    if input.device.type == "cpu" and input.numel() >= SAVED_SIGMOIDS_MIN_CPU_NUMEL:

        def counts_of(input: torch.Tensor) -> Any:
            if weight is None:
                return _in_region(_unweighted_counts, input, target, settings)
            return _in_region(_counts, input, target, weight, settings)

        counts = saving_checkpoint(counts_of, input, settings)
        return _in_region(_loss_of_counts, tuple(counts), settings)
    if weight is None:
        return _in_region(_unweighted_loss, input, target, settings)
    return _in_region(_loss, input, target, weight, settings)
