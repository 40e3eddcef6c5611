"""``anyloss_torch.skip_guard_on_anyloss_globals``: a ``torch.compile`` guard filter that leaves out the guards on
anyloss's own functions and constants, and keeps the guards on what a user can change between calls (tensors,
grad mode, the loss's configuration, the metric registry, the caller's globals)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
anyloss_torch = pytest.importorskip("anyloss_torch")

import anyloss_core as al  # noqa: E402

pytestmark = pytest.mark.backend("torch")

#: A module global read by a compiled function in the test below (its guard must survive the filter).
SCALE = 1.0


@pytest.fixture(autouse=True)
def _fresh_dynamo_cache(monkeypatch):
    # A cache entry compiled with the filter must not outlive its test (a later plain torch.compile of the same
    # code would reuse it), even when the test fails midway.  These tests are of the filter on the traced path:
    # no regions (anyloss_torch._region, tests/test_torch_region.py).
    from anyloss_torch import _region

    monkeypatch.setattr(_region, "TORCH_RUNS_REGIONS", False)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _entry(name: str, is_global: bool) -> SimpleNamespace:
    return SimpleNamespace(name=name, is_global=is_global)


def test_the_filter_drops_only_globals_read_through_anyloss_or_its_namespace():
    dropped = [
        "G['__import_anyloss_core_dot__confusion']._counts.__code__",
        "G['__import_anyloss_torch_dot__functional'].torch.add",
        "G['__import_array_api_compat_dot_torch_dot__aliases'].result_type",
        "dict(G['__import_anyloss_core_dot__inputs']._Checked.__dict__)",
        "G['__import_anyloss_core'].soft_confusion",
    ]
    kept_globals = [
        "G['SCALE']",  # a caller's global
        "G['__import_anyloss_core_dot__metrics']._REGISTRY['mine']",  # register_metric(..., overwrite=True)
        "G['__import_anyloss_core_dot__fast_paths']._REGISTERED[0][1]",  # register_fast_paths
        "G['__import_anyloss_tools_dot_helpers'].scale",  # a package of the caller's whose name starts alike
        "G['__import_torch_dot_nn_dot_modules_dot_module']._global_forward_hooks",
        "G['__builtins_dict___0']['len']",
    ]
    locals_ = ["L['self'].config", "L['input']", "L['self'].__dict__['__import_anyloss_core']"]
    entries = ([_entry(name, True) for name in dropped + kept_globals]
               + [_entry(name, False) for name in locals_])
    expected = [False] * len(dropped) + [True] * (len(kept_globals) + len(locals_))
    assert anyloss_torch.skip_guard_on_anyloss_globals(entries) == expected


def _guard_tree(fn) -> str:
    entries = torch._dynamo.eval_frame._debug_get_cache_entry_list(fn.__code__)
    assert len(entries) == 1
    return str(entries[0].guard_manager)


def _compiled(module, **options):
    # torch.compile pops guard_filter_fn out of the dict it is given: a fresh dict per call.
    return torch.compile(module, fullgraph=True, dynamic=False,
                         options={"guard_filter_fn": anyloss_torch.skip_guard_on_anyloss_globals, **options})


def test_a_filtered_compiled_loss_equals_eager_with_far_fewer_guards():
    rng = np.random.default_rng(31)
    raw, labels = rng.normal(0, 2, 64), torch.tensor(rng.integers(0, 2, 64), dtype=torch.float32)
    trees = {}
    for filtered in (False, True):
        torch._dynamo.reset()
        loss_fn = anyloss_torch.F1Loss()
        compiled = _compiled(loss_fn) if filtered else torch.compile(loss_fn, fullgraph=True, dynamic=False)
        x = torch.tensor(raw, dtype=torch.float32, requires_grad=True)
        loss = compiled(x, labels)
        loss.backward()
        x_eager = torch.tensor(raw, dtype=torch.float32, requires_grad=True)
        eager = anyloss_torch.F1Loss()(x_eager, labels)
        eager.backward()
        torch.testing.assert_close(loss, eager, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(x.grad, x_eager.grad, rtol=1e-5, atol=1e-7)
        trees[filtered] = _guard_tree(anyloss_torch.AnyLoss.forward)
    torch._dynamo.reset()

    def own_module_accessors(tree: str) -> list[str]:
        # The tree's nodes that read a global through our modules, but for the path to the fast-path registry.
        registry = re.compile(r"_REGISTER|source=G\['__import_anyloss_core_dot__(fast_paths|metrics)'\],")
        return [line for line in tree.splitlines() if "GuardManager: source=" in line
                and ("__import_anyloss_" in line or "__import_array_api_compat_" in line)
                and not registry.search(line)]

    assert len(own_module_accessors(trees[False])) > 100
    assert own_module_accessors(trees[True]) == []
    # The tensors' guards stay (a new dtype or shape must compile again).
    assert "TENSOR_MATCH" in trees[True]
    assert len(trees[True].splitlines()) < len(trees[False].splitlines()) // 2


def test_a_changed_configuration_still_compiles_again():
    # The guards on the loss module and its configuration are local ones, kept: loading an accuracy loss's state
    # into a compiled F1 loss must give the accuracy loss, not the F1 graph.
    torch._dynamo.reset()
    rng = np.random.default_rng(32)
    x = torch.tensor(rng.normal(0, 2, 50), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 2, 50), dtype=torch.float32)
    loss_fn = anyloss_torch.AnyLoss("f1")
    compiled = _compiled(loss_fn)
    f1 = compiled(x, y)
    loss_fn.load_state_dict(anyloss_torch.AnyLoss("accuracy").state_dict())
    accuracy = compiled(x, y)
    torch._dynamo.reset()
    torch.testing.assert_close(f1, anyloss_torch.AnyLoss("f1")(x, y), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(accuracy, anyloss_torch.AnyLoss("accuracy")(x, y), rtol=1e-6, atol=1e-7)
    assert abs(float(f1) - float(accuracy)) > 1e-3  # the two metrics differ on this batch


def test_a_metric_registered_again_compiles_again():
    # register_metric(..., overwrite=True) changes the metric a name stands for: a trace that looked the name up
    # must not keep the old metric (the registry's guards are kept).
    torch._dynamo.reset()
    rng = np.random.default_rng(34)
    x = torch.tensor(rng.normal(0, 2, 40), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 2, 40), dtype=torch.float32)
    name = "_test_guards_metric"
    al.register_metric(name, al.get_metric("f1"), overwrite=True)
    compiled = _compiled(lambda x, y: anyloss_torch.anyloss(x, y, name))
    try:
        first = compiled(x, y)
        al.register_metric(name, al.get_metric("accuracy"), overwrite=True)
        second = compiled(x, y)
    finally:
        al._metrics._REGISTRY.pop(name, None)
    torch.testing.assert_close(first, anyloss_torch.anyloss(x, y, "f1"), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(second, anyloss_torch.anyloss(x, y, "accuracy"), rtol=1e-6, atol=1e-7)
    assert abs(float(first) - float(second)) > 1e-3


def test_dtype_shape_and_grad_mode_still_compile_again():
    # The tensors' guards and torch's global state are kept: a new dtype, a new shape and grad mode off each give
    # eager's result (a stale graph would give the first call's dtype, shape or a graph built for the backward).
    torch._dynamo.reset()
    rng = np.random.default_rng(35)
    loss_fn = anyloss_torch.F1Loss()
    compiled = _compiled(loss_fn)
    try:
        for n, dtype, grad in ((40, torch.float32, True), (40, torch.float64, True), (57, torch.float64, True),
                               (57, torch.float64, False)):
            raw, labels = rng.normal(0, 2, n), torch.tensor(rng.integers(0, 2, n), dtype=dtype)
            x = torch.tensor(raw, dtype=dtype, requires_grad=True)
            x_eager = torch.tensor(raw, dtype=dtype, requires_grad=True)
            with torch.set_grad_enabled(grad):
                got, want = compiled(x, labels), loss_fn(x_eager, labels)
            assert got.dtype == want.dtype and got.requires_grad == grad
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
            if grad:
                got.backward()
                want.backward()
                torch.testing.assert_close(x.grad, x_eager.grad, rtol=1e-5, atol=1e-7)
    finally:
        torch._dynamo.reset()


def test_the_callers_own_globals_keep_their_guards():
    global SCALE
    torch._dynamo.reset()
    rng = np.random.default_rng(33)
    x = torch.tensor(rng.normal(0, 2, 40), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 2, 40), dtype=torch.float32)
    loss_fn = anyloss_torch.F1Loss()

    def scaled_loss(x, y):
        return SCALE * loss_fn(x, y)

    compiled = _compiled(scaled_loss)
    try:
        once = compiled(x, y)
        SCALE = 3.0
        thrice = compiled(x, y)
    finally:
        SCALE = 1.0
        torch._dynamo.reset()
    torch.testing.assert_close(thrice, 3.0 * once, rtol=1e-6, atol=1e-7)
