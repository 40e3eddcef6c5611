"""Second derivatives of the binary Keras loss on TensorFlow (anyloss_keras._tensorflow): through nested tapes.

The counts' gradient is the core's closed-form pullback, itself a ``tf.custom_gradient`` whose gradient
recomputes that pullback from the recorded logits.  Hessian-vector products (reverse over reverse, forward
over reverse, ``tape.jacobian``) and a MAML-style meta-gradient through a tanh layer, eagerly, in a
``tf.function`` and under XLA, against central differences of a float64 NumPy gradient written here.  As
everywhere else in the library, the rescue term adds gradient but no curvature (``sg[rescue g] (z - sg[z])``):
the reference's curvature is that of the gradient without rescue.
"""

from __future__ import annotations

import numpy as np
import pytest
from cases import reference_f1_value_and_grad

keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":
    pytest.skip("second derivatives through TensorFlow's custom gradient", allow_module_level=True)
anyloss_keras = pytest.importorskip("anyloss_keras")
tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.backend("keras")

MODES = ("eager", "tf.function", "xla")
EPS = 1e-6  # central differences in float64: error ~ EPS^2 times the third derivative, rounding ~ 1e-16 / EPS


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _reference(y, z, w, *, from_logits, rescue):
    """The F1 loss's gradient in float64 (``cases.reference_f1_value_and_grad``)."""
    return reference_f1_value_and_grad(y, z, w, from_logits=from_logits, rescue=rescue)[1]  # the default scale, 73


def _reference_hvp(y, z, w, v, *, from_logits):
    """H v by central differences of the gradient without rescue (the rescue term has no curvature)."""
    plus = _reference(y, z + EPS * v, w, from_logits=from_logits, rescue=0.0)
    minus = _reference(y, z - EPS * v, w, from_logits=from_logits, rescue=0.0)
    return (plus - minus) / (2 * EPS)


def _data(n=96, seed=0, from_logits=True):
    """Logits near the threshold (a large curvature) and a few confidently wrong ones (the rescue slope); float64."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1)) * 0.05
    z[:6] = [[3.0], [-3.0], [2.0], [-2.0], [4.0], [-4.0]]
    y = (rng.random((n, 1)) < 0.3).astype(np.float64)
    y[:6] = [[0.0], [1.0], [0.0], [1.0], [0.0], [1.0]]  # all six wrong
    w = rng.uniform(0.5, 2.0, size=(n,))
    v = rng.normal(size=(n, 1))
    if not from_logits:
        z = _sigmoid(z)
    return z, y, w, v


def _loss(from_logits, rescue, mode):
    return anyloss_keras.F1Loss(from_logits=from_logits, rescue=rescue, validate=mode != "xla", dtype="float64")


def _compiled(fn, mode):
    return fn if mode == "eager" else tf.function(fn, jit_compile=mode == "xla")


def _assert_close(actual, expected):
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(np.asarray(actual).ravel(), np.asarray(expected).ravel(), rtol=1e-5, atol=1e-6 * scale)


def _cases(combinations):
    return [pytest.param(mode, *c, id=f"{mode}-logits{c[0]}-rescue{c[1]}-w{c[2]}")
            for mode in MODES for c in combinations]


# (from_logits, rescue, weighted): half of the eight, every pair of the three's values once.
CASES = _cases([(True, 0.1, False), (True, 0.0, True), (False, 0.1, True), (False, 0.0, False)])


@pytest.mark.parametrize(("mode", "from_logits", "rescue", "weighted"), CASES)
def test_hessian_vector_product_through_nested_tapes(mode, from_logits, rescue, weighted):
    z, y, w, v = _data(from_logits=from_logits)
    w = w if weighted else None
    loss = _loss(from_logits, rescue, mode)

    def hvp(z, y, v, *w):
        with tf.GradientTape() as outer:
            outer.watch(z)
            with tf.GradientTape() as inner:
                inner.watch(z)
                value = loss(y, z, sample_weight=w[0] if w else None)
            grad = inner.gradient(value, z)
            grad_v = tf.reduce_sum(grad * v)
        return grad, outer.gradient(grad_v, z)

    grad, h = _compiled(hvp, mode)(*map(tf.constant, (z, y, v) if w is None else (z, y, v, w)))
    _assert_close(grad, _reference(y, z, w, from_logits=from_logits, rescue=rescue))  # the first order unchanged
    _assert_close(h, _reference_hvp(y, z, w, v, from_logits=from_logits))


@pytest.mark.parametrize(("mode", "from_logits", "rescue", "weighted"),
                         _cases([(True, 0.1, True), (False, 0.0, False)]))
def test_forward_over_reverse_jvp_of_the_gradient(mode, from_logits, rescue, weighted):
    z, y, w, v = _data(seed=1, from_logits=from_logits)
    w = w if weighted else None
    loss = _loss(from_logits, rescue, mode)

    def jvp(z, y, v, *w):
        with tf.autodiff.ForwardAccumulator(z, v) as accumulator:
            with tf.GradientTape() as tape:
                tape.watch(z)
                value = loss(y, z, sample_weight=w[0] if w else None)
            grad = tape.gradient(value, z)
        return grad, accumulator.jvp(grad)

    grad, h = _compiled(jvp, mode)(*map(tf.constant, (z, y, v) if w is None else (z, y, v, w)))
    _assert_close(grad, _reference(y, z, w, from_logits=from_logits, rescue=rescue))
    _assert_close(h, _reference_hvp(y, z, w, v, from_logits=from_logits))


@pytest.mark.parametrize("mode", MODES)
def test_forward_mode_jvp_of_the_loss(mode):
    # Forward mode takes autodiff of the composition (anyloss_keras._tensorflow._has_tangent): in a graph the
    # custom gradient gave a zero JVP.
    z, y, w, v = _data(seed=4)
    loss = _loss(True, 0.1, mode)

    def jvp(z, y, w, v):
        with tf.autodiff.ForwardAccumulator(z, v) as accumulator:
            value = loss(y, z, sample_weight=w)
        return accumulator.jvp(value)

    value_jvp = _compiled(jvp, mode)(*map(tf.constant, (z, y, w, v)))
    expected = np.sum(_reference(y, z, w, from_logits=True, rescue=0.1) * v.ravel())
    assert float(value_jvp) == pytest.approx(expected, rel=1e-6)


def _gradient_function(loss, jit_compile):
    """A ``tf.function`` of ``(y, z)`` giving the loss's gradient in ``z``: what an accumulator outside it sees
    through TensorFlow's transpose of the function's gradient, where no tape records."""

    @tf.function(jit_compile=jit_compile)
    def gradient_of(y, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return tape.gradient(value, z)

    return gradient_of


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("rescue", [0.1, 0.0])
def test_forward_mode_across_a_tf_function_boundary(jit_compile, rescue):
    # The accumulator outside the tf.function that calls the loss: TensorFlow then transposes the function's
    # gradient, where no tape records (the first version of the second-order gradient gave a JVP of 0 there).
    z, y, _, v = _data(seed=6)
    loss = anyloss_keras.F1Loss(from_logits=True, rescue=rescue, dtype="float64", validate=not jit_compile)
    value_of = tf.function(lambda y, z: loss(y, z), jit_compile=jit_compile)
    gradient_of = _gradient_function(loss, jit_compile)
    zt, yt, vt = map(tf.constant, (z, y, v))
    with tf.autodiff.ForwardAccumulator(zt, vt) as accumulator:
        value, grad = value_of(yt, zt), gradient_of(yt, zt)
    expected = _reference(y, z, None, from_logits=True, rescue=rescue)
    assert float(accumulator.jvp(value)) == pytest.approx(np.sum(expected * v.ravel()), rel=1e-6)
    _assert_close(accumulator.jvp(grad), _reference_hvp(y, z, None, v, from_logits=True))


def test_third_derivative_across_a_tf_function_boundary():
    # Two accumulators outside the tf.function that computes the gradient: TensorFlow transposes its gradient
    # where no tape records, and the second-order gradient falls back to four pullbacks.  Their arrays must stay
    # functions of z: computed from a stopped z, the outer accumulator sees no tangent there (here 90 of the
    # 96 entries are then off, up to 3.9x; 1.5% off in the review's case that found it).  Reference: the second
    # difference of the float64 gradient without rescue (D^3 loss [v, v]; its error ~ eps^2 times the fifth
    # derivative, rounding ~ 1e-16 / eps^2).  Its first call traces TensorFlow's forward-over-forward functions
    # for about 40 s (20 s for the plain composition), so it runs once, without XLA: the fallback is the same
    # code under XLA.
    z, y, _, v = _data(seed=9)
    gradient_of = _gradient_function(anyloss_keras.F1Loss(from_logits=True, rescue=0.0, dtype="float64"), False)
    zt, yt, vt = map(tf.constant, (z, y, v))
    with tf.autodiff.ForwardAccumulator(zt, vt) as outer:
        with tf.autodiff.ForwardAccumulator(zt, vt) as inner:
            grad = gradient_of(yt, zt)
        hvp = inner.jvp(grad)
    eps = 1e-4

    def gradient_at(shift):
        return _reference(y, z + shift * v, None, from_logits=True, rescue=0.0)

    expected = (gradient_at(eps) - 2.0 * gradient_at(0.0) + gradient_at(-eps)) / eps**2
    _assert_close(hvp, _reference_hvp(y, z, None, v, from_logits=True))
    np.testing.assert_allclose(np.asarray(outer.jvp(hvp)).ravel(), expected, rtol=1e-4,
                               atol=1e-5 * np.max(np.abs(expected)))


@pytest.mark.parametrize("mode", ["eager", "tf.function"])
def test_forward_mode_of_soft_labels(mode):
    # A tangent of the labels (soft labels being learned): the counts' custom gradient is of the logits only, so
    # such calls take autodiff of the composition; d loss / d y by central differences of the float64 loss.
    z, y, _, v = _data(seed=8)
    y = np.clip(y + 0.1, 0.0, 1.0)
    loss = anyloss_keras.F1Loss(from_logits=True, validate=False, dtype="float64")  # soft labels

    def jvp(y, z, v):
        with tf.autodiff.ForwardAccumulator(y, v) as accumulator:
            value = loss(y, z)
        return accumulator.jvp(value)

    got = float(_compiled(jvp, mode)(*map(tf.constant, (y, z, v))))
    eps = 1e-6
    values = [reference_f1_value_and_grad(y + sign * eps * v, z, None, from_logits=True, rescue=0.0)[0]
              for sign in (1, -1)]
    assert got == pytest.approx((values[0] - values[1]) / (2 * eps), rel=1e-6)


def test_second_derivative_in_the_upstream_gradient_includes_the_rescue_slope():
    # d/d(alpha) <grad(alpha * loss), v> = <grad(loss), v>: the gradient's derivative in its upstream gradient,
    # the rescue slope's share included (the gradient is linear in g_rescue).
    z, y, _, v = _data(seed=7)
    zt, yt, vt = map(tf.constant, (z, y, v))
    alpha = tf.Variable(1.5, dtype=tf.float64)
    loss = _loss(True, 0.1, "eager")
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(zt)
            value = alpha * loss(yt, zt)
        along = tf.reduce_sum(inner.gradient(value, zt) * vt)
    expected = np.sum(_reference(y, z, None, from_logits=True, rescue=0.1) * v.ravel())
    rescue_share = expected - np.sum(_reference(y, z, None, from_logits=True, rescue=0.0) * v.ravel())
    assert abs(rescue_share) > 1e-4 * abs(expected)  # the samples on the wrong side make a rescue slope
    assert float(outer.gradient(along, alpha)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("mode", ["eager", "tf.function"])
def test_forward_mode_jvp_of_the_loss_of_a_variable(mode):
    # Predictions held in a tf.Variable (the accumulator watches it; TensorFlow's tangent lookup takes tensors).
    z, y, w, v = _data(seed=5)
    loss = _loss(True, 0.1, mode)
    variable = tf.Variable(z)

    def jvp(y, v):
        with tf.autodiff.ForwardAccumulator(variable, v) as accumulator:
            value = loss(y, variable)
        return accumulator.jvp(value)

    value_jvp = _compiled(jvp, mode)(tf.constant(y), tf.constant(v))
    expected = np.sum(_reference(y, z, None, from_logits=True, rescue=0.1) * v.ravel())
    assert float(value_jvp) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mode", ["eager", "tf.function"])
def test_hessian_by_the_jacobian_of_the_gradient(mode):
    z, y, w, v = _data(n=24, seed=2)
    loss = _loss(True, 0.1, mode)

    def hessian(z, y, w):
        with tf.GradientTape() as outer:
            outer.watch(z)
            with tf.GradientTape() as inner:
                inner.watch(z)
                value = loss(y, z, sample_weight=w)
            grad = inner.gradient(value, z)
        return outer.jacobian(grad, z)

    h = np.asarray(_compiled(hessian, mode)(*map(tf.constant, (z, y, w)))).reshape(z.size, z.size)
    np.testing.assert_allclose(h, h.T, atol=1e-9 * np.max(np.abs(h)))
    _assert_close(h @ v.ravel(), _reference_hvp(y, z, w, v, from_logits=True))


# A MAML-style meta-gradient: a tanh layer between the parameters and the loss, one inner step of gradient descent.
N_IN, N_HIDDEN = 3, 5


def _unpack(theta):
    sizes = np.cumsum([N_IN * N_HIDDEN, N_HIDDEN, N_HIDDEN])
    w1, b1, w2, b2 = np.split(theta, sizes)
    return w1.reshape(N_IN, N_HIDDEN), b1, w2, b2


def _np_logits(theta, x):
    w1, b1, w2, b2 = _unpack(theta)
    hidden = np.tanh(x @ w1 + b1)
    return hidden @ w2 + b2, hidden


def _np_theta_gradient(theta, x, y, *, slope):
    """The loss's gradient in the parameters: the layer's backward of the logits' gradient without rescue plus
    ``slope``, the rescue slope held constant (it has no curvature)."""
    z, hidden = _np_logits(theta, x)
    dz = _reference(y, z, None, from_logits=True, rescue=0.0) + slope
    w1, b1, w2, b2 = _unpack(theta)
    d_pre = np.outer(dz, w2) * (1 - hidden**2)
    return np.concatenate([(x.T @ d_pre).ravel(), d_pre.sum(0), hidden.T @ dz, [dz.sum()]])


def _tf_logits(theta, x):
    sizes = [N_IN * N_HIDDEN, N_HIDDEN, N_HIDDEN, 1]
    w1, b1, w2, b2 = tf.split(theta, sizes)
    hidden = tf.tanh(x @ tf.reshape(w1, (N_IN, N_HIDDEN)) + b1)
    return hidden @ w2[:, None] + b2


@pytest.mark.parametrize(("mode", "rescue"), [(mode, 0.1) for mode in MODES] + [("eager", 0.0)])
def test_maml_meta_gradient_through_a_tanh_layer(mode, rescue):
    rng = np.random.default_rng(3)
    n, lr = 64, 0.02
    x = rng.normal(size=(n, N_IN))
    y = (rng.random((n, 1)) < 0.4).astype(np.float64)
    theta = rng.normal(size=N_IN * N_HIDDEN + 2 * N_HIDDEN + 1) * 0.05
    theta[-1] = -0.05  # some samples on the wrong side: a rescue slope
    loss = _loss(True, rescue, mode)

    def meta_gradient(theta, x, y):
        with tf.GradientTape() as outer:
            outer.watch(theta)
            with tf.GradientTape() as inner:
                inner.watch(theta)
                value = loss(y, _tf_logits(theta, x))
            adapted = theta - lr * inner.gradient(value, theta)
            meta_value = loss(y, _tf_logits(adapted, x))
        return adapted, outer.gradient(meta_value, theta)

    adapted, meta = _compiled(meta_gradient, mode)(*map(tf.constant, (theta, x, y)))

    def slope(theta):  # the rescue slope at these parameters, held constant around them
        z = _np_logits(theta, x)[0]
        return _reference(y, z, None, from_logits=True, rescue=rescue) - _reference(y, z, None, from_logits=True,
                                                                                      rescue=0.0)

    g0 = _np_theta_gradient(theta, x, y, slope=slope(theta))
    _assert_close(adapted, theta - lr * g0)
    # d/dtheta L(theta - lr g(theta)) = (I - lr H) g(theta'), H v by central differences of the gradient.
    adapted = theta - lr * g0
    g1 = _np_theta_gradient(adapted, x, y, slope=slope(adapted))
    s0 = slope(theta)
    plus, minus = (_np_theta_gradient(theta + sign * EPS * g1, x, y, slope=s0) for sign in (1, -1))
    h_g1 = (plus - minus) / (2 * EPS)
    _assert_close(meta, g1 - lr * h_g1)
