"""anyloss_jax: jit, grad, vmap, check_grads, axis_name, training.

The checks every backend shares (the reference with x64 on and off, extreme logits in every dtype,
degenerate batches, shapes, weights, bad input) are in tests/test_backends.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from cases import APPROX_CONFIGS, METRIC_CONFIGS, SMALL_CASES

pytestmark = pytest.mark.backend("jax")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
anyloss_jax = pytest.importorskip("anyloss_jax")


X64 = bool(jax.config.jax_enable_x64)
FLOAT = jnp.float64 if X64 else jnp.float32


@pytest.mark.parametrize("case", SMALL_CASES, ids=lambda c: c.id)
def test_jit_equals_eager_reference(case):
    b = case.batch

    @jax.jit
    def f(pred, y):
        return anyloss_jax.anyloss(pred, y, case.metric, from_logits=b.from_logits, scale=case.scale,
                                   approximation=case.approximation, **case.kwargs)

    pred, y = jnp.asarray(b.pred, FLOAT), jnp.asarray(b.y)
    eager = anyloss_jax.anyloss(pred, y, case.metric, from_logits=b.from_logits, scale=case.scale,
                                approximation=case.approximation, **case.kwargs)
    np.testing.assert_allclose(float(f(pred, y)), float(eager), rtol=1e-6, atol=1e-7)
    g_jit = jax.jit(jax.grad(lambda p: f(p, y)))(pred)
    g_eager = jax.grad(lambda p: anyloss_jax.anyloss(p, y, case.metric, from_logits=b.from_logits,
                                                     scale=case.scale, approximation=case.approximation,
                                                     **case.kwargs))(pred)
    assert bool(jnp.all(jnp.isfinite(g_jit)))
    np.testing.assert_allclose(np.asarray(g_jit), np.asarray(g_eager), rtol=1e-5, atol=1e-7)


def test_value_and_grad_and_vmap_over_problems():
    rng = np.random.default_rng(21)
    logits = jnp.asarray(rng.normal(size=(6, 25)), FLOAT)
    labels = jnp.asarray(rng.integers(0, 2, (6, 25)))
    batched = jax.vmap(anyloss_jax.f1_loss)(logits, labels)
    looped = jnp.stack([anyloss_jax.f1_loss(x, y) for x, y in zip(logits, labels, strict=True)])
    np.testing.assert_allclose(np.asarray(batched), np.asarray(looped), rtol=1e-6)
    value, grads = jax.value_and_grad(anyloss_jax.gmean_loss)(logits[0], labels[0])
    assert float(value) == pytest.approx(float(anyloss_jax.gmean_loss(logits[0], labels[0])))
    per_problem = jax.jit(jax.vmap(jax.grad(anyloss_jax.f1_loss)))(logits, labels)
    np.testing.assert_allclose(np.asarray(per_problem[0]), np.asarray(jax.grad(anyloss_jax.f1_loss)(
        logits[0], labels[0])), rtol=1e-5, atol=1e-8)
    assert grads.shape == (25,)


def test_the_compute_dtype_follows_the_x64_flag_for_a_known_signature():
    # The core remembers its argument checks per signature (anyloss_core._inputs); the compute dtype of float64
    # NumPy data under the JAX namespace depends on the x64 flag, which is part of that key.
    import anyloss_core as al

    y, p = np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.6, 0.4])
    for _ in range(2):  # twice each way: the second call of each setting is a known signature
        with jax.enable_x64(False):
            assert al.soft_confusion(y, p, xp=jnp).tp.dtype == jnp.float32
        with jax.enable_x64(True):
            assert al.soft_confusion(y, p, xp=jnp).tp.dtype == jnp.float64


@pytest.mark.parametrize("metric,params", METRIC_CONFIGS, ids=[m + str(p) for m, p in METRIC_CONFIGS])
@pytest.mark.parametrize("approximation,scale", APPROX_CONFIGS, ids=[f"{a}{s:g}" for a, s in APPROX_CONFIGS])
def test_check_grads_float64(metric, params, approximation, scale):
    from jax.test_util import check_grads

    with jax.enable_x64(True):
        rng = np.random.default_rng(22)
        y = jnp.asarray(np.concatenate([[0, 1], rng.integers(0, 2, 10)]))
        z = jnp.asarray(rng.normal(0, 1.5, 12), jnp.float64)
        w = jnp.linspace(0.5, 1.5, 12, dtype=jnp.float64)

        def f(z):
            # rescue=0: the derivative of the value (the rescue gradient is not; see tests/test_rescue.py).
            return anyloss_jax.anyloss(z, y, metric, sample_weight=w, scale=scale, approximation=approximation,
                                       rescue=0.0, **dict(params))

        check_grads(f, (z,), order=1, modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_validation_switches_off_under_jit():
    # Eagerly, labels other than 0/1 are an error (tests/test_backends.py); under jit the same call
    # traces without a Python branch on values, and shapes are still checked.
    value = jax.jit(anyloss_jax.f1_loss)(jnp.zeros(3), jnp.asarray([0, 1, 1]))
    assert math.isfinite(float(value))
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        jax.jit(anyloss_jax.f1_loss)(jnp.zeros(4), jnp.asarray([0, 1, 1]))


def test_axis_name_sums_counts_over_devices_with_vmap():
    # vmap with axis_name behaves as a mapped device axis: psum over shards.
    rng = np.random.default_rng(23)
    z, y = jnp.asarray(rng.normal(size=40), FLOAT), jnp.asarray(rng.integers(0, 2, 40))
    shards = jax.vmap(lambda a, b: anyloss_jax.f1_loss(a, b, axis_name="d"), axis_name="d")(
        z.reshape(4, 10), y.reshape(4, 10))
    np.testing.assert_allclose(np.asarray(shards), float(anyloss_jax.f1_loss(z, y)), rtol=1e-6)


@pytest.mark.slow
def test_f1_loss_beats_optax_bce_on_imbalanced_breast_cancer():
    optax = pytest.importorskip("optax")
    pytest.importorskip("sklearn")
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    from anyloss_bench.data import load_dataset, standardize

    data = load_dataset("breast_cancer")
    losses = {
        "f1": anyloss_jax.f1_loss,
        "bce": lambda z, y: optax.sigmoid_binary_cross_entropy(z, y.astype(z.dtype)).mean(),
    }
    scores: dict[str, list[float]] = {"f1": [], "bce": []}
    for seed in range(5):
        X_tr, X_va, y_tr, y_va = train_test_split(data.X, data.y, test_size=0.4, stratify=data.y,
                                                  random_state=seed)
        X_tr, X_va = standardize(X_tr, X_va)
        X_tr, y_tr_j = jnp.asarray(X_tr, jnp.float32), jnp.asarray(y_tr)
        for name, loss_fn in losses.items():
            params = {"w": jnp.zeros(30), "b": jnp.zeros(())}
            opt = optax.adam(0.01)
            state = opt.init(params)

            @jax.jit
            def step(params, state, loss_fn=loss_fn, opt=opt):
                grads = jax.grad(lambda p: loss_fn(X_tr @ p["w"] + p["b"], y_tr_j))(params)
                updates, state = opt.update(grads, state)
                return optax.apply_updates(params, updates), state

            for _ in range(100):
                params, state = step(params, state)
            pred = np.asarray(jnp.asarray(X_va, jnp.float32) @ params["w"] + params["b"]) > 0
            scores[name].append(f1_score(y_va, pred, zero_division=0))
    print(scores)
    assert np.mean(scores["f1"]) > np.mean(scores["bce"]) + 0.01, scores
