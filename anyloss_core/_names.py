"""Names chosen from a fixed set (metric, task, average, approximation): the error for an unknown one.

The error names the argument, suggests the closest valid names ("did you mean
'f1'?") and lists them all.  Names are matched exactly; the suggestion compares
them case-insensitively and ignoring ``-``, ``_`` and spaces, so ``"F1"``,
``"f-1"``, ``"balanced-accuracy"`` and ``"multi-class"`` each point to the one
valid spelling.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = ["close_names", "name_key", "unknown_name"]

_SEPARATORS = re.compile(r"[\s_\-]+")


def name_key(name: str) -> str:
    """What suggestions compare: ``name`` in lower case without ``-``, ``_`` and spaces."""
    return _SEPARATORS.sub("", name.casefold())


def close_names(name: object, choices: Iterable[str]) -> list[str]:
    """Valid names close to ``name``: its own spelling up to case and separators, else up to three by difflib."""
    if not isinstance(name, str):
        return []
    by_key: dict[str, str] = {}
    for choice in choices:
        by_key.setdefault(name_key(choice), choice)
    key = name_key(name)
    if key in by_key:
        return [by_key[key]]
    return [by_key[k] for k in difflib.get_close_matches(key, list(by_key), n=3, cutoff=0.6)]


def unknown_name(argument: str, name: object, choices: Iterable[str], *, suggest: Iterable[str] | None = None,
                 also: str = "") -> ValueError:
    """``ValueError("unknown <argument> 'x' (did you mean 'y'?); choose one of a, b, c<also>")``.

    ``suggest`` are the names a suggestion may point to (default: ``choices``);
    ``also`` ends the message (other ways to pass the argument).
    """
    choices = list(choices)
    close = close_names(name, choices if suggest is None else suggest)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return ValueError(f"unknown {argument} {name!r}{hint}; choose one of {', '.join(choices)}{also}")
