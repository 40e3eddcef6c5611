"""The public names of each package, and the layering of the modules (issue 19).

* ``__all__`` of anyloss_core and of each adapter is pinned here: a name added to or
  removed from a package's public surface is a decision, made by editing this file.
* The import graph of anyloss_core and backends/* is read from the source with ``ast``
  (nothing is imported), so the layering is checked in every session, whatever
  framework it has: no import cycles; the core imports no framework; an adapter imports
  the core only through ``anyloss_core`` and ``anyloss_core.adapters``, and no other
  adapter's private modules.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PUBLIC = {
    "anyloss_core": [
        "APPROXIMATIONS", "AVERAGES", "AnyLossApproximation", "Confusion", "IdentityApproximation", "METRICS",
        "SharpenedSoftmax", "SolCosineApproximation", "TASKS", "Threshold", "accuracy_loss", "anyloss",
        "balanced_accuracy_loss", "best_threshold", "confusion", "confusion_loss", "f1_loss", "fbeta_loss",
        "get_metric", "gmean_loss", "ratio", "register_metric", "scale_range", "score", "soft_confusion",
    ],
    "anyloss_torch": [
        "AccuracyLoss", "AnyLoss", "BalancedAccuracyLoss", "F1Loss", "FBetaLoss", "GMeanLoss", "accuracy_loss",
        "anyloss", "balanced_accuracy_loss", "f1_loss", "fbeta_loss", "gmean_loss", "skip_guard_on_anyloss_globals",
    ],
    "anyloss_jax": [
        "accuracy_loss", "anyloss", "balanced_accuracy_loss", "f1_loss", "fbeta_loss", "gmean_loss",
        "init_running_counts", "running_anyloss", "soft_confusion",
    ],
    "anyloss_keras": [
        "AccuracyLoss", "AnyLoss", "BalancedAccuracyLoss", "F1Loss", "FBetaLoss", "GMeanLoss", "RunningCounts",
    ],
}

#: The documented interface modules besides the packages themselves: pinned too.
INTERFACES = {
    "anyloss_core.adapters": [
        "Approximation", "DEFAULT_RESCUE", "DEFAULT_SCALE", "DifferentiableApproximation", "FastPaths", "LossConfig",
        "LossConfigAttributes", "check_metric_value", "check_momentum", "check_rescue", "check_scale", "check_task",
        "get_approximation", "get_namespace", "prepared_for_rescue", "register_fast_paths", "rescue_for",
        "rescue_slope", "rescue_term", "running_confusion_loss", "running_counts_shape",
        "soft_class_confusion_with_pullback", "soft_confusion_with_pullback", "values_available", "with_metric",
    ],
    "anyloss_torch.interop": ["all_reduce_counts", "config_counts", "config_loss", "config_rescue_term"],
}

#: The framework each package needs (a test of a package whose framework is not selected is skipped).
FRAMEWORK = {"anyloss_torch": "torch", "anyloss_jax": "jax", "anyloss_keras": "keras"}
FRAMEWORKS = {"torch", "jax", "jaxlib", "tensorflow", "keras", "flax", "optax", "tf_keras"}


def _with_backend(names: list[str]) -> list[object]:
    """``names`` as parameters, each marked with the backend its package needs."""
    return [pytest.param(name, marks=pytest.mark.backend(FRAMEWORK[name.split(".")[0]]))
            if name.split(".")[0] in FRAMEWORK else name for name in names]


@pytest.mark.parametrize("package", _with_backend(list(PUBLIC) + list(INTERFACES)))
def test_public_names_are_pinned_sorted_and_few(package):
    module = importlib.import_module(package)
    expected = {**PUBLIC, **INTERFACES}[package]
    assert list(module.__all__) == sorted(module.__all__), f"{package}.__all__ is not sorted"
    assert list(module.__all__) == expected, f"{package}.__all__ changed: {sorted(set(module.__all__) ^ set(expected))}"
    assert len(module.__all__) <= 25
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"


def test_pinned_lists_are_sorted():
    # The pins themselves: a sorted list reads as a set and diffs cleanly.
    for package, names in {**PUBLIC, **INTERFACES}.items():
        assert names == sorted(names), package


def test_demoted_plumbing_stays_importable_from_the_core():
    # Kept outside __all__ for code written before anyloss_core.adapters existed.
    import anyloss_core as al
    import anyloss_core.adapters as adapters

    for name in ("check_scale", "get_namespace", "soft_confusion_with_pullback",
                 "DifferentiableApproximation", "get_approximation", "with_metric"):
        assert hasattr(al, name) and name not in al.__all__, name
    for name in ("check_scale", "get_namespace", "soft_confusion_with_pullback", "DifferentiableApproximation"):
        assert getattr(al, name) is getattr(adapters, name)


# --- the import graph, from the source ------------------------------------------------------


def _modules() -> dict[str, Path]:
    """``{"anyloss_core._config": path, ...}`` for the core and every adapter package."""
    found = {}
    for package_dir in [ROOT / "anyloss_core", *sorted((ROOT / "backends").glob("anyloss_*"))]:
        if not (package_dir / "__init__.py").is_file():
            continue
        for path in sorted(package_dir.rglob("*.py")):
            parts = path.relative_to(package_dir.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, *, lazy: bool = True) -> list[tuple[str, int]]:
    """The absolute module names ``name`` imports, each with its line: not under ``if
    TYPE_CHECKING``; inside functions too when ``lazy``; ``from pkg import sub`` names
    ``pkg.sub`` when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
            if len(submodules) < len(node.names):  # names defined by ``target`` itself: it is run
                found.append((target, node.lineno))
            found.extend((module, node.lineno) for module in submodules)
        if lazy or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for child in ast.iter_child_nodes(node):
                visit(child)

    visit(tree)
    return found


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}
#: What runs when a module is imported (no imports inside functions): where a cycle breaks imports.
EAGER_IMPORTS = {name: _imports(name, path, lazy=False) for name, path in MODULES.items()}


def test_the_graph_is_read():
    # Not vacuous: the modules and the edges everyone knows are there.
    assert {"anyloss_core", "anyloss_core._config", "anyloss_core.adapters", "anyloss_torch", "anyloss_jax",
            "anyloss_keras"} <= set(MODULES)
    assert any(target == "anyloss_core._config" for target, _ in IMPORTS["anyloss_core.adapters"])
    assert any(target == "torch" for target, _ in EAGER_IMPORTS["anyloss_torch._modules"])
    assert any(target == "anyloss_torch.interop" for target, _ in IMPORTS["anyloss_keras._losses"])  # lazy
    assert not any(target == "anyloss_torch.interop" for target, _ in EAGER_IMPORTS["anyloss_keras._losses"])


def test_no_import_cycles():
    # Module-level imports: a function-level import is how a deliberate back-reference (a
    # compatibility alias in a module whose names moved) avoids a cycle at import time.
    edges = {name: sorted({t for t, _ in EAGER_IMPORTS[name] if t in MODULES and t != name}) for name in MODULES}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in edges[node]:
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(MODULES):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_core_imports_no_framework():
    found = [f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}"
             for name, imports in IMPORTS.items() if name.split(".")[0] == "anyloss_core"
             for target, line in imports if target.split(".")[0] in FRAMEWORKS]
    assert not found, found


def _private(target: str) -> bool:
    return any(part.startswith("_") for part in target.split(".")[1:])


def test_adapters_use_only_public_interfaces_of_the_others():
    """An adapter imports ``anyloss_core`` / ``anyloss_core.adapters`` and other adapters' public modules only."""
    found = []
    for name, imports in IMPORTS.items():
        own = name.split(".")[0]
        if own == "anyloss_core":
            continue
        for target, line in imports:
            top = target.split(".")[0]
            if top.startswith("anyloss_") and top != own and _private(target):
                found.append(f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}")
    assert not found, found


def test_suite_imports_only_the_core_interfaces():
    # anyloss_bench/suite.py drives the adapters: the same rule as for an adapter.
    path = ROOT / "anyloss_bench" / "suite.py"
    imports = _imports("anyloss_bench.suite", path)
    found = [f"{path.relative_to(ROOT)}:{line} imports {target}" for target, line in imports
             if target.split(".")[0] in {"anyloss_core", *FRAMEWORK} and _private(target)]
    assert imports and not found, found


# --- the adapter interface: one validated configuration ---------------------------------------


_CONFIGS = [
    {"metric": "f1"},
    {"metric": "fbeta", "metric_params": {"beta": 2.0}, "from_logits": True, "scale": 50},
    {"metric": "f2", "task": "multiclass", "approximation": "ovr", "num_classes": 3, "momentum": 0.5},
    {"metric": "mcc", "task": "multilabel", "average": "micro", "rescue": 0.0, "validate": False},
]


@pytest.mark.parametrize("options", _CONFIGS, ids=lambda o: o["metric"])
def test_loss_config_round_trips_through_its_dict(options):
    from anyloss_core.adapters import LossConfig

    config = LossConfig(**options)
    again = LossConfig.from_dict(config.to_dict())
    assert again == config and again.to_dict() == config.to_dict()
    assert isinstance(config.scale, float) and config.metric_params == options.get("metric_params", {})
    # A named class's arguments (F2Loss-like: the metric fixed), with others that are not the config's.
    fixed = LossConfig.from_arguments({**options, "distributed": True, "input": None}, fixed_metric=options["metric"])
    assert fixed.fixed_metric and "metric" not in fixed.to_dict()
    assert LossConfig.from_dict(fixed.to_dict(), fixed_metric=options["metric"]) == fixed


def test_loss_config_is_frozen_and_checks_at_construction():
    import dataclasses

    import numpy as np

    import anyloss_core as al
    from anyloss_core.adapters import LossConfig

    config = LossConfig("f1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.scale = 2.0  # type: ignore[misc]
    y, p = np.array([0, 1]), np.array([0.2, 0.7])
    # The same errors as the core's functions give for the same typo.
    for bad in ({"scale": -1.0}, {"task": "multiclas"}, {"average": "mean"}, {"approximation": "sigmoid"}):
        with pytest.raises((ValueError, TypeError)) as core:
            al.anyloss(y, p, "f1", **bad)
        with pytest.raises(type(core.value), match="^" + __import__("re").escape(str(core.value)) + "$"):
            LossConfig("f1", **bad)
    with pytest.raises(ValueError, match="f3x"):
        LossConfig("f3x")
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        LossConfig("f1", from_logits=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="momentum"):
        LossConfig("f1", momentum=0.0)
    with pytest.raises(ValueError, match="num_classes"):
        LossConfig("f1", task="multiclass", momentum=0.5)  # the per-class state needs it


def test_loss_config_attributes_are_read_only_views():
    from anyloss_core.adapters import LossConfig, LossConfigAttributes

    class Loss(LossConfigAttributes):
        fixed_metric = "fbeta"

        def __init__(self, **arguments):
            self.config = self._config_from(arguments)

    loss = Loss(metric="ignored", metric_params={"beta": 2.0}, scale=10, name="not a field")
    assert loss.config == LossConfig("fbeta", {"beta": 2.0}, scale=10.0, fixed_metric=True)
    assert (loss.metric, loss.scale, loss.task, loss.momentum) == ("fbeta", 10.0, "binary", None)
    loss.metric_params["beta"] = 3.0  # a copy: the configuration is unchanged
    assert loss.config.metric_params == {"beta": 2.0}
    with pytest.raises(AttributeError):
        loss.scale = 1.0
