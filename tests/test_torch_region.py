"""``torch.compile``'d binary calls as regions dynamo does not trace into (``anyloss_torch._region``): one region
below ``SAVED_SIGMOIDS_MIN_CPU_NUMEL`` logits on a CPU, the counts' region inside the sigmoid-saving checkpoint
and the metric's region from it on.  The same loss and gradient as eager, far fewer guards, and a new trace
whenever what a region was specialised on changes (the configuration, the metric a name stands for, the size
across the threshold)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
anyloss_torch = pytest.importorskip("anyloss_torch")

import anyloss_core as al  # noqa: E402

pytestmark = pytest.mark.backend("torch")

_region = pytest.importorskip("anyloss_torch._region")
if not _region.TORCH_RUNS_REGIONS:  # torch before 2.13: the traced path everywhere
    pytest.skip("torch before 2.13 runs no regions", allow_module_level=True)


@pytest.fixture(autouse=True)
def _fresh_dynamo_cache():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class _Capture:
    """A ``torch.compile`` backend that keeps dynamo's graphs and runs them as they are."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return gm.forward

    def regions(self) -> int:
        """How many nonstrict-traced calls the graphs hold, in subgraphs (a checkpoint's body) too."""
        return sum(1 for gm in self.graphs for module in gm.modules() if isinstance(module, torch.fx.GraphModule)
                   for node in module.graph.nodes if node.op == "call_function" and "flat_apply" in str(node.target))


def _batch(n, seed, dtype=torch.float32):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(0, 2, n), dtype=dtype, requires_grad=True)
    y = torch.tensor(rng.integers(0, 2, n), dtype=dtype)
    w = torch.tensor(rng.uniform(0.5, 2.0, n), dtype=dtype)
    return x, y, w


def _value_and_grad(fn, x, *args):
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x, *args)
    loss.backward()
    return loss.detach(), x.grad


def _f1_loss_float64(z, y, w):
    """1 - soft F1 in float64 NumPy: A(p) = sigmoid(73 (p - 1/2)) of p = sigmoid(z) (the rescue term is 0)."""
    p = 1.0 / (1.0 + np.exp(-z))
    a = 1.0 / (1.0 + np.exp(-73.0 * (p - 0.5)))
    tp, fn, fp = np.sum(w * y * a), np.sum(w * y * (1 - a)), np.sum(w * (1 - y) * a)
    return 1.0 - 2.0 * tp / (2.0 * tp + fn + fp)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_small_compiled_call_is_one_region_equal_to_eager(weighted, dtype):
    x, y, w = _batch(40, 41, dtype)
    args = (y, w) if weighted else (y,)
    capture = _Capture()
    compiled = torch.compile(anyloss_torch.F1Loss(), backend=capture, fullgraph=True)
    loss, grad = _value_and_grad(compiled, x, *args)
    assert capture.regions() == 1
    eager_loss, eager_grad = _value_and_grad(anyloss_torch.F1Loss(), x, *args)
    weights = w.double().numpy() if weighted else np.ones(40)
    reference = _f1_loss_float64(x.detach().double().numpy(), y.double().numpy(), weights)
    assert loss.dtype == dtype
    assert float(loss) == pytest.approx(reference, rel=1e-5 if dtype == torch.float32 else 1e-12)
    torch.testing.assert_close(loss, eager_loss)
    torch.testing.assert_close(grad, eager_grad)


def _guard_lines(fn) -> int:
    entries = torch._dynamo.eval_frame._debug_get_cache_entry_list(fn.__code__)
    assert len(entries) == 1
    return len(str(entries[0].guard_manager).splitlines())


def test_the_regions_leave_far_fewer_guards_than_the_traced_path(monkeypatch):
    # What the regions are for: each compiled call evaluates its guards first (558 lines on the traced path in
    # torch 2.13; 240 with one region, 279 with the checkpointed form; benchmarks/compiled_guards.py).
    x, y, _ = _batch(32, 42)
    lines = {}
    for form in ("one region", "checkpointed", "traced"):
        monkeypatch.setattr(_region, "SAVED_SIGMOIDS_MIN_CPU_NUMEL", 0 if form == "checkpointed" else 1 << 12)
        if form == "traced":
            monkeypatch.setattr(_region, "TORCH_RUNS_REGIONS", False)
        torch._dynamo.reset()
        compiled = torch.compile(anyloss_torch.F1Loss(), fullgraph=True, dynamic=False)
        _value_and_grad(compiled, x, y)
        lines[form] = _guard_lines(anyloss_torch.AnyLoss.forward)
    assert lines["one region"] < lines["traced"] // 2, lines
    assert lines["checkpointed"] < lines["traced"] * 0.6, lines


@pytest.mark.parametrize("weighted", [False, True])
def test_a_large_cpu_call_saves_the_sigmoids_around_the_counts_region(weighted):
    # From SAVED_SIGMOIDS_MIN_CPU_NUMEL logits: the counts' region inside the checkpoint, the metric's after it.
    n = _region.SAVED_SIGMOIDS_MIN_CPU_NUMEL + 3
    x, y, w = _batch(n, 49)
    args = (y, w) if weighted else (y,)
    capture = _Capture()
    loss, grad = _value_and_grad(torch.compile(anyloss_torch.F1Loss(), backend=capture, fullgraph=True), x, *args)
    assert capture.regions() == 2
    assert any("checkpoint" in str(node.target) for gm in capture.graphs for node in gm.graph.nodes)
    eager_loss, eager_grad = _value_and_grad(anyloss_torch.F1Loss(), x, *args)
    weights = w.double().numpy() if weighted else np.ones(n)
    reference = _f1_loss_float64(x.detach().double().numpy(), y.double().numpy(), weights)
    assert float(loss) == pytest.approx(reference, rel=1e-5)
    torch.testing.assert_close(loss, eager_loss)
    torch.testing.assert_close(grad, eager_grad)


@pytest.mark.parametrize("n", [30, _region.SAVED_SIGMOIDS_MIN_CPU_NUMEL * 3])
def test_a_stuck_batch_gets_the_rescue_gradient_in_the_regions(n):
    # Every positive predicted far negative: the soft counts' gradient vanishes there, the rescue term's does not
    # (anyloss_core._rescue); both forms must add it as eager does.
    x = torch.full((n,), -12.0)
    y = torch.tensor([1.0, 0.0, 0.0] * (n // 3))
    capture = _Capture()
    loss, grad = _value_and_grad(torch.compile(anyloss_torch.F1Loss(), backend=capture), x, y)
    assert capture.regions() == (1 if n < _region.SAVED_SIGMOIDS_MIN_CPU_NUMEL else 2)
    eager_loss, eager_grad = _value_and_grad(anyloss_torch.F1Loss(), x, y)
    torch.testing.assert_close(loss, eager_loss)
    torch.testing.assert_close(grad, eager_grad)
    assert float(grad[0]) < -1e-4 / n  # the rescue's pull towards the positive's label
    torch._dynamo.reset()
    without = _value_and_grad(torch.compile(anyloss_torch.F1Loss(rescue=0.0)), x, y)[1]
    assert float(without.abs().max()) < float(grad.abs().max()) / 100


def test_a_changed_configuration_compiles_again():
    # The region is specialised on the configuration's values: loading another loss's state must retrace.
    x, y, _ = _batch(50, 43)
    loss_fn = anyloss_torch.AnyLoss("f1")
    compiled = torch.compile(loss_fn, fullgraph=True)
    f1 = compiled(x, y)
    loss_fn.load_state_dict(anyloss_torch.AnyLoss("accuracy").state_dict())
    accuracy = compiled(x, y)
    loss_fn.load_state_dict(anyloss_torch.AnyLoss("fbeta", beta=2.0).state_dict())
    f2 = compiled(x, y)
    torch.testing.assert_close(f1, anyloss_torch.AnyLoss("f1")(x, y))
    torch.testing.assert_close(accuracy, anyloss_torch.AnyLoss("accuracy")(x, y))
    torch.testing.assert_close(f2, anyloss_torch.AnyLoss("fbeta", beta=2.0)(x, y))
    assert min(abs(float(f1 - accuracy)), abs(float(f1 - f2)), abs(float(accuracy - f2))) > 1e-3


def test_metric_parameters_cross_into_the_region():
    x, y, _ = _batch(50, 44)
    for beta in (0.5, 3.0):
        capture = _Capture()
        compiled = torch.compile(anyloss_torch.FBetaLoss(beta=beta), backend=capture)
        torch.testing.assert_close(compiled(x, y), anyloss_torch.FBetaLoss(beta=beta)(x, y))
        assert capture.regions() == 1


def test_a_name_registered_again_gives_the_new_metric_to_the_functional_loss():
    # anyloss_torch.anyloss resolves the name at every call; the region must not keep the first metric.
    x, y, _ = _batch(40, 45)
    name = "_test_region_metric"
    al.register_metric(name, al.get_metric("f1"), overwrite=True)
    try:
        compiled = torch.compile(lambda x, y: anyloss_torch.anyloss(x, y, name), fullgraph=True)
        first = compiled(x, y)
        al.register_metric(name, al.get_metric("accuracy"), overwrite=True)
        second = compiled(x, y)
    finally:
        al._metrics._REGISTRY.pop(name, None)
    torch.testing.assert_close(first, anyloss_torch.anyloss(x, y, "f1"))
    torch.testing.assert_close(second, anyloss_torch.anyloss(x, y, "accuracy"))
    assert abs(float(first - second)) > 1e-3


def test_a_loss_keeps_the_metric_it_was_built_with_after_its_name_is_registered_again():
    # A module resolves its metric once, when it is built; the region resolves names again, so it must step
    # aside for a loss whose name now stands for another function (eager keeps the loss's own metric).
    x, y, _ = _batch(40, 46)
    name = "_test_region_metric_built"
    al.register_metric(name, al.get_metric("f1"), overwrite=True)
    try:
        loss_fn = anyloss_torch.AnyLoss(name)
        al.register_metric(name, al.get_metric("accuracy"), overwrite=True)
        capture = _Capture()
        compiled = torch.compile(loss_fn, backend=capture)(x, y)
        eager = loss_fn(x, y)
    finally:
        al._metrics._REGISTRY.pop(name, None)
    assert capture.regions() == 0
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(eager, anyloss_torch.AnyLoss("f1")(x, y))


def _custom_f1(c, xp):
    return 2 * c.tp / (2 * c.tp + c.fn + c.fp)


@pytest.mark.parametrize("case", ["metric function", "multiclass", "running counts"])
def test_what_the_region_cannot_take_keeps_the_traced_path(case):
    x, y, _ = _batch(40, 47)
    kwargs = {}
    if case == "metric function":
        loss_fn = anyloss_torch.AnyLoss(_custom_f1)
    elif case == "multiclass":
        loss_fn = anyloss_torch.F1Loss(task="multiclass", num_classes=3)
        rng = np.random.default_rng(47)
        x = torch.tensor(rng.normal(0, 2, (40, 3)), dtype=torch.float32, requires_grad=True)
        y = torch.tensor(rng.integers(0, 3, 40))
    else:
        loss_fn = anyloss_torch.F1Loss(momentum=0.5)
    capture = _Capture()
    compiled = torch.compile(loss_fn, backend=capture)
    loss, grad = _value_and_grad(compiled, x, y, **kwargs)
    assert capture.regions() == 0
    if case == "running counts":  # the running state moved: compare with a fresh eager loss's first call
        loss_fn = anyloss_torch.F1Loss(momentum=0.5)
    eager_loss, eager_grad = _value_and_grad(loss_fn, x, y)
    torch.testing.assert_close(loss, eager_loss)
    torch.testing.assert_close(grad, eager_grad)


def test_a_torch_without_regions_keeps_the_traced_path(monkeypatch):
    monkeypatch.setattr(_region, "TORCH_RUNS_REGIONS", False)
    x, y, _ = _batch(40, 48)
    capture = _Capture()
    loss = torch.compile(anyloss_torch.F1Loss(), backend=capture)(x, y)
    assert capture.regions() == 0
    torch.testing.assert_close(loss, anyloss_torch.F1Loss()(x, y))


def test_new_batch_sizes_compile_once_more_not_once_each():
    # A region's body must not fix the batch size (the core's int() of a symbolic size did): after the first
    # size, dynamo compiles one dynamic graph per form, not one per size up to its recompile limit (8).
    capture = _Capture()
    compiled = torch.compile(anyloss_torch.F1Loss(), backend=capture, fullgraph=True)
    threshold = _region.SAVED_SIGMOIDS_MIN_CPU_NUMEL
    sizes = [*range(30, 42), threshold + 5, threshold + 77, threshold, threshold + 1000, 50]
    for n in sizes:
        x, y, w = _batch(n, n)
        loss, grad = _value_and_grad(compiled, x, y)
        eager_loss, eager_grad = _value_and_grad(anyloss_torch.F1Loss(), x, y)
        torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, eager_grad, rtol=1e-4, atol=1e-7)
    assert len(capture.graphs) <= 3, len(capture.graphs)  # static first size, dynamic below, dynamic from it on
    assert capture.regions() == 1 + 1 + 2


def test_the_functional_losses_keep_the_traced_path_and_sweep_beta_in_two_graphs():
    # Their settings are the call's arguments, and a schedule may change one at every epoch.  The traced path
    # compiles a changing float once, as a symbolic float (2 graphs for 12 values); a region fixes each value
    # (_concrete), so the sweep compiled once per value and failed at dynamo's limit of 8 under fullgraph=True.
    x, y, _ = _batch(40, 50)
    capture = _Capture()
    compiled = torch.compile(lambda x, y, beta: anyloss_torch.anyloss(x, y, "fbeta", beta=beta), backend=capture,
                             fullgraph=True)
    for beta in np.linspace(0.5, 3.0, 12):
        expected = anyloss_torch.anyloss(x, y, "fbeta", beta=float(beta))
        torch.testing.assert_close(compiled(x, y, float(beta)), expected)
    assert capture.regions() == 0 and len(capture.graphs) <= 2, len(capture.graphs)


BETA_SQUARED = 1.0  # read by the metric below at every call


def _scheduled_fbeta(c, xp):
    return (1 + BETA_SQUARED) * c.tp / ((1 + BETA_SQUARED) * c.tp + BETA_SQUARED * c.fn + c.fp)


def test_a_metric_of_the_users_keeps_the_traced_path_and_its_globals_guarded(monkeypatch):
    # A region would not guard what a user's metric reads (a global here): such metrics keep the traced path.
    x, y, _ = _batch(40, 51)
    name = "_test_region_scheduled_fbeta"
    al.register_metric(name, _scheduled_fbeta, overwrite=True)
    try:
        loss_fn = anyloss_torch.AnyLoss(name)
        capture = _Capture()
        compiled = torch.compile(loss_fn, backend=capture, fullgraph=True)
        first = compiled(x, y)
        monkeypatch.setattr(sys.modules[__name__], "BETA_SQUARED", 4.0)
        second = compiled(x, y)
        eager_second = loss_fn(x, y)
    finally:
        al._metrics._REGISTRY.pop(name, None)
    assert capture.regions() == 0
    torch.testing.assert_close(second, eager_second)
    assert abs(float(first - second)) > 1e-3


def test_importing_the_adapter_does_not_import_dynamo():
    # Eager users, the CLI and spawned workers should not pay for torch._dynamo's import (1.3 s).
    code = "import sys, torch, anyloss_torch; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("n", [40, 5000])  # one region; the checkpointed form
@pytest.mark.parametrize("make", [lambda: anyloss_torch.F1Loss(scale=10.0),
                                  lambda: anyloss_torch.F1Loss(approximation="identity"),
                                  lambda: anyloss_torch.F1Loss(from_logits=False),
                                  lambda: anyloss_torch.GMeanLoss(validate=False, rescue=0.0)],
                         ids=["scale", "approximation", "probabilities", "gmean"])
def test_every_setting_crosses_into_the_regions(make, n):
    x, y, _ = _batch(n, 52)
    if not make().from_logits:
        x = torch.sigmoid(x).detach().requires_grad_(True)
    capture = _Capture()
    loss, grad = _value_and_grad(torch.compile(make(), backend=capture, fullgraph=True), x, y)
    assert capture.regions() >= 1
    eager_loss, eager_grad = _value_and_grad(make(), x, y)
    torch.testing.assert_close(loss, eager_loss)
    torch.testing.assert_close(grad, eager_grad)


@pytest.mark.parametrize("field, values", [("beta", (1.0, 2.0, 3.0)), ("scale", (73.0, 20.0, 5.0))])
def test_a_module_float_changed_between_calls_compiles_again(field, values):
    # Dynamo passes a float that changed between calls as a symbolic float; the regions fix its value (a guard),
    # so each value compiles once, as a constant would.
    x, y, _ = _batch(40, 53)
    loss_fn = anyloss_torch.FBetaLoss(beta=1.0)
    compiled = torch.compile(loss_fn, fullgraph=True)
    for value in values:
        reference = anyloss_torch.FBetaLoss(**{"beta": 1.0, field: value})
        loss_fn.load_state_dict(reference.state_dict())
        torch.testing.assert_close(compiled(x, y), reference(x, y))


@pytest.mark.parametrize("n", [40, 5000])
def test_dynamic_true_compiles_the_regions_whole(n):
    # Under dynamic=True every float arrives symbolic (the traced path broke the graph there).
    x, y, w = _batch(n, 54)
    capture = _Capture()
    compiled = torch.compile(anyloss_torch.F1Loss(), backend=capture, fullgraph=True, dynamic=True)
    for args in ((y,), (y, w)):
        loss, grad = _value_and_grad(compiled, x, *args)
        eager_loss, eager_grad = _value_and_grad(anyloss_torch.F1Loss(), x, *args)
        torch.testing.assert_close(loss, eager_loss)
        torch.testing.assert_close(grad, eager_grad)
    assert capture.regions() >= 2


def test_masks_with_per_image_weights_keep_the_traced_path_as_their_size_changes():
    # A region's body reads dynamic inner sizes as unknown, and per-image weights need them: (batch, h, w) inputs
    # keep the traced path.
    capture = _Capture()
    loss_fn = anyloss_torch.F1Loss()
    compiled = torch.compile(loss_fn, backend=capture, fullgraph=True)
    rng = np.random.default_rng(55)
    for h in (4, 5, 6):
        z = torch.tensor(rng.normal(0, 2, (3, h, 5)), dtype=torch.float32)
        y = torch.tensor(rng.integers(0, 2, (3, h, 5)), dtype=torch.float32)
        w = torch.tensor(rng.uniform(0.5, 1.5, 3), dtype=torch.float32)
        torch.testing.assert_close(compiled(z, y, w), loss_fn(z, y, w))
    assert capture.regions() == 0


def test_strict_export_keeps_the_traced_path():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 1)
            self.loss = anyloss_torch.F1Loss()

        def forward(self, features, target):
            return self.loss(self.linear(features).squeeze(-1), target)

    torch.manual_seed(56)
    model, features, target = Model(), torch.randn(40, 3), (torch.rand(40) > 0.5).float()
    exported = torch.export.export(model, (features, target), strict=True)
    torch.testing.assert_close(exported.module()(features, target), model(features, target))
