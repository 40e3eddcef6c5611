"""Property test of the public API of the core and of each adapter (issue 16, item 6).

Random shapes, dtypes, label, probability / logit and weight values, including NaN,
inf, empty batches and mismatched shapes, go through each backend's public entry
points.  Every call must end in one of two ways:

* it raises ``ValueError`` or ``TypeError`` (the documented types: ``ValueError`` for
  shapes and values, DESIGN.md "Numerics"; ``TypeError`` for dtypes, the core's
  ``_prepare`` / ``confusion``), of the type that fits a fault of the input, with a
  message naming the faulty argument (any of them when several are faulty); or
* it returns a finite 0-d loss in [0, 1] (tolerance 1e-6) with a finite gradient of
  ``y_pred``'s shape (NumPy has no gradient: the soft counts and the hard score are
  checked instead).

The oracle is :func:`faults`, computed from the arrays alone, never from what the
strategy meant to corrupt; an input with no fault must not raise, so over-eager
checks fail too.  The conventions it encodes:

* shapes: a trailing axis of length 1 is dropped, then ``y_true`` and ``y_pred`` must
  have equal, non-scalar shapes ((n,) with (n, 1), and (n, 2) with (n, 2), are fine);
  ``sample_weight`` has that shape or, for a multi-axis sample shape, its leading axis;
* an empty batch (n = 0) raises ``ValueError`` naming y_true and y_pred: what the core
  does today (``_sample_shape``); no page of the docs states a convention for it;
* NaN logits (``from_logits=True``) are not looked for: the loss and gradient may be
  NaN, as with the frameworks' own losses; nothing else may give NaN.  Infinite logits
  are finite inputs' limits and must give a finite loss and gradient;
* integer or bool ``y_pred`` is a ``TypeError``, except in ``al.score`` with
  probabilities (0/1 decisions) and in Keras, which casts ``y_pred`` to the loss's
  dtype as its own losses do.

Messages name the core's arguments (y_true, y_pred, sample_weight): the adapters pass
the core's errors through, so for torch ``target``/``y_true``, ``input``/``y_pred``,
``weight``/``sample_weight`` are accepted, and for JAX ``labels``/``y_true``,
``logits``/``y_pred``.  Under ``jax.jit`` value checks are skipped by design: there
a call with only value faults must not raise, structural (shape, dtype) faults must.

Examples per run (``--hypothesis-show-statistics``; derandomized, so the same every
run): numpy 300, torch 400, jax 100 (one in three also under ``jax.jit``), keras 300
on TensorFlow and PyTorch, 120 on JAX (slower: eager op dispatch).  About a quarter
are valid calls; the ``outcome`` and ``valid call with`` events split the rest by
fault and show how often the edge cases (float16, infinite logits, 0/1
probabilities, one class only, all-zero weights, (n, 2) samples) occur.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import anyloss_core as al

N_MAX = 12
TOL = 1e-6
METRICS = [("f1", {}), ("accuracy", {}), ("gmean", {}), ("balanced_accuracy", {}), ("mcc", {}),
           ("fbeta", {"beta": 2.0})]
LABEL_DTYPES = ["bool", "int32", "int64", "float16", "float32", "float64"]
FLOATS = ["float16", "float32", "float64"]
PRED_DTYPES = FLOATS * 4 + ["int64", "bool"]  # one in seven not floating

# The argument names a message may use for each of the core's arguments.
CORE_NAMES = {"y_true": ("y_true",), "y_pred": ("y_pred",), "sample_weight": ("sample_weight",)}
NAMES = {
    "numpy": CORE_NAMES,
    "torch": {"y_true": ("target", "y_true"), "y_pred": ("input", "y_pred"),
              "sample_weight": ("weight", "sample_weight")},
    "jax": {"y_true": ("labels", "y_true"), "y_pred": ("logits", "y_pred"), "sample_weight": ("sample_weight",)},
    "keras": CORE_NAMES,
}

# Keras on JAX runs each call eagerly op by op and compiles the cond of its probability check: slower.
KERAS_EXAMPLES = 120 if os.environ.get("KERAS_BACKEND") == "jax" else 300
SETTINGS = {"deadline": None, "derandomize": True, "database": None,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


# ---------------------------------------------------------------- inputs


@dataclass
class Case:
    y_true: np.ndarray
    y_pred: np.ndarray
    sample_weight: np.ndarray | None
    from_logits: bool
    metric: str
    params: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # what a falsifying example shows
        w = None if self.sample_weight is None else (self.sample_weight.dtype, self.sample_weight.tolist())
        return (f"Case(metric={self.metric!r}, params={self.params}, from_logits={self.from_logits}, "
                f"y_true={self.y_true.dtype}{list(self.y_true.shape)} {self.y_true.tolist()}, "
                f"y_pred={self.y_pred.dtype}{list(self.y_pred.shape)} {self.y_pred.tolist()}, sample_weight={w})")


def _other_length(n: int) -> st.SearchStrategy[int]:
    return st.integers(0, N_MAX - 1).map(lambda m: m if m < n else m + 1)  # any length but n


@st.composite
def _shapes(draw: Any, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    layout = draw(st.sampled_from(["flat", "flat", "column", "wide"]))
    fine = st.just((n, 2)) if layout == "wide" else st.sampled_from([(n,), (n, 1)])
    true_shape, pred_shape = draw(fine), draw(fine)
    if draw(st.integers(0, 4)) == 0:  # a shape fault on one side or both
        m = draw(_other_length(n))
        bad = st.sampled_from([(m,), (m, 1), (), (n,) if layout == "wide" else (n, 2)])
        side = draw(st.sampled_from(["y_true", "y_pred", "both"]))
        if side != "y_pred":
            true_shape = draw(bad)
        if side != "y_true":
            pred_shape = draw(bad)
    return true_shape, pred_shape


def _corrupt(draw: Any, a: np.ndarray, values: list[float]) -> np.ndarray:
    """``a`` with one element replaced by one of ``values``, one time in five (never when empty)."""
    if a.size and values and draw(st.integers(0, 4)) == 0:
        a = a.copy()
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(values))
    return a


@st.composite
def cases(draw: Any) -> Case:
    n = draw(st.integers(0, N_MAX))
    true_shape, pred_shape = draw(_shapes(n))
    metric, params = draw(st.sampled_from(METRICS))
    from_logits = draw(st.booleans())

    label_dtype = draw(st.sampled_from(LABEL_DTYPES))
    y = draw(hnp.arrays(np.int8, true_shape, elements=st.integers(0, 1)))
    if label_dtype == "bool":
        y = y.astype(bool)
    else:
        floating = label_dtype.startswith("float")
        y = _corrupt(draw, y.astype(label_dtype), [2, -1] + ([0.5, math.nan, math.inf, -math.inf] if floating else []))

    pred_dtype = draw(st.sampled_from(PRED_DTYPES))
    if pred_dtype in ("int64", "bool"):
        p = draw(hnp.arrays(np.int8, pred_shape, elements=st.integers(0, 1))).astype(pred_dtype)
    elif from_logits:
        z = st.one_of(st.sampled_from([0.0, 30.0, -30.0, 1e4, -1e4]), st.floats(-1e4, 1e4))
        p = _corrupt(draw, draw(hnp.arrays(np.float64, pred_shape, elements=z)).astype(pred_dtype),
                     [math.nan, math.inf, -math.inf])
    else:
        prob = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0))
        p = _corrupt(draw, draw(hnp.arrays(np.float64, pred_shape, elements=prob)).astype(pred_dtype),
                     [math.nan, math.inf, -math.inf, 1.5, -0.25, 1e4])

    w = None
    weight_kind = draw(st.sampled_from(["none", "none", "none", "like_pred", "leading", "column", "wrong"]))
    if weight_kind != "none":
        lead = pred_shape[:1] or (n,)
        w_shape = {
            "like_pred": pred_shape,
            "leading": lead,
            "column": (*lead, 1),
            "wrong": draw(st.sampled_from([(draw(_other_length(n)),), (), (n, 3)])),
        }[weight_kind]
        all_zero = draw(st.integers(0, 7)) == 0  # every weight 0: the 0/0 conventions
        elements = st.just(0.0) if all_zero else st.floats(0.0, 3.0)
        w = draw(hnp.arrays(np.float64, w_shape, elements=elements)).astype(draw(st.sampled_from(["float32",
                                                                                                  "float64"])))
        w = _corrupt(draw, w, [-1.0, math.nan])
    return Case(y, p, w, from_logits, metric, params)


# ---------------------------------------------------------------- the oracle


@dataclass(frozen=True)
class Fault:
    error: type[Exception]
    args: tuple[str, ...]  # the core's names of the arguments at fault (the message may name any)
    static: bool  # found from shapes and dtypes alone (so also under jit)
    what: str


def _drop_trailing_one(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[:-1] if len(shape) >= 2 and shape[-1] == 1 else shape


def faults(case: Case, *, int_pred_ok: bool = False, casts_pred: bool = False) -> list[Fault]:
    """What is wrong with ``case``, from the documented conventions (empty: a valid call)."""
    found = []
    y, p, w = case.y_true, case.y_pred, case.sample_weight
    pred_floating = p.dtype.kind == "f"
    if not pred_floating and not casts_pred and not (int_pred_ok and not case.from_logits):
        found.append(Fault(TypeError, ("y_pred",), True, "y_pred dtype"))
    a, b = _drop_trailing_one(y.shape), _drop_trailing_one(p.shape)
    if not a or not b or a != b:
        found.append(Fault(ValueError, ("y_true", "y_pred"), True, "shapes"))
    elif math.prod(a) == 0:
        found.append(Fault(ValueError, ("y_true", "y_pred"), True, "empty"))
    if w is not None:
        c = _drop_trailing_one(w.shape)
        if not (c == b or (len(c) == 1 and len(b) >= 2 and c == b[:1])):
            found.append(Fault(ValueError, ("sample_weight",), True, "sample_weight shape"))
        if not np.all(w >= 0):
            found.append(Fault(ValueError, ("sample_weight",), False, "sample_weight values"))
    if not np.all((y == 0) | (y == 1)):
        found.append(Fault(ValueError, ("y_true",), False, "y_true values"))
    if not case.from_logits and not np.all((p >= 0) & (p <= 1)):
        found.append(Fault(ValueError, ("y_pred",), False, "y_pred values"))
    return found


def nan_logits(case: Case) -> bool:
    """NaN logits: the one documented input that may give a NaN loss."""
    return case.from_logits and case.y_pred.dtype.kind == "f" and bool(np.isnan(case.y_pred).any())


def _names_any(message: str, backend: str, fault: Fault) -> bool:
    names = [name for arg in fault.args for name in NAMES[backend][arg]]
    return any(re.search(rf"\b{name}\b", message) for name in names)


def check_error(error: Exception, found: list[Fault], backend: str, case: Case) -> None:
    """``error`` is one of the documented types and names an argument at fault."""
    assert found, f"a valid input raised {type(error).__name__}: {error}\n{case!r}"
    message = str(error)
    fitting = [f for f in found if type(error) is f.error and _names_any(message, backend, f)]
    assert fitting, (f"{type(error).__name__}({message!r}) fits none of the faults "
                     f"{[(f.error.__name__, f.what) for f in found]}\n{case!r}")
    event(f"outcome: {type(error).__name__} for {fitting[0].what}")


def call_or_error(call: Any, found: list[Fault], backend: str, case: Case) -> Any:
    """``call()``'s result, or ``None`` once its documented error has been checked."""
    try:
        result = call()
    except (ValueError, TypeError) as error:
        check_error(error, found, backend, case)
        return None
    assert not found, (f"no error for the faults {[(f.error.__name__, f.what) for f in found]}, "
                       f"got {result!r}\n{case!r}")
    event("outcome: NaN logits" if nan_logits(case) else "outcome: valid")
    for feature, present in _features(case).items():
        if present:
            event(f"valid call with {feature}")
    return result


def _features(case: Case) -> dict[str, bool]:
    p, w = case.y_pred, case.sample_weight
    floating = p.dtype.kind == "f"
    return {
        "float16 y_pred": p.dtype == np.float16,
        "infinite logits": case.from_logits and floating and bool(np.isinf(p).any()),
        "probabilities 0 or 1": not case.from_logits and bool(((p == 0) | (p == 1)).any()),
        "(n, 2) samples": p.ndim == 2 and p.shape[1] == 2,
        "one class only": bool(np.all(case.y_true == case.y_true.flat[0])) if case.y_true.size else False,
        "all-zero sample_weight": w is not None and w.size > 0 and not w.any(),
    }


def check_loss(loss: Any, case: Case) -> None:
    value = np.asarray(loss)
    assert value.shape == (), f"loss of shape {value.shape}\n{case!r}"
    value = float(value)
    if math.isnan(value) and nan_logits(case):
        return
    assert math.isfinite(value) and -TOL <= value <= 1 + TOL, f"loss {value}\n{case!r}"


def check_grad(grad: Any, case: Case) -> None:
    assert grad is not None, f"no gradient\n{case!r}"
    grad = np.asarray(grad, dtype=np.float64)
    assert grad.shape == case.y_pred.shape, f"gradient of shape {grad.shape}, y_pred {case.y_pred.shape}"
    if not nan_logits(case):
        assert np.isfinite(grad).all(), f"gradient {grad.tolist()}\n{case!r}"


# ---------------------------------------------------------------- NumPy (the core)


@pytest.mark.backend("numpy")
@settings(max_examples=300, **SETTINGS)
@given(case=cases())
def test_numpy_core_gives_a_named_error_or_a_finite_loss(case):
    kwargs = {"from_logits": case.from_logits, "sample_weight": case.sample_weight}
    found = faults(case)
    loss = call_or_error(lambda: al.anyloss(case.y_true, case.y_pred, case.metric, **kwargs, **case.params),
                         found, "numpy", case)
    if loss is not None:
        check_loss(loss, case)

    counts = call_or_error(lambda: al.soft_confusion(case.y_true, case.y_pred, **kwargs), found, "numpy", case)
    if counts is not None and not nan_logits(case):
        values = np.array([float(c) for c in counts])
        assert np.isfinite(values).all() and (values >= -TOL).all(), f"counts {values}\n{case!r}"
        samples = math.prod(_drop_trailing_one(case.y_pred.shape))
        w = case.sample_weight
        total = samples if w is None else float(w.astype(np.float64).sum()) * samples / w.size
        assert values.sum() == pytest.approx(total, rel=1e-5, abs=1e-5), f"counts {values}\n{case!r}"

    found = faults(case, int_pred_ok=True)  # the hard score also takes 0/1 decisions
    value = call_or_error(lambda: al.score(case.metric, case.y_true, case.y_pred, **kwargs, **case.params),
                          found, "numpy", case)
    if value is not None:
        value = float(value)
        assert math.isfinite(value) and -TOL <= value <= 1 + TOL, f"score {value}\n{case!r}"


# ---------------------------------------------------------------- PyTorch


@pytest.mark.backend("torch")
@settings(max_examples=400, **SETTINGS)
@given(case=cases(), module=st.booleans())
def test_torch_gives_a_named_error_or_a_finite_loss_and_gradient(case, module):
    import torch

    import anyloss_torch

    floating = case.y_pred.dtype.kind == "f"
    input = torch.tensor(case.y_pred, requires_grad=floating)
    target = torch.tensor(case.y_true)
    weight = None if case.sample_weight is None else torch.tensor(case.sample_weight)
    if module:
        loss_fn = anyloss_torch.AnyLoss(case.metric, from_logits=case.from_logits, **case.params)
        call = lambda: loss_fn(input, target, weight)  # noqa: E731
    else:
        call = lambda: anyloss_torch.anyloss(input, target, case.metric, weight=weight,  # noqa: E731
                                             from_logits=case.from_logits, **case.params)
    loss = call_or_error(call, faults(case), "torch", case)
    if loss is None:
        return
    check_loss(loss.detach(), case)
    loss.backward()
    check_grad(input.grad, case)


# ---------------------------------------------------------------- JAX


@pytest.mark.backend("jax")
@settings(max_examples=100, **SETTINGS)
@given(case=cases(), jit=st.integers(0, 2))
def test_jax_gives_a_named_error_or_a_finite_loss_and_gradient(case, jit):
    import jax

    import anyloss_jax

    # On the CPU, where eager calls check values (on an accelerator they skip them, as torch's cases do there).
    cpu = jax.devices("cpu")[0]
    logits, labels = jax.device_put(case.y_pred, cpu), jax.device_put(case.y_true, cpu)
    weight = None if case.sample_weight is None else jax.device_put(case.sample_weight, cpu)

    def loss_of(logits: Any, labels: Any, weight: Any) -> Any:
        return anyloss_jax.anyloss(logits, labels, case.metric, from_logits=case.from_logits,
                                   sample_weight=weight, **case.params)

    found = faults(case)
    loss = call_or_error(lambda: loss_of(logits, labels, weight), found, "jax", case)
    if loss is not None:
        check_loss(loss, case)
        value, grad = jax.value_and_grad(loss_of)(logits, labels, weight)
        check_loss(value, case)
        check_grad(grad, case)
    if jit:  # one example in three stays eager: each jit compiles afresh
        return
    # Under jit the value checks are skipped by design: only the structural faults raise.
    static = [f for f in found if f.static]
    try:
        if static or found:
            jax.jit(loss_of)(logits, labels, weight)
            assert not static, f"no error under jit for {[f.what for f in static]}\n{case!r}"
            return
        value, grad = jax.jit(jax.value_and_grad(loss_of))(logits, labels, weight)
    except (ValueError, TypeError) as error:
        check_error(error, static, "jax", case)
        return
    check_loss(value, case)
    check_grad(grad, case)
    if not nan_logits(case):
        np.testing.assert_allclose(float(value), float(loss), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- Keras (on its active backend)


def _keras_value_and_grad(loss_fn: Any, case: Case, backend: str) -> tuple[Any, Any]:
    """The loss and (for floating ``y_pred``) its gradient on the running Keras backend, as NumPy."""
    floating = case.y_pred.dtype.kind == "f"
    y, w = case.y_true, case.sample_weight
    if backend == "tensorflow":
        import tensorflow as tf

        p = tf.constant(case.y_pred)
        with tf.GradientTape() as tape:
            if floating:
                tape.watch(p)
            loss = loss_fn(y, p, w)
        return loss.numpy(), tape.gradient(loss, p).numpy() if floating else None
    if backend == "torch":
        import torch

        p = torch.tensor(case.y_pred, requires_grad=floating)
        loss = loss_fn(y, p, w)
        if floating:
            loss.backward()
        return loss.detach().numpy(), None if p.grad is None else p.grad.numpy()
    # JAX: the eager call decides errors; the traced one (value checks skipped) gives the gradient.
    loss = np.asarray(loss_fn(y, case.y_pred, w))
    if not floating:
        return loss, None
    import jax
    import jax.numpy as jnp

    return loss, np.asarray(jax.grad(lambda p: loss_fn(y, p, w))(jnp.asarray(case.y_pred)))


@pytest.mark.backend("keras")
@settings(max_examples=KERAS_EXAMPLES, **SETTINGS)
@given(case=cases())
def test_keras_gives_a_named_error_or_a_finite_loss_and_gradient(case):
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (before TensorFlow, in one process)
    import keras

    import anyloss_keras

    backend = keras.backend.backend()
    loss_fn = anyloss_keras.AnyLoss(metric=case.metric, from_logits=case.from_logits, **case.params)
    result = call_or_error(lambda: _keras_value_and_grad(loss_fn, case, backend),
                           faults(case, casts_pred=True), "keras", case)
    if result is None:
        return
    loss, grad = result
    check_loss(loss, case)
    if case.y_pred.dtype.kind == "f":
        check_grad(grad, case)
