"""Backend selection for the test suite.

``ANYLOSS_TEST_BACKENDS`` (comma-separated: numpy, array_api_strict, torch, jax,
keras) names the backends a run must test.  A named backend that cannot be
imported is a usage error, so a nox session whose framework failed to install
fails instead of passing with everything skipped.  Tests marked
``@pytest.mark.backend(name)`` for a backend outside the list are skipped with
that reason.  Without the variable, every importable backend is tested.

The ``backend`` fixture yields one adapter object (``tests/_backends.py``) per
selected backend, so that a test written once runs on every backend: the model is
array-api-extra's ``xp`` fixture.  ``@pytest.mark.needs("grad")`` keeps a test to
the backends with that capability (see ``_backends.Backend``); a test that also
takes ``float_dtype`` runs once per float dtype each backend has.

The suite's helper modules (``cases``, ``_backends``, ``_ddp_worker``, this file)
are imported by name from this directory; the directory is put on ``sys.path``
below, so that this does not rest on pytest's ``rootdir``/``prepend`` import mode.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import _backends  # noqa: E402

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
    config.addinivalue_line("markers", "needs(*capabilities): run on the selected backends that have them")
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


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> _backends.Backend:
    """The adapter of one selected backend (parametrized by ``pytest_generate_tests`` below)."""
    return _backends.get(request.param)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        if "backend" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return  # a test that names its own backends keeps them
    needs = [c for marker in metafunc.definition.iter_markers("needs") for c in marker.args]
    names = [name for name in _backends.NAMES if name in ACTIVE and _backends.get(name).has(*needs)]
    argnames = ["backend", "float_dtype"] if "float_dtype" in metafunc.fixturenames else ["backend"]
    params = [
        pytest.param(name, *dtype, id="-".join([name, *dtype]), marks=pytest.mark.backend(name))
        for name in names
        for dtype in ([(d,) for d in _backends.get(name).float_dtypes] if len(argnames) == 2 else [()])
    ]
    if not params:  # an empty set skips the test, with this reason rather than pytest's
        wanted = f" with {', '.join(needs)}" if needs else ""
        reason = f"no backend{wanted} selected in this session ({', '.join(sorted(ACTIVE))})"
        params = [pytest.param(*[None] * len(argnames), id="none", marks=pytest.mark.skip(reason=reason))]
    metafunc.parametrize(argnames, params, indirect=["backend"])
