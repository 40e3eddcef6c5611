"""anyloss_torch: gradcheck, autocast, compile, torch.func, the module API, training.

The checks every backend shares (the float64 reference, extreme logits in every dtype, degenerate batches,
shapes, weights, bad input) are in tests/test_backends.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import pickle
import re

import numpy as np
import pytest
from cases import APPROX_CONFIGS, METRIC_CONFIGS

pytestmark = pytest.mark.backend("torch")
torch = pytest.importorskip("torch")
anyloss_torch = pytest.importorskip("anyloss_torch")

import anyloss_core as al  # noqa: E402


def _grad_batches():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 12)
    y[:2] = [0, 1]
    return [
        ("logits", y, rng.normal(0, 1.5, 12), True),
        ("probs", y, rng.uniform(0.05, 0.95, 12), False),
    ]


@pytest.mark.parametrize("metric,params", METRIC_CONFIGS, ids=[m + str(p) for m, p in METRIC_CONFIGS])
@pytest.mark.parametrize("approximation,scale", APPROX_CONFIGS, ids=[f"{a}{s:g}" for a, s in APPROX_CONFIGS])
def test_gradcheck_float64(metric, params, approximation, scale):
    for _, y, pred, from_logits in _grad_batches():
        target = torch.tensor(y)
        x = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
        w = torch.linspace(0.5, 1.5, len(y), dtype=torch.float64)

        def fn(x, w=w, target=target, from_logits=from_logits):
            # rescue=0: the paper's gradient, the derivative of the value (the rescue gradient is added on
            # purpose and is not; tests/test_rescue.py checks it against its own reference).
            return anyloss_torch.anyloss(x, target, metric, weight=w, from_logits=from_logits, scale=scale,
                                         approximation=approximation, rescue=0.0, **dict(params))

        assert torch.autograd.gradcheck(fn, (x,), eps=1e-7, atol=1e-6, rtol=1e-4)


def test_gradient_matches_the_analytic_formula():
    # dL/dz_i for F1 from the paper's appendix: with F1 = 2TP / (2TP + FP + FN) = 2TP / (P + S),
    # P = sum(y), S = sum(yh): dF1/dyh_i = (2 y_i (P + S) - 2TP) / (P + S)^2.
    rng = np.random.default_rng(12)
    y, z = rng.integers(0, 2, 30), rng.normal(size=30)
    x = torch.tensor(z, requires_grad=True)
    anyloss_torch.f1_loss(x, torch.tensor(y), rescue=0.0).backward()  # the paper's gradient
    p = 1 / (1 + np.exp(-z))
    a = 1 / (1 + np.exp(-73 * (p - 0.5)))
    tp, big_p, s = (y * a).sum(), y.sum(), a.sum()
    d_f1 = (2 * y * (big_p + s) - 2 * tp) / (big_p + s) ** 2
    d_a_dz = 73 * a * (1 - a) * p * (1 - p)
    np.testing.assert_allclose(x.grad.numpy(), -d_f1 * d_a_dz, rtol=1e-10, atol=1e-15)


def test_autocast_bfloat16_gives_finite_gradients():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    x, y = torch.randn(64, 5) * 100, (torch.rand(64) < 0.2).long()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        assert logits.dtype == torch.bfloat16
        loss = anyloss_torch.F1Loss()(logits, y[:, None])
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_distributed_without_a_process_group_is_an_error():
    # The bad input every backend shares (labels, metric, beta, scale, integer input): tests/test_backends.py.
    with pytest.raises(RuntimeError, match="process group"):
        anyloss_torch.F1Loss(distributed=True)(torch.randn(4), torch.tensor([0, 1, 0, 1]))


_LOSS_CLASSES = ["AnyLoss", "F1Loss", "FBetaLoss", "AccuracyLoss", "GMeanLoss", "BalancedAccuracyLoss"]
_COMMON_PARAMETERS = ["from_logits", "scale", "approximation", "validate", "distributed", "process_group", "task",
                      "average", "num_classes", "ignore_index", "reduction", "weight", "pos_weight"]


@pytest.mark.parametrize("name", _LOSS_CLASSES)
def test_constructors_list_their_parameters(name):
    import inspect

    cls = getattr(anyloss_torch, name)
    parameters = inspect.signature(cls).parameters
    assert set(_COMMON_PARAMETERS) <= set(parameters), list(parameters)
    assert all(parameters[p].kind is inspect.Parameter.KEYWORD_ONLY for p in _COMMON_PARAMETERS)
    if name == "AnyLoss":
        assert "metric" in parameters and "metric_params" in parameters  # a metric's own parameters
        return
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()), list(parameters)
    assert ("beta" in parameters) == (name == "FBetaLoss")
    with pytest.raises(TypeError, match=rf"^{name}\.__init__\(\) got an unexpected keyword argument 'size'"):
        cls(size=3)  # a typo is the caller's, named by the class, not blamed on the metric


def test_reduction_accepts_mean_only():
    x, y = torch.randn(10), torch.randint(0, 2, (10,))
    loss_fn = anyloss_torch.F1Loss(reduction="mean")
    assert loss_fn.reduction == "mean" and repr(loss_fn) == repr(anyloss_torch.F1Loss())
    assert torch.equal(loss_fn(x, y), anyloss_torch.F1Loss()(x, y))
    assert torch.equal(anyloss_torch.anyloss(x, y, reduction="mean"), anyloss_torch.anyloss(x, y))
    assert torch.equal(anyloss_torch.fbeta_loss(x, y, beta=2.0, reduction="mean"),
                       anyloss_torch.FBetaLoss(2.0, reduction="mean")(x, y))
    for reduction, why in [("none", "no per-sample loss"), ("sum", "nothing to sum"), ("avg", "got 'avg'")]:
        for build in (lambda r: anyloss_torch.F1Loss(reduction=r), lambda r: anyloss_torch.AnyLoss("mcc", reduction=r),
                      lambda r: anyloss_torch.anyloss(x, y, reduction=r)):
            with pytest.raises(ValueError, match=f"^reduction.*{why}.*one statistic of the whole batch|"
                                                 f"^reduction.*one statistic of the whole batch.*{why}"):
                build(reduction)


def test_bce_weight_and_pos_weight_name_the_alternative():
    with pytest.raises(TypeError, match=r"call time, loss_fn\(input, target, weight=w\)"):
        anyloss_torch.F1Loss(weight=torch.ones(4))
    for build in (lambda: anyloss_torch.AnyLoss("f1", pos_weight=torch.tensor(3.0)),
                  lambda: anyloss_torch.GMeanLoss(pos_weight=torch.tensor(3.0)),
                  lambda: anyloss_torch.anyloss(torch.randn(4), torch.tensor([0, 1, 0, 1]), pos_weight=3.0)):
        with pytest.raises(TypeError, match=r"pos_weight is not supported.*FBetaLoss\(beta=2\.0\).*"
                                            r"weight=1 \+ \(pos_weight - 1\) \* target"):
            build()
    # The recipe the message gives: positives count pos_weight times, as if repeated.
    x, y = torch.randn(12, dtype=torch.float64), torch.randint(0, 2, (12,))
    y[:2] = torch.tensor([0, 1])
    w = 1 + (3 - 1) * y
    torch.testing.assert_close(anyloss_torch.F1Loss()(x, y, weight=w.double()),
                               anyloss_torch.F1Loss()(x.repeat_interleave(w), y.repeat_interleave(w)))


def test_ignore_index_is_rejected_outside_multiclass():
    x, y = torch.randn(8), torch.tensor([0, 1, -100, 1, 0, -100, 1, 0])
    for build in (lambda: anyloss_torch.F1Loss(ignore_index=-100),
                  lambda: anyloss_torch.AnyLoss("f1", task="multilabel", ignore_index=0),
                  lambda: anyloss_torch.anyloss(x, y, ignore_index=-100)):
        with pytest.raises(ValueError, match=r"ignore_index applies only to task='multiclass'.*zero weight"):
            build()
    # The binary recipe the message gives equals dropping the rows.
    keep = y != -100
    torch.testing.assert_close(anyloss_torch.F1Loss()(x, y.where(keep, 0), weight=keep.float()),
                               anyloss_torch.F1Loss()(x[keep], y[keep]))
    logits, ids = torch.randn(6, 3), torch.tensor([0, 2, -100, 1, 1, -100])
    multiclass = anyloss_torch.F1Loss(task="multiclass", ignore_index=-100)(logits, ids)
    torch.testing.assert_close(multiclass, anyloss_torch.F1Loss(task="multiclass")(logits[ids >= 0], ids[ids >= 0]))


def test_input_must_be_a_tensor_and_targets_convert():
    x, y = torch.tensor([-1.0, 2.0, 0.5]), [0, 1, 1]
    for call in (anyloss_torch.F1Loss(), anyloss_torch.anyloss, anyloss_torch.gmean_loss):
        for bad in ([-1.0, 2.0, 0.5], np.array([-1.0, 2.0, 0.5])):
            name = type(bad).__name__
            with pytest.raises(TypeError, match=rf"^input must be a torch\.Tensor, got {name}; .*torch\.as_tensor"):
                call(bad, torch.tensor(y))
        expected = call(x, torch.tensor(y))
        assert torch.equal(call(x, y), expected) and torch.equal(call(x, np.array(y)), expected)
    torch.testing.assert_close(anyloss_torch.f1_loss(x, y, weight=[1.0, 2.0, 1.0]),
                               anyloss_torch.f1_loss(x, y, weight=torch.tensor([1.0, 2.0, 1.0])))
    with pytest.raises(TypeError, match="^target must be a tensor or array-like of numbers, got str"):
        anyloss_torch.f1_loss(x, "011")


@pytest.mark.parametrize("metric", ["f1", "gmean"])
def test_torch_compile_fullgraph_equals_eager(metric):
    torch._dynamo.reset()
    loss_fn = anyloss_torch.AnyLoss(metric)
    compiled = torch.compile(loss_fn, fullgraph=True)
    rng = np.random.default_rng(13)
    for n in (64, 200):
        y = torch.tensor(rng.integers(0, 2, n))
        x1 = torch.tensor(rng.normal(0, 2, n), dtype=torch.float32, requires_grad=True)
        x2 = x1.detach().clone().requires_grad_(True)
        eager, comp = loss_fn(x1, y), compiled(x2, y)
        eager.backward()
        comp.backward()
        torch.testing.assert_close(comp, eager, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-4, atol=1e-7)


def test_torch_compile_guards_leave_out_lookups_that_cannot_change():
    # Every guard of a compiled frame runs before every call (about 20 ns a line: at n = 32 a tenth of a compiled
    # call).  Lookups the loss makes on objects that never change between calls must not each become a guard:
    # the built-in metric functions (a set membership test guarded every function in it), the instance dict of
    # the fast paths (one "not shadowed" guard per method), and the module's read-only properties (one guard
    # per class of the hierarchy).
    torch._dynamo.reset()
    loss_fn = anyloss_torch.F1Loss()
    compiled = torch.compile(loss_fn, fullgraph=True, dynamic=False)
    rng = np.random.default_rng(17)
    for _ in range(3):  # fresh tensors of one shape: one graph
        x = torch.tensor(rng.normal(0, 2, 32), dtype=torch.float32, requires_grad=True)
        compiled(x, torch.tensor(rng.integers(0, 2, 32), dtype=torch.float32)).backward()
    entries = torch._dynamo.eval_frame._debug_get_cache_entry_list(type(loss_fn).forward.__code__)
    assert len(entries) == 1
    guards = str(entries[0].guard_manager)
    for source in (r"_metrics'\]\._BUILT_IN\)\[", r"_REGISTERED\[\d+\]\[1\]\.__dict__", r"\.__mro__"):
        assert not re.search(source, guards), [line for line in guards.splitlines() if re.search(source, line)][:3]


@pytest.mark.parametrize("approximation", ["anyloss", "identity", "sol-cosine"])
@pytest.mark.parametrize("from_logits", [True, False])
def test_torch_compile_equals_eager_per_approximation(approximation, from_logits):
    # The compiled path (the core's composition with the sigmoids and counts saved for
    # the backward) against eager's analytic backward; (n, 1) inputs and sample weights.
    torch._dynamo.reset()
    loss_fn = anyloss_torch.F1Loss(approximation=approximation, from_logits=from_logits)
    compiled = torch.compile(loss_fn, fullgraph=True)
    rng = np.random.default_rng(15)
    n = 300
    y = torch.tensor(rng.integers(0, 2, (n, 1)))
    w1 = torch.tensor(rng.uniform(0.5, 2.0, (n, 1)), dtype=torch.float64, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    raw = rng.normal(0, 2, (n, 1)) if from_logits else rng.uniform(0.05, 0.95, (n, 1))
    x1 = torch.tensor(raw, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    eager, comp = loss_fn(x1, y, w1), compiled(x2, y, w2)
    eager.backward()
    comp.backward()
    torch.testing.assert_close(comp, eager, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(w2.grad, w1.grad, rtol=1e-9, atol=1e-12)  # weights captured by the checkpoint


def test_torch_compile_traces_without_warnings_about_caches():
    # array-api-compat's namespace lookups are lru_cache'd, which dynamo cannot trace
    # and warns about at every compile; the core resolves torch tensors without them.
    import warnings

    torch._dynamo.reset()
    x = torch.randn(40, requires_grad=True)
    y = torch.tensor([0, 1] * 20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.compile(anyloss_torch.GMeanLoss(), fullgraph=True)(x, y).backward()
        torch.compile(anyloss_torch.f1_loss, fullgraph=True)(x.detach(), y)
        z = torch.randn(40, 5, requires_grad=True)  # multi-class: the one-hot's class range on z's device
        torch.compile(anyloss_torch.AnyLoss("f1", task="multiclass", num_classes=5), fullgraph=True)(z, y).backward()
    assert not [w for w in caught if "lru_cache" in str(w.message)], [str(w.message)[:120] for w in caught]
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kwargs", [{"rescue": 0.0}, {"from_logits": False}, {}])
def test_torch_compile_compiles_once_for_repeated_calls(kwargs):
    # The stuck-batch watch counts calls in a module global; read while tracing, the count became a
    # guard and every call recompiled until dynamo's recompile limit (then ran eagerly).
    torch._dynamo.reset()
    x = torch.randn(40, requires_grad=True)
    inputs = torch.sigmoid(x) if kwargs.get("from_logits") is False else x
    y = torch.tensor([0.0, 1.0] * 20)
    loss = torch.compile(anyloss_torch.F1Loss(**kwargs), dynamic=False)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(20):
            loss(inputs, y).backward(retain_graph=True)
    assert torch.isfinite(x.grad).all()


def _mlp_loss(rescue, dtype=torch.float64):
    """A loss of the first layer's weights through a tanh layer (what a meta-gradient or a Hessian-vector
    product of a model differentiates): the model's own curvature and the loss's both count."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=gen, dtype=dtype)
    y = (torch.rand(64, generator=gen) < 0.3).to(dtype)
    w2 = torch.randn(4, generator=gen, dtype=dtype) * 0.05  # logits near 0: the loss's curvature is large
    loss_fn = anyloss_torch.F1Loss(rescue=rescue)
    return lambda w1: loss_fn(torch.tanh(x @ w1) @ w2, y)


def _hessian_vector(loss_of, w, v):
    w = w.detach().requires_grad_()
    (grad,) = torch.autograd.grad(loss_of(w), w, create_graph=True)
    assert grad.requires_grad
    (hv,) = torch.autograd.grad((grad * v).sum(), w)
    return grad.detach(), hv


def _first_derivative(loss_of, w):
    w = w.detach().requires_grad_()
    return torch.autograd.grad(loss_of(w), w)[0]


def test_second_derivatives_of_the_one_node_loss_are_the_losses_own():
    # create_graph=True: the one-node loss differentiates its plain composition, so a Hessian-vector product
    # through a model equals central differences of the (closed-form, float64) first derivative.
    import anyloss_torch._autograd as autograd

    loss_of = _mlp_loss(rescue=0.0)
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    assert autograd.choose_path(torch.zeros(2, requires_grad=True), None, "anyloss") is autograd.Path.ONE_NODE
    grad, hv = _hessian_vector(loss_of, w, v)
    torch.testing.assert_close(grad, _first_derivative(loss_of, w), rtol=1e-12, atol=1e-15)
    eps = 1e-6
    reference = (_first_derivative(loss_of, w + eps * v) - _first_derivative(loss_of, w - eps * v)) / (2 * eps)
    torch.testing.assert_close(hv, reference, rtol=1e-6, atol=1e-6 * float(reference.abs().max()))
    z = torch.randn(32, generator=gen, dtype=torch.float64, requires_grad=True)
    y = (torch.arange(32) % 3 == 0).to(torch.float64)
    assert torch.autograd.gradgradcheck(lambda z: anyloss_torch.F1Loss(rescue=0.0)(z, y), (z,))


def test_the_rescue_adds_no_curvature_to_the_one_node_loss(monkeypatch):
    # As in plain autodiff (anyloss_core._rescue: sg[slope] * (z - sg[z])) and JAX: with the rescue the second
    # derivative is the plain composition's, which differs from the rescue-free one by the model's curvature
    # times the rescue slope only.
    import anyloss_torch._autograd as autograd

    gen = torch.Generator().manual_seed(2)
    w = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    _, one_node = _hessian_vector(_mlp_loss(rescue=0.1), w, v)
    _, without_rescue = _hessian_vector(_mlp_loss(rescue=0.0), w, v)
    monkeypatch.setattr(autograd, "choose_path", lambda *a, **k: autograd.Path.AUTODIFF)
    _, plain = _hessian_vector(_mlp_loss(rescue=0.1), w, v)
    torch.testing.assert_close(one_node, plain, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(one_node, without_rescue, rtol=1e-3)  # the rescue's first-order part did count


@pytest.mark.parametrize("metric", ["f1", "accuracy"])
def test_second_derivatives_of_the_analytic_counts_are_the_losses_own(monkeypatch, metric):
    # The analytic counts (distributed, devices that must not wait, declined metrics) recompute their plain
    # composition too.  Accuracy is linear in the counts: its upstream gradient is a constant, so only the
    # counts' own curvature is there, which once_differentiable's mark missed (no edge to the parameters).
    import anyloss_torch._autograd as autograd

    gen = torch.Generator().manual_seed(6)
    w = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    x = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    y = (torch.rand(64, generator=gen) < 0.3).to(torch.float64)
    w2 = torch.randn(4, generator=gen, dtype=torch.float64) * 0.05

    def loss_of(w1):
        return anyloss_torch.AnyLoss(metric=metric, rescue=0.0)(torch.tanh(x @ w1) @ w2, y)

    monkeypatch.setattr(autograd, "choose_path", lambda *a, **k: autograd.Path.ANALYTIC)
    grad, hv = _hessian_vector(loss_of, w, v)
    torch.testing.assert_close(grad, _first_derivative(loss_of, w), rtol=1e-12, atol=1e-15)
    eps = 1e-6
    reference = (_first_derivative(loss_of, w + eps * v) - _first_derivative(loss_of, w - eps * v)) / (2 * eps)
    torch.testing.assert_close(hv, reference, rtol=1e-6, atol=1e-6 * float(reference.abs().max()))


@pytest.mark.parametrize("case", ["running", "multiclass"])
@pytest.mark.parametrize("how", ["grad of the parameters", "backward"])
def test_a_second_derivative_of_a_closed_form_backward_without_one_is_an_error(case, how):
    # Running counts and the per-class closed form have no derivative of their own: with create_graph=True the
    # first derivative is computed, and differentiating it again raises, also through autograd.grad(inputs=...)
    # of a model's parameters (the mark takes the node's input as its own) and where the upstream gradient is a
    # constant (the running loss is one node), which once_differentiable alone would let through silently.
    from anyloss_torch._multiclass import EAGER_MIN_ELEMENTS

    gen = torch.Generator().manual_seed(3)
    w = torch.randn(3, 4, generator=gen, requires_grad=True)
    if case == "running":
        n, y, loss_fn = 16, torch.tensor([0.0, 1.0] * 8), anyloss_torch.F1Loss(momentum=0.5)
        message = "running counts.*momentum=None"
    else:  # the per-class counts' closed form, used from this many logits
        n = EAGER_MIN_ELEMENTS // 4 + 8
        y = torch.randint(0, 4, (n,), generator=gen)
        loss_fn = anyloss_torch.AnyLoss(metric="accuracy", task="multiclass", num_classes=4, average="micro")
        message = "per-class counts.*torch.func"
    x = torch.randn(n, 3, generator=gen)

    def model(w):
        out = torch.tanh(x @ w)
        return out if case == "multiclass" else out.sum(1)

    (grad,) = torch.autograd.grad(loss_fn(model(w), y), w, create_graph=True)
    if case != "running":  # (a running loss's second call sees other counts)
        torch.testing.assert_close(grad.detach(), torch.autograd.grad(loss_fn(model(w), y), w)[0], rtol=0, atol=0)
    with pytest.raises(RuntimeError, match=message):
        if how == "backward":
            grad.sum().backward()
        else:
            torch.autograd.grad(torch.sum(grad * torch.ones_like(grad)), w)


@pytest.mark.parametrize("case", ["binary", "running", "multiclass"])
def test_forward_mode_of_logits_that_require_grad_gives_the_gradients_product(case):
    # A dual tensor (torch.autograd.forward_ad) that also requires grad, as forward-over-reverse code makes: the
    # closed-form nodes have no jvp (NotImplementedError before), so such calls take the plain composition.
    import torch.autograd.forward_ad as fwad

    from anyloss_torch._multiclass import EAGER_MIN_ELEMENTS

    gen = torch.Generator().manual_seed(5)
    if case == "multiclass":
        n = EAGER_MIN_ELEMENTS // 4 + 8
        z, y = torch.randn(n, 4, generator=gen, dtype=torch.float64), torch.randint(0, 4, (n,), generator=gen)

        def make():
            return anyloss_torch.AnyLoss(metric="f1", task="multiclass", num_classes=4)
    else:
        z = torch.randn(64, generator=gen, dtype=torch.float64) * 0.1
        y = (torch.rand(64, generator=gen) < 0.3).to(torch.float64)

        def make():
            return anyloss_torch.F1Loss(momentum=0.5) if case == "running" else anyloss_torch.F1Loss()
    v = torch.randn(z.shape, generator=gen, dtype=torch.float64)
    leaf = z.clone().requires_grad_()
    (grad,) = torch.autograd.grad(make()(leaf, y), leaf)
    with fwad.dual_level():
        dual = fwad.make_dual(z.clone().requires_grad_(), v)
        tangent = fwad.unpack_dual(make()(dual, y)).tangent
    torch.testing.assert_close(tangent, torch.sum(grad * v), rtol=1e-10, atol=1e-12)


def test_forward_mode_of_labels_with_logits_that_require_grad():
    # A tangent of soft labels while the logits require grad (the one-node path's condition): the labels are not
    # the node's inputs, so their tangent was dropped (None); such calls take the plain composition.
    import torch.autograd.forward_ad as fwad

    gen = torch.Generator().manual_seed(8)
    z = torch.randn(48, generator=gen, dtype=torch.float64) * 0.1
    y = torch.rand(48, generator=gen, dtype=torch.float64)
    v = torch.randn(48, generator=gen, dtype=torch.float64)
    soft = y.clone().requires_grad_()
    loss_fn = anyloss_torch.F1Loss(validate=False)  # soft labels
    (grad_y,) = torch.autograd.grad(loss_fn(z, soft), soft)  # labels that require grad: autodiff
    with fwad.dual_level():
        tangent = fwad.unpack_dual(loss_fn(z.clone().requires_grad_(), fwad.make_dual(y, v))).tangent
    assert tangent is not None
    torch.testing.assert_close(tangent, torch.sum(grad_y * v), rtol=1e-10, atol=1e-12)


def test_per_class_closed_form_keeps_no_hold_on_the_logits():
    # Its error mark reaches the parameters through a recorded one-element copy, not the saved logits: an
    # in-place edit of the logits after the loss leaves the usual backward working (it raised, when the logits
    # were saved for the mark).
    from anyloss_torch._multiclass import EAGER_MIN_ELEMENTS

    gen = torch.Generator().manual_seed(9)
    n = EAGER_MIN_ELEMENTS // 4 + 8
    w = torch.randn(3, 4, generator=gen, requires_grad=True)
    x, y = torch.randn(n, 3, generator=gen), torch.randint(0, 4, (n,), generator=gen)
    logits = x @ w
    loss = anyloss_torch.AnyLoss(metric="f1", task="multiclass", num_classes=4)(logits, y)
    logits.clamp_(-2.0, 2.0)  # an edit of the model's output after the loss was taken
    loss.backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_make_fx_with_symbolic_shapes_traces_the_loss():
    # Fake tensors of symbolic shape pass values_available outside dynamo; their shapes do not hash, and the
    # core's table of checked signatures (anyloss_core._inputs) must then be skipped, not fail.
    from torch.fx.experimental.proxy_tensor import make_fx

    loss_fn = anyloss_torch.F1Loss(validate=False)
    x, y = torch.randn(8), torch.tensor([0.0, 1.0] * 4)
    graph = make_fx(lambda a, b: loss_fn(a, b), tracing_mode="symbolic")(x, y)
    torch.testing.assert_close(graph(x, y), loss_fn(x, y))


def test_eager_calls_of_new_shapes_do_not_recompile_a_compiled_loss():
    # The core remembers the argument checks of eager calls by signature (anyloss_core._inputs._CHECKED); a
    # trace must not read that table, or its contents would become guards: here the compiled call's own
    # signature is in the table when it is traced, and is dropped when the table fills up and is emptied.
    from anyloss_core import _inputs

    torch._dynamo.reset()
    x = torch.randn(40, requires_grad=True)
    y = torch.tensor([0.0, 1.0] * 20)
    eager, compiled = anyloss_torch.F1Loss(), torch.compile(anyloss_torch.F1Loss(), dynamic=False)
    eager(x, y).backward()
    compiled(x, y).backward()
    emptied = False
    with torch._dynamo.config.patch(error_on_recompile=True):
        for n in range(2, _inputs._CHECKED_SIZE + 10):
            before = len(_inputs._CHECKED)
            eager(torch.randn(n, requires_grad=True), torch.ones(n)).backward()
            emptied |= len(_inputs._CHECKED) < before
            compiled(x, y).backward()
    assert emptied and torch.isfinite(x.grad).all()


def _compiled_graphs(loss_fn, x, y):
    """The forward and backward aten graphs that torch.compile's partitioner produces."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd
    from torch._inductor.compile_fx import partition_fn
    from torch._inductor.decomposition import select_decomp_table

    graphs = {}

    def keep(name):
        def compiler(gm, example_inputs):
            graphs[name] = gm
            return make_boxed_func(gm.forward)
        return compiler

    torch._dynamo.reset()
    # Inductor's decompositions, joint-graph passes and partitioner, without its code generation.
    backend = aot_autograd(fw_compiler=keep("forward"), bw_compiler=keep("backward"), partition_fn=partition_fn,
                           decompositions=select_decomp_table())
    torch.compile(loss_fn, backend=backend, fullgraph=True)(x, y).backward()
    return graphs


def _aten_calls(graph):
    return [str(node.target) for node in graph.graph.nodes if node.op == "call_function"]


@pytest.fixture(params=["traced", "regions"])
def compiled_cpu_form(request, monkeypatch):
    """Both forms of a compiled CPU call that hold the sigmoid-saving checkpoint, at any size: the traced path
    (no regions), and the regions' checkpointed form (``anyloss_torch._region``; its own tests in
    tests/test_torch_region.py)."""
    from anyloss_torch import _region

    if request.param == "traced":
        monkeypatch.setattr(_region, "TORCH_RUNS_REGIONS", False)
    else:
        if not _region.TORCH_RUNS_REGIONS:
            pytest.skip("torch before 2.13: no regions")
        monkeypatch.setattr(_region, "SAVED_SIGMOIDS_MIN_CPU_NUMEL", 0)
    torch._dynamo.reset()
    yield request.param
    torch._dynamo.reset()


def test_torch_compile_backward_on_cpu_reuses_the_forward_sigmoids(compiled_cpu_form):
    # Left alone, the partitioner recomputes both sigmoids of A(sigmoid(z)) in the
    # backward (two exp per sample against BCE's one: 1.2x-1.3x of BCE's step on a
    # CPU); the adapter saves them, and the counts, instead.
    x = torch.randn(50, requires_grad=True)
    y = torch.tensor([0, 1] * 25)
    graphs = _compiled_graphs(anyloss_torch.F1Loss(), x, y)
    assert sum("sigmoid.default" in op for op in _aten_calls(graphs["forward"])) == 2
    backward = _aten_calls(graphs["backward"])
    assert not any("sigmoid.default" in op or op.startswith("aten.exp.") for op in backward), backward
    assert not any("sum" in op or "dot" in op for op in backward), backward  # no second reduction pass


def _saved_arrays(backward, n):
    """The n-element tensors the forward saved for ``backward`` (its inputs other than the primals)."""
    return [node.name for node in backward.graph.nodes if node.op == "placeholder"
            and not node.name.startswith(("primals", "tangents")) and node.meta["val"].numel() == n]


def test_torch_compile_on_cpu_recomputes_the_approximation_for_large_arrays(monkeypatch, compiled_cpu_form):
    # From 32 MiB per array a second saved array costs fresh pages every step (n = 1e7
    # float32, one thread: 1.37x BCE's step, against 1.07x-1.10x with A(sigmoid(z)) recomputed): only
    # sigmoid(z) is saved, and the backward computes A from it with one exp per sample.
    from anyloss_core import _fast_paths

    x = torch.randn(50, requires_grad=True)
    y = torch.tensor([0, 1] * 25)
    assert len(_saved_arrays(_compiled_graphs(anyloss_torch.F1Loss(), x, y)["backward"], 50)) == 2
    monkeypatch.setattr(_fast_paths, "FRESH_PAGES_BYTES", 50 * 4)  # as if 50 float32 were 32 MiB
    graphs = _compiled_graphs(anyloss_torch.F1Loss(), x, y)
    backward = _aten_calls(graphs["backward"])
    assert sum("sigmoid.default" in op for op in backward) == 1, backward  # A(sigmoid(z)) only
    assert not any(op.startswith("aten.exp.") for op in backward), backward
    assert not any("sum" in op or "dot" in op for op in backward), backward
    assert len(_saved_arrays(graphs["backward"], 50)) == 1, graphs["backward"].graph
    torch._dynamo.reset()
    x.grad = None  # the graphs' backward passes above accumulated into it
    x2 = x.detach().clone().requires_grad_(True)
    compiled = torch.compile(anyloss_torch.F1Loss(), fullgraph=True)(x2, y)
    eager = anyloss_torch.F1Loss()(x, y)
    compiled.backward()
    eager.backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-4, atol=1e-7)


def test_torch_multiclass_backward_goes_through_the_native_softmax():
    # The core takes the framework's own softmax, whose backward needs only its
    # output; autodiff of exp(z - max z) / sum(...) also differentiated the max shift
    # (measured 4.0x of CrossEntropyLoss eagerly and 1.6x compiled at n = 1e5, C = 10;
    # now 2.3x and 1.0x).
    x = torch.randn(50, 4, requires_grad=True)
    loss = anyloss_torch.F1Loss(task="multiclass", num_classes=4)(x, torch.randint(0, 4, (50,)))
    nodes = _graph_nodes(loss.grad_fn)
    assert "SoftmaxBackward0" in nodes, nodes
    assert not nodes & {"AmaxBackward0", "MaxBackward1", "ExpBackward0"}, nodes


def test_torch_func_grad_and_vmap():
    from torch.func import grad, vmap

    rng = np.random.default_rng(14)
    xs = torch.tensor(rng.normal(size=(5, 20)))
    ys = torch.tensor(rng.integers(0, 2, (5, 20)))
    batched = vmap(anyloss_torch.f1_loss)(xs, ys)
    looped = torch.stack([anyloss_torch.f1_loss(x, y) for x, y in zip(xs, ys, strict=True)])
    torch.testing.assert_close(batched, looped)
    g = grad(lambda x: anyloss_torch.gmean_loss(x, ys[0]))(xs[0])
    x = xs[0].clone().requires_grad_(True)
    anyloss_torch.gmean_loss(x, ys[0]).backward()
    torch.testing.assert_close(g, x.grad)
    per_problem = vmap(grad(anyloss_torch.f1_loss))(xs, ys)
    assert per_problem.shape == xs.shape and torch.isfinite(per_problem).all()


def test_module_repr_pickle_and_state_dict():
    loss_fn = anyloss_torch.AnyLoss("fbeta", beta=2.0, scale=50.0)
    assert "beta=2.0" in repr(loss_fn) and "scale=50.0" in repr(loss_fn)
    clone = pickle.loads(pickle.dumps(loss_fn))
    x, y = torch.randn(16), torch.randint(0, 2, (16,))
    assert torch.equal(clone(x, y), loss_fn(x, y))
    state = loss_fn.state_dict()
    fresh = anyloss_torch.AnyLoss()
    fresh.load_state_dict(state)
    assert fresh.metric == "fbeta" and fresh.metric_params == {"beta": 2.0} and fresh.scale == 50.0
    assert torch.equal(fresh(x, y), loss_fn(x, y))
    named = anyloss_torch.GMeanLoss(from_logits=False)
    assert repr(named).startswith("GMeanLoss(") and "metric" not in repr(named)
    p = torch.rand(16)
    assert torch.equal(named(p, y), anyloss_torch.anyloss(p, y, "gmean", from_logits=False))


def test_named_classes_equal_functional():
    x, y = torch.randn(30), torch.randint(0, 2, (30,))
    pairs = [
        (anyloss_torch.F1Loss(), "f1", {}),
        (anyloss_torch.FBetaLoss(beta=0.5), "fbeta", {"beta": 0.5}),
        (anyloss_torch.AccuracyLoss(), "accuracy", {}),
        (anyloss_torch.GMeanLoss(), "gmean", {}),
        (anyloss_torch.BalancedAccuracyLoss(), "balanced_accuracy", {}),
    ]
    for module, name, params in pairs:
        assert torch.equal(module(x, y), anyloss_torch.anyloss(x, y, name, **params))


@pytest.mark.slow
def test_f1_loss_beats_bce_on_imbalanced_breast_cancer():
    # The paper's MLP (2 sigmoid hidden units, batch norm), 100 epochs of mini-batches
    # of 24 (about 10% of the training split), Adam at 0.01 for both losses, 5 seeds.
    # Measured: mean validation F1 0.851 (F1Loss) vs 0.822 (BCEWithLogitsLoss).
    pytest.importorskip("sklearn")
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    from anyloss_bench.data import load_dataset, standardize

    data = load_dataset("breast_cancer")
    scores: dict[str, list[float]] = {"f1": [], "bce": []}
    for seed in range(5):
        X_tr, X_va, y_tr, y_va = train_test_split(data.X, data.y, test_size=0.4, stratify=data.y,
                                                  random_state=seed)
        X_tr, X_va = standardize(X_tr, X_va)
        xt, yt = torch.tensor(X_tr, dtype=torch.float32), torch.tensor(y_tr)
        for name, loss_fn in [("f1", anyloss_torch.F1Loss()), ("bce", torch.nn.BCEWithLogitsLoss())]:
            torch.manual_seed(seed)
            model = torch.nn.Sequential(torch.nn.Linear(30, 2), torch.nn.BatchNorm1d(2), torch.nn.Sigmoid(),
                                        torch.nn.Linear(2, 1))
            opt = torch.optim.Adam(model.parameters(), lr=0.01)
            gen = torch.Generator().manual_seed(seed)
            for _ in range(100):
                perm = torch.randperm(len(yt), generator=gen)
                for i in range(0, len(yt), 24):
                    idx = perm[i:i + 24]
                    if len(idx) < 2:
                        continue
                    opt.zero_grad()
                    out = model(xt[idx])[:, 0]
                    loss = loss_fn(out, yt[idx]) if name == "f1" else loss_fn(out, yt[idx].float())
                    loss.backward()
                    opt.step()
            model.eval()
            with torch.no_grad():
                pred = (model(torch.tensor(X_va, dtype=torch.float32))[:, 0] > 0).numpy()
            scores[name].append(f1_score(y_va, pred, zero_division=0))
    f1_mean, bce_mean = np.mean(scores["f1"]), np.mean(scores["bce"])
    assert math.isfinite(f1_mean)
    assert f1_mean > bce_mean + 0.01, scores


def _graph_nodes(fn):
    seen, stack = set(), [fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return {type(n).__name__ for n in seen}


@pytest.mark.parametrize("metric", sorted(al.METRICS))
@pytest.mark.parametrize("labels", ["mixed", "no_positives", "no_negatives"])
def test_one_node_backward_is_used_and_equals_autodiff(metric, labels):
    """On a CPU the whole loss is one autograd node (metric on floats + the counts' pullback)."""
    params = {"beta": 2.0} if metric == "fbeta" else {}  # a metric's parameters, where it takes some
    rng = np.random.default_rng(15)
    y_np = {"mixed": rng.integers(0, 2, 50), "no_positives": np.zeros(50, int), "no_negatives": np.ones(50, int)}
    y = torch.tensor(y_np[labels])
    w = torch.tensor(rng.uniform(0.5, 2.0, 50))
    for approximation in al.APPROXIMATIONS:
        for from_logits in (True, False):
            raw = rng.normal(size=50) if from_logits else rng.uniform(0.01, 0.99, 50)
            x1 = torch.tensor(raw, requires_grad=True)
            loss = anyloss_torch.anyloss(x1, y, metric, weight=w, from_logits=from_logits,
                                         approximation=approximation, **params)
            assert _graph_nodes(loss.grad_fn) == {"_LossFromCountsBackward", "AccumulateGrad"}
            loss.backward()
            # Autodiff of the plain composition (weights requiring grad take that path).
            x2 = torch.tensor(raw, requires_grad=True)
            w2 = w.clone().requires_grad_(True)
            plain = anyloss_torch.anyloss(x2, y, metric, weight=w2, from_logits=from_logits,
                                          approximation=approximation, **params)
            assert "_LossFromCountsBackward" not in _graph_nodes(plain.grad_fn)
            plain.backward()
            torch.testing.assert_close(loss, plain, rtol=1e-13, atol=1e-15)
            torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-14)


def test_the_one_node_forward_records_nothing_for_autograd():
    # The one-node path computes the counts outside autograd (from the detached input, not in a no_grad block):
    # no kernel of its forward may return a tensor that requires grad. A recorded kernel would keep its inputs
    # alive until the backward and make the in-place fast paths fall back to copies.
    from torch.overrides import TorchFunctionMode

    class RequiringGrad(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []
            self.recorded: list[str] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = getattr(func, "__name__", str(func))
            self.seen.append(name)
            if isinstance(out, torch.Tensor) and out.requires_grad:
                self.recorded.append(name)
            return out

    rng = np.random.default_rng(16)
    z = torch.tensor(rng.normal(size=40), requires_grad=True)
    y = torch.tensor(rng.integers(0, 2, 40).astype(float))
    with RequiringGrad() as mode:
        loss = anyloss_torch.F1Loss()(z, y)
    assert _graph_nodes(loss.grad_fn) == {"_LossFromCountsBackward", "AccumulateGrad"}
    assert "sigmoid" in mode.seen  # the mode sees the forward's kernels (autograd.Function.apply it does not)
    assert mode.recorded == []


@pytest.mark.parametrize("weighted", [False, True])
def test_labels_that_require_grad_get_their_gradient(weighted):
    # Float labels that require grad (soft targets being learned, say) get dLoss/dy, as in BCEWithLogitsLoss:
    # the one-node path has no gradient for them, so they take plain autodiff. The reference is F1's in float64
    # NumPy: with a = A(sigmoid(z)), TP = sum w y a and D = 2 TP + FP + FN = sum w (y + a),
    # dF1/dy_i = 2 w_i (a_i D - TP) / D^2 (the rescue term's slope is a constant: no gradient to y).
    rng = np.random.default_rng(18)
    z_np, y_np = rng.normal(0, 0.2, 60), rng.integers(0, 2, 60).astype(float)
    w_np = rng.uniform(0.5, 2.0, 60) if weighted else np.ones(60)
    z = torch.tensor(z_np, requires_grad=True)
    y = torch.tensor(y_np, requires_grad=True)
    loss = anyloss_torch.F1Loss()(z, y, torch.tensor(w_np) if weighted else None)
    assert "_LossFromCountsBackward" not in _graph_nodes(loss.grad_fn)
    loss.backward()
    a = 1.0 / (1.0 + np.exp(-73.0 * (1.0 / (1.0 + np.exp(-z_np)) - 0.5)))
    tp, d = np.sum(w_np * y_np * a), np.sum(w_np * (y_np + a))
    np.testing.assert_allclose(float(loss.detach()), 1.0 - 2.0 * tp / d, rtol=1e-12)
    np.testing.assert_allclose(y.grad.numpy(), -2.0 * w_np * (a * d - tp) / d**2, rtol=1e-9, atol=1e-15)


def test_one_hot_labels_that_require_grad_get_their_gradient(monkeypatch):
    # Multi-class: the closed-form counts (eager from 2**15 logits) have no gradient for the labels either, so
    # one-hot labels that require grad take the plain composition; the reference is that composition with the
    # closed form switched off for every size.
    from anyloss_torch import _multiclass

    torch.manual_seed(0)
    n, classes = 4096, 8  # n * classes = 2**15: the closed form's eager bound
    z_raw = torch.randn(n, classes, dtype=torch.float64)
    y_raw = torch.nn.functional.one_hot(torch.randint(0, classes, (n,)), classes).double()
    grads = []
    for bound in (_multiclass.EAGER_MIN_ELEMENTS, 1 << 62):
        monkeypatch.setattr(_multiclass, "EAGER_MIN_ELEMENTS", bound)
        z, y = z_raw.clone().requires_grad_(True), y_raw.clone().requires_grad_(True)
        anyloss_torch.F1Loss(task="multiclass", num_classes=classes)(z, y).backward()
        assert y.grad is not None and float(y.grad.abs().sum()) > 0
        grads.append((z.grad, y.grad))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-15)


def _grad_parents_of(x, loss):
    """The autograd nodes whose gradient flows straight into the leaf ``x``."""
    parents, seen, stack = set(), set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for next_fn, _ in node.next_functions:
            if next_fn is not None and getattr(next_fn, "variable", None) is x:
                parents.add(type(node).__name__)
            stack.append(next_fn)
    return parents


@pytest.mark.parametrize("rescue", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("metric", ["f1", "gmean", "mcc"])
def test_the_analytic_path_gives_the_rescue_gradient_from_the_counts_pullback(monkeypatch, metric, weighted,
                                                                              rescue):
    # The eager step that reads nothing ("analytic counts": the metric in autograd; a captured CUDA graph's,
    # distributed=True's), forced on the CPU.
    # The rescue gradient comes from the counts' pullback (the counts' node is the only one that reaches the
    # input: a rescue term of its own was ~20 more kernels), and equals the one-node path's, which
    # tests/test_rescue.py checks against a float64 NumPy reference.
    from anyloss_torch import _autograd

    rng = np.random.default_rng(21)
    y = torch.tensor(rng.integers(0, 2, 40))
    w = torch.tensor(rng.uniform(0.5, 2.0, 40)) if weighted else None
    for approximation in ("anyloss", "identity", "sol-cosine"):
        for from_logits in (True, False):
            raw = rng.normal(0, 3, 40) if from_logits else rng.uniform(0.01, 0.99, 40)  # some confidently wrong
            x1 = torch.tensor(raw, requires_grad=True)
            one_node = anyloss_torch.anyloss(x1, y, metric, weight=w, from_logits=from_logits,
                                             approximation=approximation, rescue=rescue)
            one_node.backward()
            with monkeypatch.context() as patch:
                patch.setattr(_autograd, "choose_path", lambda *args, **kwargs: _autograd.Path.ANALYTIC)
                x2 = torch.tensor(raw, requires_grad=True)
                analytic = anyloss_torch.anyloss(x2, y, metric, weight=w, from_logits=from_logits,
                                                 approximation=approximation, rescue=rescue)
            assert _grad_parents_of(x2, analytic) == {"_SoftCountsBackward"}
            analytic.backward()
            torch.testing.assert_close(analytic, one_node.detach(), rtol=1e-13, atol=1e-15)
            torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-9, atol=1e-14)
            if rescue:  # the rescue gradient is there (not only the paper's)
                plain = torch.tensor(raw, requires_grad=True)
                anyloss_torch.anyloss(plain, y, metric, weight=w, from_logits=from_logits,
                                      approximation=approximation, rescue=0.0).backward()
                assert (x2.grad - plain.grad).abs().max() > 1e-4


@pytest.mark.parametrize(("forced", "node"), [(None, "_LossFromCountsBackward"), ("analytic", "_SoftCountsBackward")])
def test_running_counts_take_the_rescue_gradient_from_the_counts_pullback(monkeypatch, forced, node):
    # A loss of running counts is one node on a CPU (the metric at the running counts on floats); with the
    # analytic path forced its counts are a node of their own.  Either way the rescue gradient comes from the
    # counts' pullback (that node is the only one reaching the input), and is rescue * (sigmoid(z) - y) / n on the
    # misclassified samples (a float64 NumPy reference), on top of the running loss's own gradient.
    from anyloss_torch import _autograd

    if forced:
        monkeypatch.setattr(_autograd, "choose_path", lambda *args, **kwargs: _autograd.Path.ANALYTIC)
    rng = np.random.default_rng(5)
    raw, labels = rng.normal(0, 4, 30), rng.integers(0, 2, 30)
    first = torch.tensor(rng.normal(0, 1, 30)), torch.tensor(rng.integers(0, 2, 30))
    grads = {}
    for rescue in (0.0, 0.1):
        loss_fn = anyloss_torch.AnyLoss("f1", momentum=0.2, rescue=rescue)
        loss_fn(*first)  # some stored counts
        x = torch.tensor(raw, requires_grad=True)
        loss = loss_fn(x, torch.tensor(labels))
        assert _grad_parents_of(x, loss) == {node}
        loss.backward()
        grads[rescue] = x.grad.numpy()
    p = 1.0 / (1.0 + np.exp(-raw))
    wrong = np.where(labels == 1, p < 0.5, p > 0.5)
    np.testing.assert_allclose(grads[0.1] - grads[0.0], 0.1 * np.where(wrong, p - labels, 0.0) / 30,
                               rtol=1e-9, atol=1e-15)
    assert wrong.sum() > 3


@pytest.mark.parametrize("metric", ["f1", "gmean", "mcc", "balanced_accuracy"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_one_node_running_loss_equals_autograd_of_the_running_loss(monkeypatch, metric, weighted):
    # Value, gradient and new state of three steps (an empty state first, a batch of zero weight last), the
    # one-node path against autograd of the core's running_confusion_loss (the analytic path, forced).
    from anyloss_torch import _autograd

    rng = np.random.default_rng(9)
    batches = [(rng.normal(0, 2, 25), rng.integers(0, 2, 25)) for _ in range(3)]
    weights = [torch.tensor(rng.uniform(0.5, 2.0, 25)) if weighted else None for _ in range(3)]
    if weighted:
        weights[2] = torch.zeros(25, dtype=torch.float64)
    results = []
    for forced in (False, True):
        with monkeypatch.context() as patch:
            if forced:
                patch.setattr(_autograd, "choose_path", lambda *args, **kwargs: _autograd.Path.ANALYTIC)
            loss_fn = anyloss_torch.AnyLoss(metric, momentum=0.3)
            steps = []
            for (raw, labels), w in zip(batches, weights, strict=True):
                x = torch.tensor(raw, requires_grad=True)
                loss = loss_fn(x, torch.tensor(labels), weight=w)
                assert ("_LossFromCountsBackward" in _grad_parents_of(x, loss)) is not forced
                loss.backward()
                steps.append((loss.item(), x.grad.clone(), loss_fn.running_counts.clone()))
            results.append(steps)
    for (v1, g1, s1), (v2, g2, s2) in zip(*results, strict=True):
        assert v1 == pytest.approx(v2, rel=1e-12, abs=1e-15)
        torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-14)
        torch.testing.assert_close(s1, s2, rtol=1e-6, atol=1e-7)  # the float32 buffer


@pytest.mark.parametrize("weighted", [False, True])
def test_the_one_node_path_reads_an_accelerator_once_and_gives_the_same_gradient(monkeypatch, weighted):
    # On a GPU the one-node path reads the counts' sums in one copy (TorchFastPaths.floats) and scales the
    # backward by the upstream gradient on the device instead of reading it.  Run here with reads declared
    # costly: no float() of a tensor (aten::item) anywhere in the step, and the value and the gradient, rescue
    # included, under an upstream factor of 2.5, equal those of free reads.
    from torch.profiler import ProfilerActivity, profile

    from anyloss_torch import _fast_paths

    rng = np.random.default_rng(8)
    raw, y = rng.normal(0, 3, 40), torch.tensor(rng.integers(0, 2, 40))
    w = torch.tensor(rng.uniform(0.5, 2.0, 40)) if weighted else None
    results = []
    for costly in (False, True):
        with monkeypatch.context() as patch:
            if costly:
                patch.setattr(_fast_paths, "reads_are_free", lambda x: False)
            x = torch.tensor(raw, requires_grad=True)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                # validate=False: the value checks' reads are their own (skipped on accelerators, tested apart)
                loss = anyloss_torch.anyloss(x, y, "f1", weight=w, validate=False)
                assert _grad_parents_of(x, loss) == {"_LossFromCountsBackward"}
                (2.5 * loss).backward()
            reads = sum(event.name == "aten::item" for event in prof.events())
            stacks = sum(event.name == "aten::stack" for event in prof.events())
            assert (reads, stacks) == (0, 1) if costly else (reads >= 3 and stacks == 0)  # one stacked copy
            results.append((loss.detach(), x.grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-12, atol=1e-15)


def test_the_amplifier_offset_made_once_per_scale_and_dtype_gives_each_call_its_own(monkeypatch):
    # The eager one-node path keeps the offset -L/2 of A(p) = sigmoid(L p - L/2) as a 0-d tensor per (L, dtype)
    # (TorchFastPaths.scaled_difference).  Scales and dtypes alternated, and a full table emptied, each call's F1
    # and gradient equal a float64 NumPy reference of its own scale.
    from anyloss_torch import _fast_paths

    monkeypatch.setattr(_fast_paths, "_CONSTANTS", {})
    rng = np.random.default_rng(3)
    z, y = rng.normal(0, 1.5, 24), rng.integers(0, 2, 24).astype(np.float64)
    pos = y == 1

    def reference(scale):  # F1 of A(sigmoid(z)), and its gradient through A and the sigmoid (rescue off)
        p = 1.0 / (1.0 + np.exp(-z))
        a = 1.0 / (1.0 + np.exp(-scale * (p - 0.5)))
        tp, fp, fn = np.sum(a[pos]), np.sum(a[~pos]), np.sum(1.0 - a[pos])
        den = 2 * tp + fp + fn
        d_tp, d_fp_fn = 2 * (fp + fn) / den**2, -2 * tp / den**2  # dF1/dTP; dF1/dFP = dF1/dFN
        d_a = np.where(pos, d_tp - d_fp_fn, d_fp_fn)  # TP and FN move oppositely with a positive's A
        return 1.0 - 2 * tp / den, -d_a * scale * a * (1 - a) * p * (1 - p)

    # Scales whose L/2 float32 does not hold exactly: an offset of the other dtype would show in float64.
    for scale, dtype in [(73.3, torch.float32), (10.1, torch.float32), (73.3, torch.float64), (10.1, torch.float64),
                         (73.3, torch.float32)] + [(s + 0.1, torch.float64) for s in range(20, 40)]:
        x = torch.tensor(z, dtype=dtype, requires_grad=True)
        loss = anyloss_torch.F1Loss(scale=scale, rescue=0.0)(x, torch.tensor(y, dtype=dtype))
        loss.backward()
        value, grad = reference(scale)
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(loss.item(), value, **tol)
        np.testing.assert_allclose(x.grad.numpy(), grad, **tol)
    assert 0 < len(_fast_paths._CONSTANTS) <= 16  # bounded: twenty scales passed through


def test_the_offset_made_under_another_default_device_still_serves_a_cpu_step(monkeypatch):
    # A dry run on the meta device (or any default device) makes the amplifier's offset first: it is made on the
    # CPU all the same (a CPU scalar combines with any device), so the next real step works and is right.
    from anyloss_torch import _fast_paths

    monkeypatch.setattr(_fast_paths, "_CONSTANTS", {})
    loss_fn = anyloss_torch.F1Loss(rescue=0.0)
    with torch.device("meta"):  # the same dtype as the step after it: the same entry of the table
        fake = torch.empty(40, dtype=torch.float64, requires_grad=True)
        loss_fn(fake, torch.empty(40, dtype=torch.float64)).backward()
    rng = np.random.default_rng(4)
    z, y = rng.normal(0, 1, 40), rng.integers(0, 2, 40).astype(np.float64)
    x = torch.tensor(z, requires_grad=True)
    loss = loss_fn(x, torch.tensor(y))
    loss.backward()
    a = 1.0 / (1.0 + np.exp(-73.0 * (1.0 / (1.0 + np.exp(-z)) - 0.5)))
    tp, fp, fn = np.sum(a * y), np.sum(a * (1 - y)), np.sum((1 - a) * y)
    np.testing.assert_allclose(loss.item(), 1.0 - 2 * tp / (2 * tp + fp + fn), rtol=1e-12)
    assert torch.isfinite(x.grad).all()


def test_an_offset_first_made_under_inference_mode_serves_the_training_steps_after(monkeypatch):
    # An evaluation under inference_mode may make the offset first: it is a normal tensor all the same, so a
    # training step after it records and differentiates (an inference tensor has no version counter to check).
    from anyloss_torch import _fast_paths

    monkeypatch.setattr(_fast_paths, "_CONSTANTS", {})
    z, y = torch.linspace(-2.0, 2.0, 16, dtype=torch.float64), (torch.arange(16) % 3 == 0).double()
    loss_fn = anyloss_torch.F1Loss(rescue=0.0)
    with torch.inference_mode():
        expected = loss_fn(z, y).item()
    assert not any(t.is_inference() for t in _fast_paths._CONSTANTS.values())
    x = z.clone().requires_grad_(True)
    loss = loss_fn(x, y)
    loss.backward()
    assert loss.item() == expected and torch.isfinite(x.grad).all()


def test_the_one_node_pullback_folds_the_amplifier_factor_into_its_coefficients(monkeypatch):
    # On the one-node path the coefficients are floats: L is folded into them and scale_gradient leaves it out
    # (one pass over the gradient fewer); the analytic path's 0-d coefficients keep the multiplication.
    from anyloss_torch import _autograd

    factors = []
    scale_gradient = al.AnyLossApproximation.scale_gradient

    def spy(self, grad, yh, yh_c, *, scale, xp, factor=True):
        factors.append(factor)
        return scale_gradient(self, grad, yh, yh_c, scale=scale, xp=xp, factor=factor)

    monkeypatch.setattr(al.AnyLossApproximation, "scale_gradient", spy)
    x = torch.linspace(-2.0, 2.0, 16, requires_grad=True)
    anyloss_torch.F1Loss()(x, (torch.arange(16) % 3 == 0).float()).backward()
    monkeypatch.setattr(_autograd, "choose_path", lambda *args, **kwargs: _autograd.Path.ANALYTIC)  # 0-d coefficients
    anyloss_torch.F1Loss()(x, (torch.arange(16) % 3 == 0).float()).backward()
    assert factors == [False, True]


def test_a_trace_keeps_no_cached_offset(monkeypatch):
    # torch.jit.trace and make_fx record a fresh offset: a graph constant its user edits (through .data too, which
    # no version counter sees) cannot reach the table the eager calls read.
    from torch.fx.experimental.proxy_tensor import make_fx

    from anyloss_torch import _fast_paths

    monkeypatch.setattr(_fast_paths, "_CONSTANTS", {})
    x, y = torch.linspace(-2.0, 2.0, 16, requires_grad=True), (torch.arange(16) % 3 == 0).float()
    loss_fn = anyloss_torch.F1Loss(validate=False)
    loss_fn(x, y).backward()  # an eager call fills the table
    (cached,) = _fast_paths._CONSTANTS.values()
    graph = make_fx(functools.partial(_loss_and_grad, loss_fn))(x, y)
    kept = [getattr(graph, node.target) for node in graph.graph.nodes if node.op == "get_attr"]
    assert not any(t is cached for t in kept)
    assert any(node.target is torch.ops.aten.scalar_tensor.default for node in graph.graph.nodes)  # made afresh
    traced = torch.jit.trace(loss_fn, (x, y), check_trace=False)
    assert not any(t is cached for t in traced.code_with_constants[1].const_mapping.values())
    assert "torch.scalar_tensor(-36.5" in traced.code


def test_an_offset_edited_in_place_is_made_again(monkeypatch):
    # A trace (torch.jit.trace, make_fx) keeps the cached offset as a constant of its graph, which its user may edit
    # in place; the next eager call makes it again rather than use the edited value.
    from anyloss_torch import _fast_paths

    monkeypatch.setattr(_fast_paths, "_CONSTANTS", {})
    z, y = torch.linspace(-2.0, 2.0, 16, dtype=torch.float64), (torch.arange(16) % 3 == 0).double()
    loss_fn = anyloss_torch.F1Loss(rescue=0.0)
    expected = loss_fn(z.clone().requires_grad_(True), y).item()
    (offset,) = _fast_paths._CONSTANTS.values()
    offset.add_(1.0)  # as gm._tensor_constant0.add_(1.0) would
    assert loss_fn(z.clone().requires_grad_(True), y).item() == expected


def test_an_approximation_overriding_scale_gradient_alone_keeps_its_signature():
    # AnyLossApproximation.scale_gradient takes factor= for its gradient_factor; a user's subclass that overrides
    # scale_gradient alone, with the signature before factor=, is called as before and gives the same gradient.
    calls = []

    @dataclasses.dataclass(frozen=True)
    class Logged(al.AnyLossApproximation):
        def scale_gradient(self, grad, yh, yh_c, *, scale, xp):
            calls.append(scale)
            return grad * (scale * yh * (1.0 - yh))

    rng = np.random.default_rng(5)
    z, y = torch.tensor(rng.normal(0, 1, 30)), torch.tensor(rng.integers(0, 2, 30))
    grads = []
    for approximation in ("anyloss", Logged()):
        x = z.clone().requires_grad_(True)
        anyloss_torch.anyloss(x, y, "f1", approximation=approximation).backward()
        grads.append(x.grad)
    assert calls == [73.0]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-15)


def test_floats_read_together_keep_the_order_and_the_python_numbers(monkeypatch):
    # The counts' sums of the one-node path on a GPU: tensors read in one copy, Python numbers (the sample count
    # of an unweighted batch) passed through, every value in its place.
    from anyloss_torch import _fast_paths

    hooks = _fast_paths.TorchFastPaths()
    values = (torch.tensor(1.25, dtype=torch.float64), 7, torch.tensor(-3.5, dtype=torch.float64), 2.0)
    assert hooks.floats(values, None) == [1.25, 7.0, -3.5, 2.0]
    monkeypatch.setattr(_fast_paths, "reads_are_free", lambda x: False)
    together = hooks.floats(values, None)
    assert together == [1.25, 7.0, -3.5, 2.0] and all(type(v) is float for v in together)
    assert hooks.floats((3, 4.5), None) == [3.0, 4.5]  # no tensor: nothing to copy


@pytest.mark.parametrize(("device", "capturing", "sync_debug", "reads"), [
    ("cpu", False, 0, True),
    ("cuda", False, 0, True),    # one wait per step beats the analytic path's kernels (the H200 run)
    ("cuda", True, 0, False),    # a CUDA graph being captured: a read is an error there
    ("cuda", False, 1, False),   # torch.cuda.set_sync_debug_mode("warn"): the user asked for no waits
    ("cuda", False, 2, False),
    ("meta", False, 0, False),   # no values to read
    ("mps", False, 0, False),    # unmeasured: the analytic path, as before
])
def test_which_devices_read_the_counts(monkeypatch, device, capturing, sync_debug, reads):
    from anyloss_torch import _autograd

    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: capturing)
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: sync_debug)
    assert _autograd._reads_counts(torch.device(device)) is reads
    if device == "cuda":  # a tensor on another GPU than the current one: the capture asked of its device
        entered = []
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "device", lambda d: entered.append(d) or contextlib.nullcontext())
        assert _autograd._reads_counts(torch.device("cuda:1")) is reads
        assert entered == ([torch.device("cuda:1")] if not sync_debug else [])
        assert _autograd._reads_counts(torch.device("cuda:0")) is reads and len(entered) <= 1
    # choose_path follows it for an eager call that needs a gradient, and never reads when distributed
    x = torch.zeros(4, device="meta", requires_grad=True)
    monkeypatch.setattr(_autograd, "_reads_counts", lambda d: reads)
    expected = _autograd.Path.ONE_NODE if reads else _autograd.Path.ANALYTIC
    assert _autograd.choose_path(x, None, "anyloss") is expected
    assert _autograd.choose_path(x, None, "anyloss", distributed=True) is _autograd.Path.ANALYTIC


@pytest.mark.parametrize("with_params", [False, True], ids=["plain", "with parameters"])
@pytest.mark.parametrize("momentum", [None, 0.3])
def test_a_metric_the_float_evaluator_declines_takes_the_analytic_path_after_its_first_call(monkeypatch, momentum,
                                                                                            with_params):
    # The one-node path computes (and on a GPU reads) the counts before the float evaluator declines the metric;
    # once declined for an operation it does not know, a metric goes to the analytic path at once: one one-node
    # attempt in three calls (a metric with parameters is bound anew at each call), and the values of each call
    # are the plain composition's.
    from anyloss_torch import _autograd

    def cosh_f1(c, xp, k=0.0):  # a function of this test's own: the memory of declined metrics is per function
        return al.get_metric("f1")(c, xp) * xp.cosh(c.tp * k)

    attempts = []
    for name in ("_one_node_loss", "_one_node_running_loss"):
        original = getattr(_autograd, name)
        monkeypatch.setattr(_autograd, name, lambda *a, _f=original, **k: attempts.append(1) or _f(*a, **k))
    rng = np.random.default_rng(12)
    params = {"k": 0.0} if with_params else {}
    loss_fn = anyloss_torch.AnyLoss(cosh_f1, momentum=momentum, **params)
    reference = anyloss_torch.AnyLoss("f1", momentum=momentum)
    for _ in range(3):
        raw, y = rng.normal(0, 2, 50), torch.tensor(rng.integers(0, 2, 50))
        x1, x2 = torch.tensor(raw, requires_grad=True), torch.tensor(raw, requires_grad=True)
        loss, expected = loss_fn(x1, y), reference(x2, y)
        (loss + expected).backward()
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-14)
    assert len(attempts) == 3 + 1  # the reference's three, and the declined metric's first


def test_a_metric_declined_at_one_batchs_values_stays_on_the_one_node_path(monkeypatch):
    # A division by zero or an infinite gradient at one batch's counts (no positives here) is about those counts:
    # the next batch's are evaluated on floats again (an unknown operation is about the metric, remembered).
    from anyloss_torch import _autograd

    def sqrt_jaccard(c, xp):
        return xp.sqrt(c.tp / (c.tp + c.fp + c.fn))

    rng = np.random.default_rng(14)
    loss_fn = anyloss_torch.AnyLoss(sqrt_jaccard)
    no_positives = torch.tensor(rng.normal(0, 2, 30), requires_grad=True)
    loss_fn(no_positives, torch.zeros(30)).backward()
    x = torch.tensor(rng.normal(0, 2, 30), requires_grad=True)
    loss = loss_fn(x, torch.tensor(rng.integers(0, 2, 30)))
    assert _grad_parents_of(x, loss) == {"_LossFromCountsBackward"}
    assert not _autograd._is_declined(sqrt_jaccard)


def test_an_unhashable_metric_object_is_evaluated_on_floats():
    # A callable object without a hash (a dataclass with __call__) is a metric like any other: the memory of
    # declined metrics must not ask for its hash.

    @dataclasses.dataclass
    class WeightedF1:
        weight: float = 1.0

        def __call__(self, c, xp):
            return self.weight * al.get_metric("f1")(c, xp)

    rng = np.random.default_rng(15)
    raw, y = rng.normal(0, 2, 40), torch.tensor(rng.integers(0, 2, 40))
    x1, x2 = torch.tensor(raw, requires_grad=True), torch.tensor(raw, requires_grad=True)
    loss = anyloss_torch.AnyLoss(WeightedF1())(x1, y)
    expected = anyloss_torch.F1Loss()(x2, y)
    assert _grad_parents_of(x1, loss) == {"_LossFromCountsBackward"}
    (loss + expected).backward()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-14)


def _loss_and_grad(loss_fn, x, y):
    loss = loss_fn(x, y)
    return loss, torch.autograd.grad(loss, x)[0]


def _recorded_loss_and_grad(recorder, loss_fn, batch):
    """``(x, y) -> (loss, d loss / d x)`` as ``recorder`` records it from ``batch``."""
    if recorder == "make_fx":
        from torch.fx.experimental.proxy_tensor import make_fx

        return make_fx(functools.partial(_loss_and_grad, loss_fn))(*batch)
    return functools.partial(_loss_and_grad, torch.jit.trace(loss_fn, batch, check_trace=False))


@pytest.mark.parametrize("recorder", ["jit.trace", "make_fx"])
def test_a_recorded_loss_follows_its_inputs(recorder):
    # torch.jit.trace and make_fx (so aot_function) record tensor operations: counts read to the host would be
    # constants of the recorded batch (make_fx fails on the read), so a recording takes the plain composition
    # and gives each batch its own loss and gradient.
    rng = np.random.default_rng(13)
    batches = [(torch.tensor(rng.normal(0, 2, 40), requires_grad=True), torch.tensor(rng.integers(0, 2, 40)))
               for _ in range(2)]
    loss_fn = anyloss_torch.F1Loss(validate=False)
    recorded = _recorded_loss_and_grad(recorder, loss_fn, batches[0])
    for x, y in batches:
        loss, grad = recorded(x, y)
        x_eager = x.detach().clone().requires_grad_(True)
        expected = loss_fn(x_eager, y)
        expected.backward()
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad, x_eager.grad, rtol=1e-10, atol=1e-14)


def test_fake_tensors_take_the_path_that_reads_nothing():
    # Under FakeTensorMode (memory and flop estimates) tensors have no values: the step neither reads nor fails.
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.randn(64, requires_grad=True)
        y = (torch.rand(64) < 0.3).float()
        loss = anyloss_torch.F1Loss(validate=False)(x, y)
        loss.backward()
        assert loss.shape == () and x.grad.shape == (64,)


_NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU: run on a lent GPU machine (benchmarks/gpu_session.sh)")


@_NEEDS_CUDA
def test_a_cuda_graph_captures_the_loss_step():
    # Inside a capture a host read is an error: the step there takes the analytic path (no read), outside it the
    # one-node path; the replayed graph gives the eager loss and gradient.
    from anyloss_torch import _autograd

    torch.manual_seed(0)
    x = torch.randn(256, device="cuda", requires_grad=True)
    y = (torch.rand(256, device="cuda") < 0.3).float()
    loss_fn = anyloss_torch.F1Loss()
    eager_x = x.detach().clone().requires_grad_(True)
    eager = loss_fn(eager_x, y)
    assert _grad_parents_of(eager_x, eager) == {"_LossFromCountsBackward"}
    eager.backward()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graph asks
        for _ in range(3):
            x.grad = None
            loss_fn(x, y).backward()
    torch.cuda.current_stream().wait_stream(side)
    graph, x.grad = torch.cuda.CUDAGraph(), None
    with torch.cuda.graph(graph):
        assert _autograd.choose_path(x, None, "anyloss") is _autograd.Path.ANALYTIC
        captured = loss_fn(x, y)
        captured.backward()
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured.detach(), eager.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(x.grad, eager_x.grad, rtol=1e-5, atol=1e-7)


@_NEEDS_CUDA
def test_a_sync_debug_mode_of_error_sees_no_wait_in_the_step():
    # torch.cuda.set_sync_debug_mode("error") raises at any host synchronisation: the step then takes the path
    # that reads nothing, and the value checks (skipped on accelerators) read nothing either.
    torch.manual_seed(0)
    x = torch.randn(64, device="cuda", requires_grad=True)
    y = (torch.rand(64, device="cuda") < 0.3).float()
    reference = x.detach().clone().requires_grad_(True)
    expected = anyloss_torch.F1Loss()(reference, y)
    expected.backward()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = anyloss_torch.F1Loss()(x, y)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(x.grad, reference.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_the_one_node_running_loss_in_low_precision(monkeypatch, dtype):
    # Half-precision logits: the counts and the state are computed in float32 (as the plain loss's counts), so
    # the one-node running loss equals autograd of the core's running loss (the analytic path, forced) to
    # float32 rounding, its gradient comes back in the input's dtype, and everything stays finite.
    from anyloss_torch import _autograd

    rng = np.random.default_rng(4)
    batches = [(rng.normal(0, 3, 64), rng.integers(0, 2, 64)) for _ in range(3)]
    results = []
    for forced in (False, True):
        with monkeypatch.context() as patch:
            if forced:
                patch.setattr(_autograd, "choose_path", lambda *args, **kwargs: _autograd.Path.ANALYTIC)
            loss_fn = anyloss_torch.AnyLoss("f1", momentum=0.3)
            steps = []
            for raw, labels in batches:
                x = torch.tensor(raw, dtype=dtype, requires_grad=True)
                loss = loss_fn(x, torch.tensor(labels))
                loss.backward()
                assert loss.dtype == torch.float32 and x.grad.dtype == dtype
                assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
                steps.append((loss.detach(), x.grad.float(), loss_fn.running_counts.clone()))
            results.append(steps)
    for (v1, g1, s1), (v2, g2, s2) in zip(*results, strict=True):
        torch.testing.assert_close(v1, v2, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(g1, g2, rtol=1e-2, atol=1e-3)  # the gradient rounded to the input's dtype
        torch.testing.assert_close(s1, s2, rtol=1e-6, atol=1e-7)


def _cosh_f1(c, xp):  # xp.cosh is not among the float evaluator's functions: autograd of the metric
    return al.get_metric("f1")(c, xp) * xp.cosh(c.tp * 0.0)


@pytest.mark.parametrize("momentum", [None, 0.3])
@pytest.mark.parametrize("metric", ["f1", _cosh_f1], ids=["f1", "declined by the float evaluator"])
@pytest.mark.parametrize("rescue", [0.0, 0.1])
def test_the_stuck_batch_watch_runs_once_per_call_on_every_path(monkeypatch, momentum, metric, rescue):
    # The watch's schedule (every call up to 16, then 32, 64, ...) counts calls: a path that ran it twice (a
    # fallback after the one-node path declined the metric) would halve it.
    from anyloss_core import _rescue

    monkeypatch.setitem(_rescue._stuck, "calls", 0)
    monkeypatch.setitem(_rescue._stuck, "warned", False)
    loss_fn = anyloss_torch.AnyLoss(metric, momentum=momentum, rescue=rescue, from_logits=False)
    rng = np.random.default_rng(2)
    for call in range(1, 4):
        x = torch.tensor(rng.uniform(0.05, 0.95, 20), requires_grad=True)  # probabilities: the watch runs
        loss_fn(x, torch.tensor(rng.integers(0, 2, 20))).backward()
        assert _rescue._stuck["calls"] == call


def test_a_metric_outside_the_float_evaluator_falls_back_to_autograd():
    rng = np.random.default_rng(3)
    y, raw = torch.tensor(rng.integers(0, 2, 40)), rng.normal(size=40)
    x1 = torch.tensor(raw, requires_grad=True)
    loss = anyloss_torch.anyloss(x1, y, _cosh_f1)
    assert "_SoftCountsBackward" in _graph_nodes(loss.grad_fn)
    loss.backward()
    x2 = torch.tensor(raw, requires_grad=True)
    anyloss_torch.anyloss(x2, y, "f1").backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("task,classes", [("binary", None), ("multiclass", 5), ("multilabel", 5)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("momentum", [None, 0.1])
def test_every_array_the_loss_makes_is_on_the_inputs_device(task, classes, weighted, momentum):
    # The "meta" device stands in for a GPU in CI: an array created on the CPU beside it fails the step, as the
    # multi-class one-hot's class range did on CUDA.  Values cannot be read there, so no value checks run.
    shape = (64,) if task == "binary" else (64, classes)
    rng = np.random.default_rng(7)
    labels = rng.integers(0, classes or 2, shape if task == "multilabel" else 64)
    loss_fn = anyloss_torch.AnyLoss("f1", task=task, num_classes=classes, momentum=momentum).to("meta")
    z = torch.zeros(shape, device="meta", requires_grad=True)
    weight = torch.ones(64, device="meta") if weighted else None  # per example: spread over a row's labels
    for _ in range(2):  # the second running step reads the counts the first one stored
        loss = loss_fn(z, torch.as_tensor(labels, device="meta"), weight=weight)
        loss.backward()
    assert loss.device.type == "meta" and loss.shape == ()
    assert z.grad.device.type == "meta" and z.grad.shape == z.shape


def test_the_functional_passes_every_configuration_argument_on(monkeypatch):
    # anyloss() names its configuration arguments (dynamo before torch 2.12 cannot trace locals()): a field
    # added to the signature but not to that mapping would be silently dropped.
    import inspect

    from anyloss_core.adapters import LossConfig

    passed: dict = {}
    from_arguments = LossConfig.from_arguments.__func__

    def spy(cls, arguments, **kwargs):
        passed.update(arguments)
        return from_arguments(cls, arguments, **kwargs)

    monkeypatch.setattr(LossConfig, "from_arguments", classmethod(spy))
    anyloss_torch.anyloss(torch.zeros(4), torch.tensor([0, 1, 0, 1]), "fbeta", beta=2.0, scale=30.0)
    fields = {f.name for f in dataclasses.fields(LossConfig)}
    assert set(passed) == fields & set(inspect.signature(anyloss_torch.anyloss).parameters)
    assert passed["metric"] == "fbeta" and passed["metric_params"] == {"beta": 2.0} and passed["scale"] == 30.0
