"""Backend selection for the test suite.

``ANYLOSS_TEST_BACKENDS`` (comma-separated: numpy, array_api_strict, torch, jax,
keras) names the backends a run must test.  A named backend that cannot be
imported is a usage error, so a nox session whose framework failed to install
fails instead of passing with everything skipped.  Tests marked
``@pytest.mark.backend(name)`` for a backend outside the list are skipped with
that reason.  Without the variable, every importable backend is tested.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import pytest

MODULES = {
    "numpy": "numpy",
    "array_api_strict": "array_api_strict",
    "torch": "torch",
    "jax": "jax",
    "keras": "keras",
}


def _requested() -> list[str] | None:
    raw = os.environ.get("ANYLOSS_TEST_BACKENDS", "").strip()
    return [b.strip() for b in raw.split(",") if b.strip()] or None


def _active() -> set[str]:
    requested = _requested()
    if requested is not None:
        return set(requested)
    return {name for name, module in MODULES.items() if importlib.util.find_spec(module) is not None}


ACTIVE = _active()


def pytest_configure(config: pytest.Config) -> None:
    requested = _requested() or []
    for name in requested:
        if name not in MODULES:
            raise pytest.UsageError(f"ANYLOSS_TEST_BACKENDS names unknown backend {name!r}")
        if importlib.util.find_spec(MODULES[name]) is None:
            raise pytest.UsageError(
                f"ANYLOSS_TEST_BACKENDS asks for {name!r} but it is not installed: refusing to skip its tests"
            )
    if "torch" in ACTIVE:
        # Import order matters: torch before TensorFlow in one process.
        importlib.import_module("torch")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker in item.iter_markers("backend"):
            name = marker.args[0]
            if name not in ACTIVE:
                item.add_marker(pytest.mark.skip(reason=f"backend {name!r} not selected in this session"))


def requires(name: str) -> pytest.MarkDecorator:
    return pytest.mark.backend(name)
