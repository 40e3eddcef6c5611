"""anyloss_jax's fast paths: one compiled call per eager call, and the counts as sums over the predictions.

The inner ``jit`` must be what an eager call runs once a configuration is hot (no
re-tracing), the concrete-value checks must still raise the core's errors, and the
values and gradients must equal a float64 NumPy formula written here.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
anyloss_jax = pytest.importorskip("anyloss_jax")

from anyloss_core.adapters import DEFAULT_RESCUE, LossConfig  # noqa: E402

X64 = bool(jax.config.jax_enable_x64)
SCALE = 73.0
RESCUE = 0.1


@pytest.fixture
def on_cpu():
    """New arrays on the CPU, where eager calls check values (on an accelerator they skip them)."""
    with jax.default_device(jax.devices("cpu")[0]):
        yield


def _data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < 0.4).astype(np.float64)
    y[:2] = [0.0, 1.0]  # both classes present
    w = rng.uniform(0.2, 2.0, n)
    return z, y, w


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow in float64


def _f1_reference(z: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                  rescue: float = RESCUE) -> tuple[float, np.ndarray]:
    """Loss and gradient of 1 - F1(soft counts) plus the rescue term, in float64 (eq. 6 of the paper, by hand)."""
    w = np.ones_like(z) if w is None else w
    p = _sigmoid(z)
    yh = _sigmoid(SCALE * (p - 0.5))
    tp, fn, fp = np.sum(w * y * yh), np.sum(w * y * (1 - yh)), np.sum(w * (1 - y) * yh)
    d = 2 * tp + fn + fp
    loss = 1.0 - 2 * tp / d
    g_tp, g_fn, g_fp = -2 * (fn + fp) / d**2, 2 * tp / d**2, 2 * tp / d**2  # d loss / d count; tn: 0
    dyh = SCALE * yh * (1 - yh) * p * (1 - p)
    grad = w * (y * (g_tp - g_fn) + (1 - y) * g_fp) * dyh
    wrong = np.abs(p - y) > 0.5
    grad = grad + rescue * np.where(wrong, p - y, 0.0) * w / np.sum(w)
    return float(loss), grad


def _fresh_scale() -> float:
    # A scale no other test uses, so this test's configuration starts cold in the cache.
    _fresh_scale.count += 1  # type: ignore[attr-defined]
    return SCALE + 1e-9 * _fresh_scale.count  # type: ignore[attr-defined]


_fresh_scale.count = 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("weighted", [False, True])
def test_eager_calls_match_float64_formula_before_and_after_compiling(weighted):
    z, y, w = _data()
    loss_ref, grad_ref = _f1_reference(z, y, w if weighted else None)
    dtype = jnp.float64 if X64 else jnp.float32
    tol = 1e-10 if X64 else 2e-5
    zj, yj = jnp.asarray(z, dtype), jnp.asarray(y, dtype)
    wj = jnp.asarray(w, dtype) if weighted else None
    step = jax.value_and_grad(lambda x: anyloss_jax.f1_loss(x, yj, sample_weight=wj))
    for _ in range(3):  # the first call op by op, then the compiled one
        loss, grad = step(zj)
        assert abs(float(loss) - loss_ref) < tol
        np.testing.assert_allclose(np.asarray(grad, np.float64), grad_ref, rtol=tol * 50, atol=tol * 1e-2)
    loss, grad = jax.jit(step)(zj)
    assert abs(float(loss) - loss_ref) < tol
    np.testing.assert_allclose(np.asarray(grad, np.float64), grad_ref, rtol=tol * 50, atol=tol * 1e-2)


def test_hot_eager_call_runs_the_cached_jit_without_tracing_again(monkeypatch):
    z, y, _ = _data()
    scale = _fresh_scale()
    step = jax.value_and_grad(lambda x, labels: anyloss_jax.anyloss(x, labels, "f1", scale=scale))
    step(z, y)
    step(z, y)  # the second call with these shapes compiles the configuration's inner jit
    traced = []
    original = LossConfig.loss_from_counts
    monkeypatch.setattr(LossConfig, "loss_from_counts", lambda self, *a, **k: traced.append(1) or original(
        self, *a, **k))
    results = [step(z, y) for _ in range(3)]
    assert traced == [], "an eager call traced the loss again instead of running the cached inner jit"
    # Op by op (a new shape: its first call) the same method runs every call.
    step(np.concatenate([z, z]), np.concatenate([y, y]))
    assert traced == [1]
    assert all(float(r[0]) == float(results[0][0]) for r in results)


def test_value_checks_still_raise_in_eager_calls_once_compiled(on_cpu):
    z, y, w = _data()
    for _ in range(3):  # hot: every later call would take the compiled path if the values passed
        anyloss_jax.f1_loss(jnp.asarray(z), jnp.asarray(y), sample_weight=jnp.asarray(w))
        anyloss_jax.f1_loss(jnp.asarray(_sigmoid(z)), jnp.asarray(y), from_logits=False)
    bad_labels = y.copy()
    bad_labels[3] = 2.0
    nan_labels = y.copy()
    nan_labels[4] = np.nan
    for _ in range(2):
        with pytest.raises(ValueError, match="binary labels"):
            anyloss_jax.f1_loss(jnp.asarray(z), jnp.asarray(bad_labels), sample_weight=jnp.asarray(w))
        with pytest.raises(ValueError, match="y_true contains NaN"):
            anyloss_jax.f1_loss(jnp.asarray(z), jnp.asarray(nan_labels), sample_weight=jnp.asarray(w))
        with pytest.raises(ValueError, match="non-negative"):
            anyloss_jax.f1_loss(jnp.asarray(z), jnp.asarray(y), sample_weight=jnp.asarray(-w))
        with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
            anyloss_jax.f1_loss(jnp.asarray(z), jnp.asarray(y), from_logits=False)
    # validate=False takes soft labels, compiled too.
    soft = np.clip(y + 0.25, 0.0, 1.0)
    values = {float(anyloss_jax.f1_loss(jnp.asarray(z), jnp.asarray(soft), validate=False)) for _ in range(3)}
    assert len(values) == 1


def test_shape_errors_are_the_cores_on_the_compiled_path():
    z, y, _ = _data()
    for _ in range(2):
        anyloss_jax.f1_loss(jnp.asarray(z), jnp.asarray(y))
    with pytest.raises(ValueError, match="same number of samples"):
        jax.grad(anyloss_jax.f1_loss)(jnp.asarray(z), jnp.asarray(y[:-1]))
    with pytest.raises(TypeError, match="floating"):
        anyloss_jax.f1_loss(jnp.asarray(y, jnp.int32), jnp.asarray(y), validate=False)


def test_infinite_logits_give_finite_gradients_and_the_rescue_gradient_there():
    z, y, _ = _data()
    z[:2] = [np.inf, -np.inf]  # y[:2] = 0, 1: both confidently wrong
    for _ in range(3):
        loss, grad = jax.value_and_grad(anyloss_jax.f1_loss)(jnp.asarray(z, jnp.float32), jnp.asarray(y))
    assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad)))
    # The paper's gradient vanishes there; the rescue's is BCE's, sigmoid(z) - y = +-1, times rescue / n (as torch).
    rescue = DEFAULT_RESCUE
    np.testing.assert_allclose(np.asarray(grad)[:2], [rescue / len(z), -rescue / len(z)], rtol=1e-6)


def test_hot_paths_under_vmap_and_running_counts_equal_the_direct_calls():
    z, y, _ = _data(32)
    zs, ys = jnp.asarray(np.stack([z, -z]), jnp.float32), jnp.asarray(np.stack([y, y]))
    for _ in range(3):
        batched = jax.vmap(jax.grad(anyloss_jax.f1_loss))(zs, ys)
    for i in range(2):
        np.testing.assert_allclose(batched[i], jax.grad(anyloss_jax.f1_loss)(zs[i], ys[i]), rtol=1e-6, atol=1e-9)
    state = anyloss_jax.init_running_counts()
    for _ in range(3):
        (loss, new_state), grad = jax.value_and_grad(
            lambda x: anyloss_jax.running_anyloss(x, ys[0], state, "f1", momentum=1.0), has_aux=True)(zs[0])
    # momentum 1 is the plain loss; the state is the batch's counts as fractions.
    loss_ref, grad_ref = _f1_reference(z.astype(np.float32).astype(np.float64), y, None)
    assert abs(float(loss) - loss_ref) < 2e-5
    np.testing.assert_allclose(np.asarray(grad, np.float64), grad_ref, rtol=1e-3, atol=1e-7)
    assert abs(float(jnp.sum(new_state)) - 1.0) < 1e-5


@pytest.mark.parametrize("weighted", [False, True])
def test_counts_from_label_sums_equal_the_four_dot_products(monkeypatch, weighted):
    # JAX's fast paths regroup the counts (TP, sum of yh, sum of y); the plain form is four dot products.
    import anyloss_core as al
    from anyloss_jax import _fast_paths

    z, y, w = _data(200, seed=4)
    w = jnp.asarray(w) if weighted else None
    regrouped = al.soft_confusion(jnp.asarray(y), jnp.asarray(z), from_logits=True, sample_weight=w)
    monkeypatch.setattr(_fast_paths.JaxFastPaths, "counts_from_label_sums", False)
    direct = al.soft_confusion(jnp.asarray(y), jnp.asarray(z), from_logits=True, sample_weight=w)
    for a, b in zip(regrouped, direct, strict=True):
        assert abs(float(a) - float(b)) <= 1e-5 * max(1.0, abs(float(b)))


def test_jit_gradient_keeps_at_most_one_n_element_temporary():
    # XLA's own memory plan (deterministic, not a timing): with the counts as sums over yh, the gradient step
    # of the default loss needs one n-element temporary; the four dot products needed two (1 - y, 1 - yh).
    n = 1 << 16
    z = jnp.linspace(-3.0, 3.0, n, dtype=jnp.float32)
    y = (jnp.arange(n) % 7 == 0).astype(jnp.float32)
    step = jax.jit(jax.grad(lambda x: anyloss_jax.f1_loss(x, y)))
    temp = step.lower(z).compile().memory_analysis().temp_size_in_bytes
    assert temp <= 1.25 * 4 * n, temp / (4 * n)


def test_shard_map_gradient_with_the_rescue_equals_the_plain_one():
    """The rescue's zero varies over the mesh axes as its tangent does: ``shard_map`` checks that (one device)."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    z, y, _ = _data(16)
    mesh = Mesh(np.array(jax.devices()[:1]), ("d",))
    mapped = jax.shard_map(lambda z, y: anyloss_jax.f1_loss(z, y, axis_name="d"), mesh=mesh,
                           in_specs=(P("d"), P("d")), out_specs=P())
    z, y = jnp.asarray(z, jnp.float32), jnp.asarray(y, jnp.float32)
    np.testing.assert_allclose(np.asarray(jax.grad(mapped)(z, y)),
                               np.asarray(jax.grad(anyloss_jax.f1_loss)(z, y)), rtol=1e-6, atol=1e-9)


def test_a_configuration_built_elsewhere_is_cached_as_itself(monkeypatch):
    from anyloss_core.adapters import LossConfig
    from anyloss_jax import _fast

    monkeypatch.setattr(_fast, "_ENTRIES", {})
    config = LossConfig("fbeta", {"beta": 2.0}, from_logits=True)
    found = _fast.config_entry("anyloss", config)
    assert found.config is config
    assert _fast.config_entry("anyloss", LossConfig("fbeta", {"beta": 2.0}, from_logits=True)) is found
    # The same numbers of another type configure differently: another entry.
    assert _fast.config_entry("anyloss", LossConfig("fbeta", {"beta": 2}, from_logits=True)) is not found
    assert _fast.config_entry("anyloss", LossConfig("fbeta", {"beta": 2.0}, from_logits=True, scale=50.0)) \
        is not found
