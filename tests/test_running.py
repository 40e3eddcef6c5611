"""Running counts (``momentum``): the update and the loss against a float64 NumPy reference written here,
``momentum=1`` against the plain loss, the gradient against the linearised loss, and each adapter's state
handling (torch buffer, JAX pure state)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires

import anyloss_core as al
from anyloss_core._running import running_confusion_loss

L = 73.0


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def reference_counts(z, y, w=None):
    """tn, fn, fp, tp of A(sigmoid(z)), float64."""
    w = np.ones_like(z) if w is None else w
    a = _sigmoid(L * (_sigmoid(z) - 0.5))
    return np.array([np.sum(w * (1 - y) * (1 - a)), np.sum(w * y * (1 - a)), np.sum(w * (1 - y) * a),
                     np.sum(w * y * a)])


def reference_f1(c):
    tn, fn, fp, tp = c
    den = 2 * tp + fp + fn
    return 2 * tp / den if den > 0 else 0.0


def reference_gmean(c):
    tn, fn, fp, tp = c
    return np.sqrt(tp / (tp + fn) * tn / (tn + fp))


def reference_update(state, c, m):
    frac = c / c.sum()
    return frac if state.sum() <= 0 else (1 - m) * state + m * frac


def reference_gradient(z, y, state, m, metric):
    """d loss / d z of the linearised loss: -sum_k df/dc_k at n u' times dc_k/dz (finite differences of f)."""
    c = reference_counts(z, y)
    point = reference_update(state, c, m) * c.sum()
    eps = 1e-7
    df = np.array([(metric(point + eps * e) - metric(point - eps * e)) / (2 * eps) for e in np.eye(4)])
    p = _sigmoid(z)
    a = _sigmoid(L * (p - 0.5))
    da = L * a * (1 - a) * p * (1 - p)  # dA/dz
    dc = np.stack([-(1 - y) * da, -y * da, (1 - y) * da, y * da])  # d(tn, fn, fp, tp)/dz_i
    return -(df[:, None] * dc).sum(0)


def _batch(seed, n=12, rate=0.3):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.15, n), (rng.random(n) < rate).astype(np.float64)


# --- the core, on NumPy -------------------------------------------------------------------------------------


@pytest.mark.parametrize("momentum", [0.05, 0.3, 1.0])
def test_update_and_value_match_the_reference(momentum):
    state = np.zeros(4)
    for seed in range(4):
        z, y = _batch(seed, n=8 + 3 * seed)
        c = reference_counts(z, y)
        loss, new = running_confusion_loss(al.Confusion(*c), state, "f1", momentum=momentum)
        expected_state = reference_update(state, c, momentum)
        np.testing.assert_allclose(new, expected_state, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(float(loss), 1 - reference_f1(expected_state * c.sum()), rtol=1e-12)
        state = new


def test_empty_state_is_filled_by_the_first_batch_and_zero_weight_batches_change_nothing():
    c = np.array([6.0, 1.0, 2.0, 3.0])
    _, state = running_confusion_loss(al.Confusion(*c), np.zeros(4), "f1", momentum=0.01)
    np.testing.assert_allclose(state, c / 12)
    loss, kept = running_confusion_loss(al.Confusion(*np.zeros(4)), state, "f1", momentum=0.5)
    np.testing.assert_array_equal(kept, state)
    assert np.isfinite(float(loss))


def test_multiclass_state_is_per_class():
    rng = np.random.default_rng(0)
    counts = rng.random((3, 4)) * 5  # tn, fn, fp, tp per class
    state = np.tile(np.array([0.4, 0.1, 0.1, 0.4]), (3, 1))
    loss, new = running_confusion_loss(al.Confusion(*counts.T), state, "f1", momentum=0.25, task="multiclass",
                                       average="macro")
    expected = 0.75 * state + 0.25 * counts / counts.sum(1, keepdims=True)
    np.testing.assert_allclose(new, expected, rtol=1e-12)
    per_class = [reference_f1(row * total) for row, total in zip(expected, counts.sum(1), strict=True)]
    np.testing.assert_allclose(float(loss), 1 - np.mean(per_class), rtol=1e-12)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan")])
def test_momentum_out_of_range_is_rejected(bad):
    with pytest.raises(ValueError, match="momentum must be in"):
        running_confusion_loss(al.Confusion(*np.ones(4)), np.zeros(4), "f1", momentum=bad)


def test_momentum_of_the_wrong_type_and_a_state_of_the_wrong_shape_are_named():
    with pytest.raises(TypeError, match="momentum must be a number"):
        running_confusion_loss(al.Confusion(*np.ones(4)), np.zeros(4), "f1", momentum="0.1")
    with pytest.raises(ValueError, match=r"running counts of shape \(3, 4\) do not fit"):
        running_confusion_loss(al.Confusion(*np.ones(4)), np.zeros((3, 4)), "f1", momentum=0.1)


# --- torch ---------------------------------------------------------------------------------------------------


def _torch_grad(loss_fn, z, y):
    import torch

    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    loss = loss_fn(zt, torch.tensor(y, dtype=torch.float64))
    loss.backward()
    return loss.item(), zt.grad.numpy()


@requires("torch")
@pytest.mark.parametrize(("metric", "reference"), [("f1", reference_f1), ("gmean", reference_gmean)])
def test_torch_gradient_is_the_linearised_loss(metric, reference):
    import anyloss_torch

    loss_fn = anyloss_torch.AnyLoss(metric, momentum=0.2, rescue=0.0)  # the running counts alone
    state = np.zeros(4)
    for seed in range(3):
        z, y = _batch(seed)
        expected_grad = reference_gradient(z, y, state, 0.2, reference)
        c = reference_counts(z, y)
        state = reference_update(state, c, 0.2)
        value, grad = _torch_grad(loss_fn, z, y)
        np.testing.assert_allclose(value, 1 - reference(state * c.sum()), rtol=1e-10)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-9)
        state = state.astype(np.float32).astype(np.float64)  # the buffer is float32, as BatchNorm's statistics
        np.testing.assert_array_equal(loss_fn.running_counts.numpy(), state)


@requires("torch")
@pytest.mark.parametrize("metric", ["f1", "accuracy", "balanced_accuracy", "mcc", lambda c, xp: c.tp / (c.tp + c.fn)])
def test_torch_momentum_one_is_the_plain_loss(metric):
    import anyloss_torch

    running, plain = anyloss_torch.AnyLoss(metric, momentum=1.0), anyloss_torch.AnyLoss(metric)
    for seed in range(3):
        z, y = _batch(seed)
        v_run, g_run = _torch_grad(running, z, y)
        v_plain, g_plain = _torch_grad(plain, z, y)
        np.testing.assert_allclose(v_run, v_plain, rtol=1e-12)
        np.testing.assert_allclose(g_run, g_plain, rtol=1e-9, atol=1e-12)


@requires("torch")
def test_torch_buffer_state_dict_reset_and_eval():
    import torch

    import anyloss_torch

    loss_fn = anyloss_torch.FBetaLoss(beta=2.0, momentum=0.1)
    assert loss_fn.running_counts.shape == (4,) and not loss_fn.running_counts.any()
    z, y = _batch(0)
    loss_fn(torch.tensor(z), torch.tensor(y))
    filled = loss_fn.running_counts.clone()
    np.testing.assert_allclose(filled.numpy(), reference_counts(z, y) / len(z), rtol=1e-6)
    copy = anyloss_torch.FBetaLoss(beta=2.0, momentum=0.1)
    copy.load_state_dict(loss_fn.state_dict())
    assert torch.equal(copy.running_counts, filled) and copy.momentum == 0.1
    loss_fn.eval()  # evaluation: the batch's loss, the state untouched
    z2, y2 = _batch(1)
    value = loss_fn(torch.tensor(z2), torch.tensor(y2))
    assert torch.equal(loss_fn.running_counts, filled)
    expected = 1 - 5 * (c := reference_counts(z2, y2))[3] / (5 * c[3] + 4 * c[1] + c[2])
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)
    loss_fn.train()
    with torch.no_grad():  # a validation pass in training mode: the state untouched too
        loss_fn(torch.tensor(z2), torch.tensor(y2))
    assert torch.equal(loss_fn.running_counts, filled)
    loss_fn.reset_running_counts()
    assert not loss_fn.running_counts.any()
    with pytest.raises(RuntimeError, match="no running counts"):
        anyloss_torch.F1Loss().reset_running_counts()


@requires("torch")
def test_torch_multiclass_needs_num_classes_and_keeps_a_row_per_class():
    import torch

    import anyloss_torch

    with pytest.raises(ValueError, match="need num_classes"):
        anyloss_torch.AnyLoss("f1", task="multiclass", momentum=0.1)
    loss_fn = anyloss_torch.AnyLoss("f1", task="multiclass", num_classes=3, momentum=0.5)
    logits = torch.randn(10, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss_fn(logits, torch.arange(10) % 3).backward()
    assert loss_fn.running_counts.shape == (3, 4)
    np.testing.assert_allclose(loss_fn.running_counts.sum(1).numpy(), np.ones(3), rtol=1e-6)
    assert torch.isfinite(logits.grad).all()


# --- JAX -----------------------------------------------------------------------------------------------------


@requires("jax")
def test_jax_running_anyloss_matches_the_reference_under_jit():
    import jax
    import jax.numpy as jnp

    import anyloss_jax

    step = jax.jit(jax.value_and_grad(
        lambda z, y, s: anyloss_jax.running_anyloss(z, y, s, "f1", momentum=0.2, rescue=0.0), has_aux=True))
    state, ref_state = anyloss_jax.init_running_counts(), np.zeros(4)
    for seed in range(3):
        z, y = _batch(seed)
        expected_grad = reference_gradient(z, y, ref_state, 0.2, reference_f1)
        c = reference_counts(z, y)
        ref_state = reference_update(ref_state, c, 0.2)
        (loss, state), grad = step(jnp.asarray(z, jnp.float32), jnp.asarray(y, jnp.float32), state)
        np.testing.assert_allclose(float(loss), 1 - reference_f1(ref_state * c.sum()), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=2e-3, atol=1e-6)
        np.testing.assert_allclose(np.asarray(state), ref_state, rtol=1e-5)


@requires("jax")
def test_jax_momentum_one_is_the_plain_loss_and_state_has_no_gradient():
    import jax
    import jax.numpy as jnp

    import anyloss_jax

    z, y = (jnp.asarray(a, jnp.float32) for a in _batch(3))
    state = jnp.asarray([0.7, 0.1, 0.1, 0.1])
    (v_run, _), g_run = jax.value_and_grad(
        lambda z: anyloss_jax.running_anyloss(z, y, state, "gmean", momentum=1.0), has_aux=True)(z)
    v_plain, g_plain = jax.value_and_grad(lambda z: anyloss_jax.anyloss(z, y, "gmean"))(z)
    np.testing.assert_allclose(float(v_run), float(v_plain), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g_run), np.asarray(g_plain), rtol=1e-5, atol=1e-7)
    g_state = jax.grad(lambda s: anyloss_jax.running_anyloss(z, y, s, "f1", momentum=0.5)[1].sum())(state)
    g_logits = jax.grad(lambda z: anyloss_jax.running_anyloss(z, y, state, "f1", momentum=0.5)[1].sum())(z)
    assert not np.asarray(g_state).any() and not np.asarray(g_logits).any()


@requires("jax")
def test_jax_axis_name_gives_the_global_batch_state():
    import jax
    import jax.numpy as jnp

    import anyloss_jax

    z, y = (jnp.asarray(a, jnp.float32) for a in _batch(5, n=16))
    state = anyloss_jax.init_running_counts()
    whole, whole_state = anyloss_jax.running_anyloss(z, y, state, "f1", momentum=0.3)
    per_shard = jax.vmap(lambda z, y: anyloss_jax.running_anyloss(z, y, state, "f1", momentum=0.3, axis_name="d"),
                         axis_name="d")(z.reshape(4, 4), y.reshape(4, 4))
    np.testing.assert_allclose(np.asarray(per_shard[0]), float(whole), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(per_shard[1]), np.tile(np.asarray(whole_state), (4, 1)), rtol=1e-6)


@requires("jax")
def test_jax_init_running_counts_shapes_and_errors():
    import anyloss_jax

    assert anyloss_jax.init_running_counts().shape == (4,)
    assert anyloss_jax.init_running_counts(5, task="multilabel").shape == (5, 4)
    with pytest.raises(ValueError, match="need num_classes"):
        anyloss_jax.init_running_counts(task="multiclass")
    with pytest.raises(ValueError, match="momentum must be in"):
        anyloss_jax.running_anyloss(np.zeros(3), np.zeros(3), anyloss_jax.init_running_counts(), momentum=0.0)
