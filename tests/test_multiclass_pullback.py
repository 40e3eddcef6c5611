"""The multi-class counts' closed-form pullback (``soft_class_confusion_with_pullback``): its gradient against
central finite differences in float64 NumPy, and the torch ``autograd.Function`` / JAX ``custom_vjp`` built on
it against autodiff of the plain composition, eager and compiled."""

from __future__ import annotations

import numpy as np
import pytest

import anyloss_core as al
from anyloss_core.adapters import soft_class_confusion_with_pullback

N, C = 14, 3
AVERAGES = ("macro", "micro", "weighted", "none")


def _case(seed: int = 0, ignore: int | None = None, one_hot: bool = False, weighted: bool = False):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, C)) * 2.0
    y = rng.integers(0, C, N)
    y[:C] = np.arange(C)  # every class present
    if ignore is not None:
        y[C::4] = ignore
    labels = np.eye(C)[y] if one_hot else y
    w = rng.uniform(0.2, 2.0, N) if weighted else None
    return z, labels, w


def _loss(z, labels, w, metric, average, ignore, project):
    """The loss through the plain NumPy composition, projected to a scalar (``average="none"``: per class)."""
    counts = al.soft_class_confusion(labels, z, from_logits=True, sample_weight=w, ignore_index=ignore)
    return float(np.sum(project * np.atleast_1d(al.confusion_loss(counts, metric, task="multiclass",
                                                                  average=average))))


def _finite_difference(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        grad[index] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize("metric", ["f1", "gmean"])  # gmean: TN enters too
@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("labels_as,ignore,weighted", [
    ("ids", None, False), ("ids", None, True), ("ids", 1, True), ("ids", -100, False), ("one_hot", None, True),
])
def test_pullback_matches_finite_differences(metric, average, labels_as, ignore, weighted):
    """Cotangents of the counts by finite differences of the metric, then the pullback against finite
    differences of the whole loss in the logits (and in the weights): no autodiff anywhere."""
    z, labels, w = _case(ignore=ignore, one_hot=labels_as == "one_hot", weighted=weighted)
    project = np.linspace(0.5, 1.5, C) if average == "none" else np.ones(1)
    counts, pullback = soft_class_confusion_with_pullback(labels, z, from_logits=True, sample_weight=w,
                                                          ignore_index=ignore)
    plain = al.soft_class_confusion(labels, z, from_logits=True, sample_weight=w, ignore_index=ignore)
    np.testing.assert_allclose(np.stack(counts), np.stack(plain), rtol=1e-12, atol=1e-12)

    def metric_of(flat):
        c = al.Confusion(*flat.reshape(4, C))
        return float(np.sum(project * np.atleast_1d(al.confusion_loss(c, metric, task="multiclass",
                                                                      average=average))))

    g = al.Confusion(*_finite_difference(metric_of, np.stack(counts).reshape(-1)).reshape(4, C))
    expected = _finite_difference(lambda x: _loss(x, labels, w, metric, average, ignore, project), z)
    np.testing.assert_allclose(pullback(g), expected, rtol=1e-5, atol=1e-7)
    if weighted:
        expected_w = _finite_difference(lambda v: _loss(z, labels, v, metric, average, ignore, project), w)
        mask = 1.0 if ignore is None else (labels != ignore)
        np.testing.assert_allclose(pullback.weight_grad(g) * mask, expected_w, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("ignore,weighted", [(None, False), (-100, True), (0, False)])
def test_class_sums_hook_gives_the_same_counts(ignore, weighted):
    """An adapter's scatter-add (here NumPy's bincount) sums TP and the support by class id: the same counts
    as the column sums, also for ignored ids and, unchecked, ids out of range (they count in neither)."""
    z, y, w = _case(seed=5, ignore=ignore, weighted=weighted)
    y[-1] = C + 2  # out of range: a row of zeros in the one-hot
    calls = []

    def bincount(ids, values, classes):
        calls.append(classes)
        return np.bincount(ids, values, minlength=classes)

    options = {"from_logits": True, "sample_weight": w, "ignore_index": ignore, "validate": False}
    hooked, pullback = soft_class_confusion_with_pullback(y, z, class_sums=bincount, **options)
    plain = al.soft_class_confusion(y, z, **options)
    assert calls == [C, C]
    np.testing.assert_allclose(np.stack(hooked), np.stack(plain), rtol=1e-12, atol=1e-12)
    g = al.Confusion(*np.random.default_rng(0).normal(size=(4, C)))
    np.testing.assert_allclose(pullback(g), soft_class_confusion_with_pullback(y, z, **options)[1](g), rtol=1e-12)

    def projected(x):  # sum of g * counts through the plain composition
        return float(sum(np.sum(a * b) for a, b in zip(g, al.soft_class_confusion(y, x, **options), strict=True)))

    np.testing.assert_allclose(pullback(g), _finite_difference(projected, z), rtol=1e-6, atol=1e-8)


def test_pullback_of_tp_is_the_softmax_jacobian_column():
    """d TP_c / d z_i = w_i [y_i = c] P_ic ([k = c] - P_ik): the softmax Jacobian written out."""
    z, y, w = _case(weighted=True)
    _, pullback = soft_class_confusion_with_pullback(y, z, from_logits=True, sample_weight=w)
    e = np.exp(z - z.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    for c in range(C):
        g = al.Confusion(np.zeros(C), np.zeros(C), np.zeros(C), np.eye(C)[c])
        expected = (w * (y == c) * p[:, c])[:, None] * (np.eye(C)[c][None, :] - p)
        np.testing.assert_allclose(pullback(g), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("options", [
    {"task": "multilabel"}, {"from_logits": False}, {"approximation": "ovr"},
    {"approximation": al.SharpenedSoftmax(2.0)},
])
def test_no_closed_form_where_it_does_not_apply(options):
    y = np.eye(C)[[0, 1, 2, 0]] if options.get("task") == "multilabel" else np.array([0, 1, 2, 0])
    p = np.full((4, C), 1.0 / C)
    kwargs = {"from_logits": True, **options}
    assert soft_class_confusion_with_pullback(y, p, **kwargs) is None


def test_same_checks_as_the_plain_counts():
    z = np.zeros((3, C))
    with pytest.raises(ValueError, match="class id 3 is out of range"):
        soft_class_confusion_with_pullback(np.array([0, 3, 1]), z, from_logits=True)
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        soft_class_confusion_with_pullback(np.array([0, 2, 1]), z, from_logits=True, sample_weight=-np.ones(3))
    with pytest.raises(ValueError, match="unknown approximation"):
        soft_class_confusion_with_pullback(np.array([0, 2, 1]), z, from_logits=True, approximation="sofmax")


# The adapters: the closed-form backward against autodiff of the plain composition.

@pytest.fixture
def closed_form_at_any_size(monkeypatch):
    """The torch Function from the first logit (eager batches below ``EAGER_MIN_ELEMENTS`` take autograd)."""
    import anyloss_torch._multiclass as multiclass

    monkeypatch.setattr(multiclass, "EAGER_MIN_ELEMENTS", 0)


def _has_class_counts_node(loss):
    seen, todo = set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "ClassCounts" in type(node).__name__:
            return True
        todo += [n for n, _ in node.next_functions]
    return False


TORCH_CASES = [("macro", None, False, False), ("micro", -1, True, False), ("weighted", 2, True, False),
               ("none", None, False, True), ("macro", None, True, True)]


def _torch_loss(torch, fast, z, labels, w, average, ignore):
    from anyloss_torch._multiclass import class_counts

    options = {"task": "multiclass", "num_classes": C, "ignore_index": ignore, "from_logits": True,
               "scale": 73.0, "approximation": "anyloss", "validate": True}
    if fast:
        counts = class_counts(z, labels, w, **options)
    else:
        counts = al.soft_class_confusion(labels, z, sample_weight=w, **options)
    metric = "gmean" if w is not None else "f1"  # gmean: TN enters too
    loss = al.confusion_loss(counts, metric, task="multiclass", average=average)
    return (loss * torch.linspace(0.5, 1.5, C, dtype=z.dtype)).sum() if average == "none" else loss


@pytest.mark.backend("torch")
@pytest.mark.parametrize("average,ignore,weighted,one_hot", TORCH_CASES)
def test_torch_function_equals_autograd(average, ignore, weighted, one_hot, closed_form_at_any_size):
    import torch

    z_np, y_np, w_np = _case(seed=1, ignore=ignore, one_hot=one_hot, weighted=weighted)
    labels = torch.tensor(y_np)
    w = None if w_np is None else torch.tensor(w_np)
    grads = []
    for fast in (True, False):
        z = torch.tensor(z_np, requires_grad=True)
        loss = _torch_loss(torch, fast, z, labels, w, average, ignore)
        assert _has_class_counts_node(loss) == fast
        loss.backward()
        grads.append((float(loss.detach()), z.grad))
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-10, atol=1e-12)


@pytest.mark.backend("torch")
@pytest.mark.parametrize("id_dtype", ["uint8", "int8", "int16", "int32", "int64"])
@pytest.mark.parametrize("ignore", [None, 2])
def test_torch_class_ids_of_any_integer_dtype_take_the_function(id_dtype, ignore, closed_form_at_any_size):
    # torch's gather and index_add_ take int32 / int64 indices only: uint8 / int8 / int16 ids once failed there
    import torch

    z_np, y_np, _ = _case(seed=5, ignore=ignore)
    expected_z = torch.tensor(z_np, requires_grad=True)
    expected = _torch_loss(torch, False, expected_z, torch.tensor(y_np), None, "macro", ignore)
    expected.backward()
    z = torch.tensor(z_np, requires_grad=True)
    loss = _torch_loss(torch, True, z, torch.tensor(y_np).to(getattr(torch, id_dtype)), None, "macro", ignore)
    assert _has_class_counts_node(loss)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), abs=1e-12)
    torch.testing.assert_close(z.grad, expected_z.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.backend("torch")
def test_torch_indexing_hooks_equal_the_array_api_ones():
    # TorchFastPaths' gather / index_select / in-place scatter-add, and the where form under autograd
    import array_api_compat.torch as xp
    import torch

    from anyloss_torch._fast_paths import TorchFastPaths

    fast = TorchFastPaths()
    table, ids = torch.arange(12.0, dtype=torch.float64).reshape(4, 3), torch.tensor([2, 0, 1, 2], dtype=torch.int32)
    values = torch.tensor([10.0, 20.0, 30.0, 40.0], dtype=torch.float64)
    expected = table.numpy().copy()
    expected[np.arange(4), ids.numpy()] += values.numpy()
    np.testing.assert_array_equal(fast.take_by_row(table, ids, xp).numpy(), [2.0, 3.0, 7.0, 11.0])
    np.testing.assert_array_equal(fast.take(values, ids, xp).numpy(), [30.0, 10.0, 20.0, 30.0])
    temporary = table.clone()
    assert fast.scatters_in_place(temporary, xp)
    added = fast.add_by_row_temporary(temporary, ids, values, xp)
    assert added is temporary  # in place
    np.testing.assert_array_equal(added.numpy(), expected)
    # under autograd: out of place (an in-place write to a tensor autograd records), and the gradient flows
    leaf, on = table.clone().requires_grad_(True), values.clone().requires_grad_(True)
    recorded = leaf * 1.0
    assert not fast.scatters_in_place(recorded, xp)
    added = fast.add_by_row_temporary(recorded, ids, on, xp)
    np.testing.assert_array_equal(added.detach().numpy(), expected)
    grad_table, grad_values = torch.autograd.grad(added.sum(), (leaf, on))
    np.testing.assert_array_equal(grad_table.numpy(), np.ones((4, 3)))
    np.testing.assert_array_equal(grad_values.numpy(), np.ones(4))


@pytest.mark.backend("torch")
@pytest.mark.parametrize("id_dtype", ["int64", "int32"])
def test_torch_loss_takes_the_closed_form_and_compiles(id_dtype, closed_form_at_any_size):
    import torch

    from anyloss_torch._autograd import soft_loss

    def multiclass_loss(z, labels, weight, metric, **kwargs):  # the torch adapter's loss of a multi-class task
        return soft_loss(z, labels, weight, metric, task="multiclass", **kwargs)

    z_np, y_np, _ = _case(seed=2, ignore=-100)
    labels = torch.tensor(y_np).to(getattr(torch, id_dtype))
    options = {"num_classes": C, "ignore_index": -100, "from_logits": True, "scale": 73.0, "approximation": "anyloss",
               "validate": False}
    z = torch.tensor(z_np, dtype=torch.float32, requires_grad=True)
    counts = al.Confusion(*torch.stack(tuple(al.soft_class_confusion(labels, z, task="multiclass", **options))))
    expected = torch.autograd.grad(al.confusion_loss(counts, "f1", task="multiclass", average="macro"), z)[0]
    loss = multiclass_loss(z, labels, None, "f1", average="macro", **options)
    assert _has_class_counts_node(loss), "multiclass_loss did not take the closed-form backward"
    torch.testing.assert_close(torch.autograd.grad(loss, z)[0], expected, rtol=1e-5, atol=1e-7)
    compiled = torch.compile(lambda z: multiclass_loss(z, labels, None, "f1", average="macro", **options),
                             fullgraph=True, dynamic=False)
    torch.testing.assert_close(torch.autograd.grad(compiled(z), z)[0], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.backend("torch")
def test_torch_small_eager_batches_take_autograd_large_ones_the_function():
    import torch

    from anyloss_torch._multiclass import EAGER_MIN_ELEMENTS, class_counts

    options = {"task": "multiclass", "from_logits": True, "approximation": "anyloss", "validate": True}
    for rows, closed_form in ((EAGER_MIN_ELEMENTS // C - 1, False), (EAGER_MIN_ELEMENTS // C + 1, True)):
        z = torch.zeros(rows, C, requires_grad=True)
        counts = class_counts(z, torch.arange(rows) % C, None, **options)
        assert _has_class_counts_node(counts.tp.sum()) == closed_form


@pytest.mark.backend("torch")
def test_torch_weights_with_grad_fall_back_to_autograd(closed_form_at_any_size):
    import torch

    from anyloss_torch._multiclass import class_counts

    z_np, y_np, w_np = _case(seed=3, weighted=True)
    z, labels = torch.tensor(z_np, requires_grad=True), torch.tensor(y_np)
    w = torch.tensor(w_np, requires_grad=True)
    options = {"task": "multiclass", "from_logits": True, "approximation": "anyloss", "validate": True}
    counts = class_counts(z, labels, w, **options)
    gz, gw = torch.autograd.grad(counts.tp.sum() + 2 * counts.fp.sum(), (z, w))
    one_hot = np.eye(C)[y_np]
    e = np.exp(z_np - z_np.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    # d(TP + 2 FP)/dw_i = sum_c P_ic (Y_ic + 2 (1 - Y_ic))
    np.testing.assert_allclose(gw.numpy(), (p * (one_hot + 2 * (1 - one_hot))).sum(1), rtol=1e-12)
    assert gz.shape == z.shape


@pytest.mark.backend("jax")
@pytest.mark.parametrize("average,ignore,weighted,one_hot", TORCH_CASES)
def test_jax_custom_vjp_equals_autodiff(average, ignore, weighted, one_hot):
    import jax
    import jax.numpy as jnp

    from anyloss_jax._multiclass import class_counts

    z_np, y_np, w_np = _case(seed=4, ignore=ignore, one_hot=one_hot, weighted=weighted)
    z, labels = jnp.asarray(z_np, jnp.float32), jnp.asarray(y_np)
    w = None if w_np is None else jnp.asarray(w_np, jnp.float32)
    options = {"task": "multiclass", "num_classes": C, "ignore_index": ignore, "from_logits": True,
               "scale": 73.0, "approximation": "anyloss", "validate": True}
    project = jnp.linspace(0.5, 1.5, C)
    metric = "gmean" if weighted else "f1"  # gmean: TN enters too

    def loss(fast):
        def f(z, w):
            counts = (class_counts(z, labels, w, **options) if fast
                      else al.soft_class_confusion(labels, z, sample_weight=w, **options))
            return jnp.sum(project * jnp.atleast_1d(al.confusion_loss(counts, metric, task="multiclass",
                                                                      average=average)))
        return f

    argnums = (0, 1) if weighted else 0
    expected = jax.grad(loss(False), argnums=argnums)(z, w)
    for grad in (jax.grad(loss(True), argnums=argnums), jax.jit(jax.grad(loss(True), argnums=argnums))):
        got = grad(z, w)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6)
    assert float(loss(True)(z, w)) == pytest.approx(float(loss(False)(z, w)), abs=1e-6)


def test_speed_multiclass_row_in_process(monkeypatch):
    """``anyloss speed``'s multi-class row: one record per mode (and validate=False in eager modes), the ratio to
    the framework's cross-entropy, and its table; eager torch only (no compilation: fast)."""
    from anyloss_bench import speed

    available = [g for g in speed.MULTICLASS_GROUPS if speed._available(g)]
    if not available:
        pytest.skip("neither torch nor optax is installed")
    group = available[0]
    if group == "torch":
        monkeypatch.setitem(speed.GROUPS, "torch", ("torch eager",))
    result = speed.run_group(group, "f1", [300], 2, 0, multiclass_n=600, classes=4)
    expected = ({("torch eager", "default"), ("torch eager", "validate=False")} if group == "torch"
                else {("jax.jit", "default")})
    assert {(r["mode"], r["variant"]) for r in result["multiclass"]} == expected
    for rec in result["multiclass"]:
        assert rec["n"] == 600 and rec["classes"] == 4 and rec["target_ce"] == speed.MULTICLASS_TARGET
        assert rec["ratio_ce"] == pytest.approx(rec["anyloss_ms"] / rec["ce_ms"])
    report = {"metric": "f1", "sizes": [300], "repeats": 2, "groups": [result]}
    assert "multi-class step" in speed.format_report(report)
