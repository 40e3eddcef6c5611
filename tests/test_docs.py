"""Every ```python block of the README and docs/ runs, in the session whose frameworks it imports."""

from __future__ import annotations

import pathlib
import re

import pytest
from conftest import ACTIVE

ROOT = pathlib.Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "jax", "keras", "optax")
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _blocks():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for i, code in enumerate(BLOCK.findall(path.read_text())):
            needs = {f for f in FRAMEWORKS if re.search(rf"^\s*import {f}\b|^\s*from {f}\b|import anyloss_{f}\b",
                                                        code, re.M)}
            needs = {"jax" if f == "optax" else f for f in needs}
            yield pytest.param(code, needs, id=f"{path.relative_to(ROOT)}-{i}")


@pytest.mark.parametrize("code,needs", list(_blocks()))
def test_example_runs(code, needs, tmp_path, monkeypatch):
    missing = needs - ACTIVE
    if missing:
        pytest.skip(f"needs {', '.join(sorted(missing))}, not in this session")
    if not needs and "numpy" not in ACTIVE:
        pytest.skip("NumPy examples run in the core session")
    if needs and "keras" not in needs and "keras" in ACTIVE:
        pytest.skip("framework examples run in their own session")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs example>", "exec"), {"__name__": "__docs__"})
