"""Keras on the JAX backend computes its binary loss with the JAX adapter (``anyloss_jax.interop.config_loss``).

Values and gradients against a float64 NumPy formula written here (``cases``), eagerly (op by op, then the
cached inner ``jit``) and under ``jax.jit``; XLA's memory plan of the gradient step (deterministic, not a
timing); the bad-label error; running counts, which keep Keras's own path while they update.
"""

from __future__ import annotations

import numpy as np
import pytest
from cases import reference_f1_value_and_grad, rescue_batch

pytestmark = pytest.mark.backend("keras")
keras = pytest.importorskip("keras")
anyloss_keras = pytest.importorskip("anyloss_keras")

if keras.backend.backend() != "jax":
    pytest.skip("the JAX adapter's path is the JAX backend's", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from anyloss_core import _fast_paths as core_fast_paths  # noqa: E402
from anyloss_jax import _fast  # noqa: E402

SCALE = 73.0


_data = rescue_batch


def _value_and_grad(loss, mode):
    def value(z, y, w):
        return loss(y, z, sample_weight=w)

    step = jax.value_and_grad(value)
    return jax.jit(step) if mode == "jit" else step


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("rescue", [0.1, 0.0])
def test_value_and_gradient_equal_the_float64_formula(mode, from_logits, weighted, rescue, monkeypatch):
    monkeypatch.setattr(_fast, "_ENTRIES", {})  # no inner jit of an earlier case: the first eager call is op by op
    z, y, w = _data(from_logits=from_logits)
    loss = anyloss_keras.F1Loss(from_logits=from_logits, rescue=rescue)
    step = _value_and_grad(loss, mode)
    ref_value, ref_grad = reference_f1_value_and_grad(y, z, w if weighted else None, from_logits=from_logits,
                                                      rescue=rescue, scale=SCALE)
    # Three calls: eagerly the first runs op by op and the later ones the configuration's cached inner jit.
    for _ in range(3):
        value, grad = step(jnp.asarray(z), jnp.asarray(y), jnp.asarray(w) if weighted else None)
        assert float(value) == pytest.approx(ref_value, rel=1e-5)
        assert grad.shape == z.shape
        np.testing.assert_allclose(np.asarray(grad).ravel(), ref_grad, rtol=2e-4,
                                   atol=2e-5 * np.max(np.abs(ref_grad)))


def test_the_loss_is_the_jax_adapters_with_the_same_settings():
    import anyloss_jax

    z, y, w = _data()
    loss = anyloss_keras.FBetaLoss(beta=2.0, from_logits=True, rescue=0.05)
    got = jax.grad(lambda x: loss(y, x, sample_weight=w))(jnp.asarray(z))
    want = jax.grad(lambda x: anyloss_jax.fbeta_loss(x, y, beta=2.0, rescue=0.05, sample_weight=w))(jnp.asarray(z))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the fresh-pages rule is the CPU's")
@pytest.mark.parametrize("fresh_pages", [False, True])
def test_jit_gradient_keeps_one_temporary_from_fresh_pages_and_two_below(monkeypatch, fresh_pages):
    # Through keras.ops the step kept sigmoid(z) and A at every size (2n floats of temporaries, fresh pages every
    # step at 1e7).  The JAX adapter keeps only A from FRESH_PAGES_BYTES on, lowered here to 1 KiB so that these
    # 65536 logits count as 32 MiB; below it both, as before.
    monkeypatch.setattr(_fast, "_ENTRIES", {})
    if fresh_pages:
        monkeypatch.setattr(core_fast_paths, "FRESH_PAGES_BYTES", 1024)
    n = 1 << 16
    z = jnp.linspace(-3.0, 3.0, n, dtype=jnp.float32).reshape(n, 1)
    y = (jnp.arange(n) % 7 == 0).astype(jnp.float32).reshape(n, 1)
    loss = anyloss_keras.F1Loss(from_logits=True)
    step = jax.jit(jax.grad(lambda x: loss(y, x)))
    temp = step.lower(z).compile().memory_analysis().temp_size_in_bytes / (4 * n)
    assert (temp <= 1.25) if fresh_pages else (1.75 <= temp <= 2.25), temp


def test_symbolic_call_on_keras_inputs_gives_a_symbolic_loss():
    # keras.Input is a KerasTensor, which JAX functions do not take: such a call keeps keras.ops.
    value = anyloss_keras.F1Loss(from_logits=True)(keras.Input((1,)), keras.Input((1,)))
    assert isinstance(value, keras.KerasTensor)
    assert tuple(value.shape) == ()


def test_bad_labels_raise_eagerly_before_and_after_the_inner_jit():
    z, y, _ = _data()
    loss = anyloss_keras.F1Loss(from_logits=True)
    for _ in range(3):
        loss(y, z)  # the configuration's inner jit is compiled by now
    with pytest.raises(ValueError, match="y_true must hold binary labels"):
        loss(y * 2.0, z)


def test_running_counts_evaluation_is_the_batch_loss():
    # momentum: training steps keep Keras's own path (the state is a Keras variable); a call that takes no
    # gradient inside Keras's stateless step is an evaluation, the batch's loss through the JAX adapter.
    z, y, _ = _data()
    plain = anyloss_keras.F1Loss(from_logits=True)
    running = anyloss_keras.F1Loss(from_logits=True, momentum=0.5)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="ones")])
    model.compile(loss=running)
    evaluated = model.evaluate(z, y, batch_size=len(z), verbose=0)
    assert evaluated == pytest.approx(float(plain(y, model.predict(z, verbose=0))), rel=1e-5)
    np.testing.assert_array_equal(running.running_counts.numpy(), np.zeros(4, np.float32))
