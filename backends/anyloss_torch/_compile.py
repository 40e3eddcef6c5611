"""A guard filter for ``torch.compile``: no guards on what anyloss's own modules hold.

Each call of a compiled function first evaluates its guards, the checks that what the
trace read is unchanged.  A trace of an AnyLoss reads the core's and this adapter's
functions and constants through their modules, and dynamo guards every one of them: about
380 of the compiled ``F1Loss()`` frame's 560 guard lines, where ``BCEWithLogitsLoss`` has a
few dozen in all.  Those guards are the fixed cost of a compiled call over BCE's
(``benchmarks/compiled_guards.py``; figures in docs/performance.md, eighth round).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["skip_guard_on_anyloss_globals"]

#: How dynamo names a module reached from a compiled frame's globals: ``G['__import_anyloss_core_dot__confusion']``
#: for ``anyloss_core._confusion``.  Every guard on a global read through one of anyloss's modules names it so
#: (``G['__import_anyloss_core_dot__confusion']._counts.__code__``, ``dict(G['__import_anyloss_...]...)``), and
#: so does every guard on a global of array-api-compat's torch namespace, anyloss's namespace for torch tensors.
_OWN_MODULES = ("G['__import_anyloss_", "G['__import_array_api_compat_")


def _reads_own_module(name: str) -> bool:
    return any(module in name for module in _OWN_MODULES)


def skip_guard_on_anyloss_globals(guard_entries: Sequence[Any]) -> list[bool]:
    """A ``guard_filter_fn`` for ``torch.compile``: keep every guard except those on globals read through anyloss's
    own modules.

    ``keep[i] = not (entry.is_global and entry.name reads G['__import_anyloss_... or
    G['__import_array_api_compat_...)``, where ``torch.compiler.skip_guard_on_globals_unsafe`` is
    ``not entry.is_global``.
    The guards on the tensors, on the loss module and its configuration (``self.config``: a
    loss whose configuration changes is compiled again), on torch's global state and on every
    other global, the caller's own among them, are kept.

    What is dropped is the code of anyloss's functions and its module constants: safe as long
    as nothing assigns to those modules' attributes after compiling (anyloss does not; a test
    that patches one must call ``torch._dynamo.reset()``).  Also dropped: the guards on the
    globals of array-api-compat (anyloss's array namespace for torch tensors: the core calls
    its functions) and on the ``torch`` functions that the trace reached through these modules.

    In four alternated runs of ``anyloss speed --backends torch --torch-guard-filter anyloss`` (and
    ``none``), one compiled ``F1Loss()`` call at n = 32 went from 1.21x-1.31x BCE's time to
    1.07x-1.10x, and the step at n = 1e5 from 1.06x-1.13x to 0.95x-1.05x (docs/performance.md,
    eighth round).  Needs a torch whose ``torch.compile`` takes the
    ``guard_filter_fn`` option (2.13 has it).  To combine it with a filter of your own::

        options={"guard_filter_fn": lambda entries: [a and b for a, b in
                 zip(skip_guard_on_anyloss_globals(entries), my_filter(entries))]}

    Examples:
        >>> import torch, anyloss_torch
        >>> loss_fn = torch.compile(anyloss_torch.F1Loss(),
        ...                         options={"guard_filter_fn": anyloss_torch.skip_guard_on_anyloss_globals})
    """
    return [not (entry.is_global and _reads_own_module(entry.name)) for entry in guard_entries]
