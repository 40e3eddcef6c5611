"""A guard filter for ``torch.compile``: no guards on what anyloss's own modules hold.

Each call of a compiled function first evaluates its guards, the checks that what the
trace read is unchanged.  A trace of an AnyLoss reads the core's and this adapter's
functions and constants through their modules, and dynamo guards every one of them.  In
``benchmarks/compiled_guards.py`` (torch 2.13, n = 32) the compiled F1 loss's frame has 558
guard lines, of which the filter below leaves 151; BCE has a few dozen.  Those guards are the
fixed cost of a compiled call over BCE's (figures in docs/performance.md, eighth round).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["skip_guard_on_anyloss_globals"]

#: A guard on a global read through one of these packages: dynamo names a module reached from a compiled frame's
#: globals ``G['__import_<module, dots as _dot_>']``, as in ``G['__import_anyloss_core_dot__confusion']._counts``
#: or ``dict(G['__import_anyloss_core_dot__inputs']._Checked.__dict__)``.  array-api-compat is anyloss's array
#: namespace for torch tensors (the core calls its functions).
_OWN_MODULE = re.compile(r"G\['__import_(anyloss_core|anyloss_torch|anyloss_keras|anyloss_jax|array_api_compat)"
                         r"(_dot_[^']*)?'\]")
#: The registries that public functions change at run time (``anyloss_core.register_metric(..., overwrite=True)``,
#: ``register_fast_paths``): their guards are kept, so a trace that read one compiles again after it changes.
_REGISTRIES = re.compile(r"\b_(REGISTRY|REGISTERED)\b")  # after "." or "['", however torch spells the access


def _droppable(entry: Any) -> bool:
    return bool(entry.is_global and _OWN_MODULE.search(entry.name) and not _REGISTRIES.search(entry.name))


def skip_guard_on_anyloss_globals(guard_entries: Sequence[Any]) -> list[bool]:
    """A ``guard_filter_fn`` for ``torch.compile``: every guard kept except those on anyloss's own functions and
    constants.

    ``keep[i] = not (entry.is_global and entry.name reads a module of anyloss_core, anyloss_torch,
    anyloss_keras, anyloss_jax or array_api_compat, and not one of the metric or fast-path
    registries)``, where ``torch.compiler.skip_guard_on_globals_unsafe`` is ``not entry.is_global``.

    Kept: the guards on the tensors (dtype, shape, device, ``requires_grad``), on torch's global
    state (grad mode, autocast), on the loss module and its configuration (a loss whose
    configuration changes, as by ``load_state_dict``, is compiled again), on the registries of
    metrics and fast paths, and on every other global, the caller's own among them.  Dropped:
    the code of anyloss's functions, its module constants, and array-api-compat's functions
    and the ``torch`` functions that the trace reached through these modules.  Safe as long as
    nothing assigns to those modules' attributes after compiling (anyloss does not; a test that
    patches one must call ``torch._dynamo.reset()``).

    In four alternated runs each of ``anyloss speed --backends torch --torch-guard-filter
    anyloss`` and ``none``, one compiled ``F1Loss()`` call at n = 32 went from 1.22x-1.24x BCE's
    time to 1.07x-1.10x, and the step at n = 1e5 from 1.05x-1.11x to 0.93x-0.99x
    (docs/performance.md, eighth round; those calls took the traced path).  A binary loss module is
    made of regions with few guards by default (:mod:`anyloss_torch._region`), where the filter
    gains little: 1.14x → 1.06x at n = 32 (ninth round).

    Needs a torch whose ``torch.compile`` takes the ``guard_filter_fn`` option (documented from
    2.10; tested on 2.13).  ``torch.compile`` pops it out of the ``options`` dict it is given:
    pass a new dict to each call.  It takes ``mode`` or ``options``, not both: for a mode, give
    its options, ``{**torch._inductor.list_mode_options("max-autotune"), "guard_filter_fn": ...}``.
    To combine with a filter of your own::

        options={"guard_filter_fn": lambda entries: [a and b for a, b in
                 zip(skip_guard_on_anyloss_globals(entries), my_filter(entries))]}

    Examples:
        >>> import torch, anyloss_torch
        >>> loss_fn = torch.compile(anyloss_torch.F1Loss(),
        ...                         options={"guard_filter_fn": anyloss_torch.skip_guard_on_anyloss_globals})
    """
    return [not _droppable(entry) for entry in guard_entries]
