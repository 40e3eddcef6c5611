"""The JAX binary loss on a CPU keeps only the approximation's sigmoid for the backward pass from 32 MiB of logits
(``_functions._binary_terms``), and both sigmoids below.

XLA's memory plan is deterministic (not a timing): without the ``jax.checkpoint`` the
gradient step writes ``sigmoid(z)`` and ``A`` as two n-element arrays, one of them a
temporary that lands in fresh pages at every call at n = 1e7; with it the forward pass is
one loop ``z -> A`` and the backward pass writes the gradient over ``A``'s buffer.  Below
``FRESH_PAGES_BYTES`` the temporary is reused heap memory and the saved ``sigmoid(z)`` is
cheaper than recomputing it, so the plain form is kept there.  The tests lower the
threshold instead of allocating 32 MiB.  The gradients of both forms are checked against a
float64 NumPy formula and against forward mode.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

if "jax" not in os.environ.get("ANYLOSS_TEST_BACKENDS", "numpy,jax").split(","):
    pytest.skip("JAX backend not selected", allow_module_level=True)

jax = pytest.importorskip("jax")
jnp = jax.numpy
anyloss_jax = pytest.importorskip("anyloss_jax")

from anyloss_core import _fast_paths as core_fast_paths  # noqa: E402
from anyloss_jax import _fast, _fast_paths  # noqa: E402

L = 73.0


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (3.0 * rng.normal(size=n)).astype(np.float32), (rng.random(n) < 0.2).astype(np.float32)


def _f1_grad_float64(z: np.ndarray, y: np.ndarray, rescue: float) -> np.ndarray:
    """d/dz of 1 - 2 TP / (sum(A) + sum(y)) with A = sigmoid(L (sigmoid(z) - 1/2)), plus the rescue slope."""
    z, y = z.astype(np.float64), y.astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-z))
    a = 1.0 / (1.0 + np.exp(-L * (p - 0.5)))
    tp, denominator = np.sum(y * a), np.sum(a) + np.sum(y)
    # dL/dTP = -2 / D, dL/dsum(A) = 2 TP / D^2 (sum(y) is data)
    slope = -2.0 / denominator * y + 2.0 * tp / denominator**2
    grad = slope * L * a * (1.0 - a) * p * (1.0 - p)
    wrong = np.abs(p - y) > 0.5
    return grad + rescue / z.size * np.where(wrong, p - y, 0.0)


@pytest.fixture(params=["below", "from"])
def fresh_pages(request, monkeypatch):
    """``"below"``: the threshold as it is (every array here is smaller); ``"from"``: lowered to 1 KiB, so
    that these arrays count as 32 MiB ones.  The inner ``jit`` of each configuration is cached: emptied."""
    monkeypatch.setattr(_fast, "_ENTRIES", {})
    if request.param == "from":
        monkeypatch.setattr(core_fast_paths, "FRESH_PAGES_BYTES", 1024)
    return request.param


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's rule (elsewhere the checkpoint at every size)")
@pytest.mark.parametrize("shape", [(1 << 16,), (1 << 16, 1)])
def test_gradient_step_keeps_one_sigmoid_from_fresh_pages_and_both_below(shape, fresh_pages):
    n = shape[0]
    z = jnp.linspace(-3.0, 3.0, n, dtype=jnp.float32).reshape(shape)
    y = (jnp.arange(n) % 7 == 0).astype(jnp.float32).reshape(shape)
    step = jax.jit(jax.grad(lambda x: anyloss_jax.f1_loss(x, y)))
    temp = step.lower(z).compile().memory_analysis().temp_size_in_bytes / (4 * n)
    if fresh_pages == "from":
        # (n,): the gradient overwrites A's buffer; (n, 1): XLA cannot share the flattened A's buffer with the
        # (n, 1) result, so A stays one temporary (two before: sigmoid(z) and A).
        assert temp <= (0.25 if len(shape) == 1 else 1.25), temp
    else:  # sigmoid(z) and A both kept: one temporary more than with the checkpoint
        assert (0.75 if len(shape) == 1 else 1.75) <= temp <= (1.25 if len(shape) == 1 else 2.25), temp


@pytest.mark.parametrize("rescue", [0.0, 0.1])
def test_gradient_matches_float64_formula(rescue, fresh_pages):
    z, y = _data(4096)
    grad = jax.jit(jax.grad(lambda x: anyloss_jax.f1_loss(x, jnp.asarray(y), rescue=rescue)))(jnp.asarray(z))
    want = _f1_grad_float64(z, y, rescue)
    np.testing.assert_allclose(np.asarray(grad, dtype=np.float64), want, rtol=2e-4, atol=1e-6 * np.abs(want).max())


def test_forward_mode_equals_reverse_mode(fresh_pages):
    z, y = _data(257, seed=3)
    z, y = jnp.asarray(z), jnp.asarray(y)
    v = jnp.asarray(np.random.default_rng(4).normal(size=z.shape).astype(np.float32))

    def loss(x):
        return anyloss_jax.f1_loss(x, y, rescue=0.0)

    _, forward = jax.jvp(loss, (z,), (v,))
    reverse = jnp.vdot(jax.grad(loss)(z), v)
    assert abs(float(forward) - float(reverse)) <= 1e-4 * max(1.0, abs(float(reverse)))
    hessian_vector = jax.jvp(jax.grad(loss), (z,), (v,))[1]
    assert bool(jnp.all(jnp.isfinite(hessian_vector)))


def test_marked_sigmoid_is_the_sigmoid_with_its_derivative():
    x = jnp.linspace(-40.0, 40.0, 101, dtype=jnp.float32)
    s, t = jax.jvp(_fast_paths._kept_sigmoid, (x,), (jnp.ones_like(x),))
    np.testing.assert_array_equal(np.asarray(s), np.asarray(jax.nn.sigmoid(x)))
    np.testing.assert_array_equal(np.asarray(t), np.asarray(jax.nn.sigmoid(x) * (1.0 - jax.nn.sigmoid(x))))
