"""The value checks' fast path (one fused pass, the same verdicts and messages) and ``anyloss speed``'s new rows.

The checks' reference is NumPy's ``(y == 0) | (y == 1)`` in float64 on the same
values (an independent formula), over special values and over every float32 bit
pattern near 0 and 1; the speed rows are checked for structure and finite positive
ratios only, never against timing thresholds.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from conftest import ACTIVE, requires

import anyloss_core as al
from anyloss_core._fast_paths import fast_paths

SPECIAL = [0.0, -0.0, 1.0, 0.5, 2.0, -1.0, math.nan, math.inf, -math.inf, 1e-45, -1e-45, 1e-30,
           1 - 2**-24, 1 + 2**-23, 1 - 2**-53, 3e38, -3e38, 2**24 + 1.0]


def _reference_binary(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.float64)
    return (v == 0) | (v == 1)


def _checks(xp):
    """The value checks registered for ``xp`` (importing anyloss_torch registers torch's fused ones)."""
    import anyloss_torch  # noqa: F401

    return fast_paths(xp)


def _float32_patterns() -> np.ndarray:
    """Every float32 whose bits lie within 2**18 of 1.0's, and the 2**18 smallest positive ones (denormals)."""
    one = np.array(1.0, np.float32).view(np.int32)
    near_one = np.arange(one - 2**18, one + 2**18, dtype=np.int32).view(np.float32)
    tiny = np.arange(0, 2**18, dtype=np.int32).view(np.float32)
    return np.concatenate([near_one, tiny, -tiny])


@requires("torch")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_fused_label_check_agrees_with_numpy_on_special_values(dtype):
    import array_api_compat.torch as xp
    import torch

    for value in SPECIAL:
        y = torch.tensor([0.0, 1.0, value], dtype=getattr(torch, dtype))
        expected = bool(_reference_binary(y.numpy()).all())
        assert _checks(xp).all_binary(y, xp) is expected, value
        assert _checks(xp).all_in_unit_interval(y, xp) is bool(((y >= 0) & (y <= 1)).all()), value
        assert _checks(xp).all_non_negative(y, xp) is bool((y >= 0).all()), value


@requires("torch")
def test_torch_fused_label_check_agrees_with_numpy_per_element_near_0_and_1():
    import array_api_compat.torch as xp
    import torch

    values = _float32_patterns()
    expected = _reference_binary(values)
    # Per element: one fused check of [0, 1, v] for each v, in one vectorised go via the check's own expression,
    # and the public check on the binary subset and on each non-binary chunk.
    y = torch.from_numpy(values)
    assert _checks(xp).all_binary(y[torch.from_numpy(expected)], xp)
    for chunk in np.array_split(np.flatnonzero(~expected), 64):
        assert not _checks(xp).all_binary(y[torch.from_numpy(chunk)], xp)
    # The exact predicate the fast path relies on, element by element.
    residual = torch.addcmul(y, y, y, value=-1.0)
    assert torch.equal(residual == 0, torch.from_numpy(expected))


@requires("torch")
@pytest.mark.parametrize("position", [0, 63, 64, 500, 999])
@pytest.mark.parametrize("bad", [0.5, math.nan, math.inf, -1.0])
def test_torch_label_check_by_blocks_finds_a_bad_label_anywhere(monkeypatch, position, bad):
    import array_api_compat.torch as xp
    import torch

    import anyloss_torch._fast_paths as torch_fast

    monkeypatch.setattr(torch_fast, "_BLOCK", 64)  # 1000 labels: 15 full blocks and a partial one
    monkeypatch.setattr(torch_fast, "_BLOCKED_ABOVE", 256)
    y = (torch.arange(1000) % 7 == 0).float()
    assert _checks(xp).all_binary(y, xp)
    y[position] = bad
    assert not _checks(xp).all_binary(y, xp)


#: aten ops that launch no kernel over the data (views, reading a 0-d result back).
_NO_KERNEL = ("detach", "_local_scalar_dense", "alias", "unbind", "select", "view", "slice")


@requires("torch")
def test_torch_label_check_is_one_fused_pass():
    import array_api_compat.torch as xp
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    y = (torch.arange(1000) % 3 == 0).float().requires_grad_()
    with Ops() as ops:
        assert _checks(xp).all_binary(y, xp)
    heavy = [name for name in ops.names if name not in _NO_KERNEL]
    assert heavy == ["addcmul", "aminmax"]  # one elementwise kernel, one reduction; no boolean arrays
    p = torch.rand(1000)
    with Ops() as ops:
        assert _checks(xp).all_in_unit_interval(p, xp)
    assert [n for n in ops.names if n not in _NO_KERNEL] == [
        "aminmax"]


@requires("torch")
@pytest.mark.parametrize(
    "labels,message",
    [
        ([0.0, math.nan, 1.0], "^y_true contains NaN$"),
        ([0.0, math.inf, 1.0], "binary labels"),
        ([0.0, 0.5, 1.0], "binary labels"),
        ([0.0, -1.0, 1.0], "binary labels"),
        ([0, 2, 1], "binary labels"),
    ],
)
def test_torch_loss_rejects_bad_labels_with_the_same_messages(labels, message):
    import torch

    import anyloss_torch

    logits = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=message):
        anyloss_torch.F1Loss()(logits, torch.tensor(labels))
    anyloss_torch.F1Loss(validate=False)(logits, torch.tensor(labels, dtype=torch.float32))  # no check


@requires("torch")
def test_torch_bool_and_negative_zero_labels_pass_and_equal_float_labels():
    import torch

    import anyloss_torch

    logits = torch.tensor([-1.0, 0.5, 2.0, -0.3])
    as_float = anyloss_torch.F1Loss()(logits, torch.tensor([0.0, 1.0, 1.0, 0.0]))
    as_bool = anyloss_torch.F1Loss()(logits, torch.tensor([False, True, True, False]))
    with_negative_zero = anyloss_torch.F1Loss()(logits, torch.tensor([-0.0, 1.0, 1.0, -0.0]))
    assert float(as_bool) == float(as_float) == float(with_negative_zero)


@requires("torch")
def test_torch_probability_and_weight_checks_keep_their_messages():
    import torch

    y = torch.tensor([0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        al.anyloss(y, torch.tensor([0.2, 1.5, 0.7]))
    with pytest.raises(ValueError, match="^y_pred contains NaN$"):
        al.anyloss(y, torch.tensor([0.2, math.nan, 0.7]))
    with pytest.raises(ValueError, match="^sample_weight contains NaN$"):
        al.anyloss(y, torch.tensor([0.2, 0.5, 0.7]), sample_weight=torch.tensor([1.0, math.nan, -1.0]))
    with pytest.raises(ValueError, match="non-negative"):
        al.anyloss(y, torch.tensor([0.2, 0.5, 0.7]), sample_weight=torch.tensor([1.0, -0.5, 1.0]))
    # Probabilities of exactly 0 and 1 and zero weights pass.
    al.anyloss(y, torch.tensor([0.0, 1.0, 0.7]), sample_weight=torch.tensor([0.0, 1.0, 2.0]))


@requires("numpy")
def test_numpy_checks_unchanged_and_bool_labels_skip_the_check():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.1, 0.8, 0.6, 0.3])
    reference = al.anyloss(y.astype(float), p)
    assert float(al.anyloss(y.astype(bool), p)) == float(reference)
    with pytest.raises(ValueError, match="^y_true contains NaN$"):
        al.anyloss(np.array([0.0, np.nan, 1.0, 0.0]), p)
    with pytest.raises(ValueError, match="binary labels"):
        al.anyloss(np.array([0.0, np.inf, 1.0, 0.0]), p)


# --- anyloss speed: measuring rules and the new rows ---------------------------------------------


def test_interleaved_warms_up_then_alternates_the_order():
    from anyloss_bench.speed import interleaved

    calls: list[int] = []
    fns = [lambda i=i: calls.append(i) for i in range(3)]
    timings = interleaved(fns, repeats=4, warmup=2)
    assert calls[:6] == [0, 0, 1, 1, 2, 2]
    assert calls[6:] == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0]
    for t in timings:
        assert 0 < t["p10"] <= t["median"]


def test_percentile_matches_numpy():
    from anyloss_bench.speed import percentile

    values = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 7.0]
    assert percentile(values, 10) == pytest.approx(float(np.percentile(values, 10)))
    assert percentile(values, 10) < float(np.median(values))


def _args(**kw):
    import argparse

    base = {"sizes": None, "call_sizes": None, "batch_sizes": None, "repeats": None, "call_repeats": None,
            "train_epochs": None, "epoch_repeats": None, "train_samples": None, "quick": False}
    return argparse.Namespace(**{**base, **kw})


def test_speed_settings_defaults_quick_and_scaling():
    from anyloss_bench.data import UsageError
    from anyloss_bench.speed import _settings

    full = _settings(_args())
    assert full["sizes"] == [1000, 100_000, 1_000_000, 10_000_000]
    assert full["call_sizes"] == [32, 256, 1024] and full["batch_sizes"] == [32, 256]
    assert full["call_repeats"] == 300 and full["train_epochs"] == 10
    quick = _settings(_args(quick=True, call_sizes="32,64"))
    assert quick["sizes"] == [1000] and quick["call_sizes"] == [32, 64] and quick["epoch_repeats"] == 0
    scaled = _settings(_args(repeats=3))
    assert scaled["call_repeats"] == 30 and scaled["train_epochs"] == 1
    skipped = _settings(_args(call_sizes="none", batch_sizes="none"))
    assert skipped["call_sizes"] == [] and skipped["batch_sizes"] == []
    for bad, words in [(_args(call_sizes="32,x"), "--call-sizes"), (_args(batch_sizes="0"), "--batch-sizes"),
                       (_args(batch_sizes="9000"), "training samples"), (_args(train_epochs=-1), "--train-epochs")]:
        with pytest.raises(UsageError, match=words):
            _settings(bad)


def _session_group() -> str | None:
    if "torch" in ACTIVE:
        return "torch"
    if "jax" in ACTIVE:
        return "jax"
    if "keras" in ACTIVE:
        return "keras-" + os.environ.get("KERAS_BACKEND", "tensorflow")
    return None


@pytest.mark.skipif(_session_group() is None, reason="no framework backend in this session")
def test_speed_calls_and_training_rows_in_process(monkeypatch):
    """Every new row of the session's group, eager modes only (no compilation: fast), tiny sizes."""
    from anyloss_bench import speed

    group = _session_group()
    eager = {"torch": ("torch eager",), "jax": ("jax eager",), "keras-tensorflow": ("keras-tf eager",),
             "keras-jax": ("keras-jax jit",), "keras-torch": ("keras-torch eager",)}[group]
    monkeypatch.setitem(speed.GROUPS, group, tuple(m for m in speed.GROUPS[group] if m in eager) or
                        speed.GROUPS[group][:1])
    monkeypatch.setitem(speed.CALL_MODES, group, eager)
    if group == "torch":
        monkeypatch.setitem(speed.TRAIN_MODES, group, ("torch eager",))
    result = speed.run_group(group, "f1", [300], 2, 0, call_sizes=[32], call_repeats=3, batch_sizes=[32],
                             train_epochs=1, train_samples=64)
    validating = [m for m in eager if m in speed.VALIDATING]
    assert {(r["mode"], r["variant"]) for r in result["calls"]} == (
        {(m, "default") for m in eager} | {(m, "validate=False") for m in validating})
    for rec in result["calls"] + result["steps"] + result["training"]:
        assert rec["anyloss_" + ("us" if "anyloss_us" in rec else "ms")] > 0
        assert math.isfinite(rec["ratio_bce"]) and rec["ratio_bce"] > 0
        assert rec["ratio_bce_median"] > 0
    for rec in result["calls"]:
        assert rec["ratio_bce"] == pytest.approx(rec["anyloss_us"] / rec["bce_us"])
        assert rec["target_bce"] == speed.call_target(rec["mode"])
    (train,) = result["training"]
    assert train["batch_size"] == 32 and train["steps_per_epoch"] == 2 and train["epochs"] == 1
    assert train["ratio_bce"] == pytest.approx(train["anyloss_ms"] / train["bce_ms"])
    if any(m in speed.VALIDATING for m in speed.GROUPS[group]):
        assert {r["variant"] for r in result["steps"]} == {"default", "validate=False"}
    # The versions the figures were measured with, as the frameworks report their own.
    framework = {"torch": "torch", "jax": "jax", "keras-tensorflow": "tensorflow", "keras-jax": "keras",
                 "keras-torch": "keras"}[group]
    module = __import__(framework)
    assert result["versions"][framework] == module.__version__
    report = {"metric": "f1", "sizes": [300], "repeats": 2, "call_repeats": 3, "train_epochs": 1,
              "train_samples": 64, "machine": {"cpus": 2, "load_before": [1.0, 1.0, 1.0], "cpu": "Test CPU 9000",
                                               "python": "3.11.7"}, "groups": [result]}
    text = speed.format_report(report)
    assert "one call" in text and "training epoch" in text and "load average" in text
    for m in eager:
        assert m in text
    assert f"host: Test CPU 9000, Python 3.11.7; {group}: " in text
    assert f"{framework} {module.__version__}" in text.splitlines()[-1]


def test_the_report_names_the_cpu_model(tmp_path):
    from anyloss_bench.speed import cpu_model

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n"
                       "\nprocessor\t: 1\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n")
    assert cpu_model(str(cpuinfo)) == "AMD EPYC 9R14 96-Core Processor"
    # No model name (some ARM kernels), or no file (macOS, Windows): the platform's own name, never empty.
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")
    assert cpu_model(str(cpuinfo)) and cpu_model(str(tmp_path / "missing"))


def test_short_training_epochs_are_repeated_until_their_time_is_spent():
    from anyloss_bench.speed import TRAIN_EPOCHS_CAP, _interleaved_epochs, epoch_count

    assert epoch_count(6, 0.0, 0.001) == 6  # --train-seconds 0: exactly the epochs asked for
    assert epoch_count(6, 1.0, 0.5) == 6  # long epochs: the epochs asked for
    assert epoch_count(6, 1.0, 0.125) == 8  # a second of 125 ms epochs
    assert epoch_count(6, 1.0, 1e-4) == 6 * TRAIN_EPOCHS_CAP
    assert epoch_count(6, 1.0, 0.0) == epoch_count(6, 1.0, float("nan")) == 6  # no usable epoch time: as asked
    assert epoch_count(6, float("inf"), 0.5) == 6 * TRAIN_EPOCHS_CAP
    calls = []

    def training(name, seconds):  # an epoch that reports its own duration (fixed; the first, tracing, 2 s)
        def epoch(e):
            calls.append((name, e))
            return 2.0 if e == 0 else seconds
        return epoch

    a, b = _interleaved_epochs(training("a", 0.0625), training("b", 0.125), 3, seconds=1.0)
    assert len(a) == len(b) == 8  # the slower loss's last warm-up epoch sets the count: 1 s / 0.125 s
    assert set(a) == {0.0625} and set(b) == {0.125}
    # Two warm-up rounds, then the two losses interleaved with the order reversed every other epoch.
    assert calls[:8] == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2), ("b", 3), ("a", 3)]
    a, b = _interleaved_epochs(training("a", 0.0625), training("b", 0.125), 3)
    assert len(a) == len(b) == 3  # no time asked for: the epochs asked for


def test_speed_report_flags_call_and_training_misses():
    from anyloss_bench.speed import format_report

    def call(mode, n, ratio, variant="default"):
        return {"mode": mode, "n": n, "variant": variant, "anyloss_us": 100 * ratio, "bce_us": 100.0,
                "ratio_bce": ratio, "target_bce": 2.0}

    report = {"metric": "f1", "sizes": [1000], "repeats": 1, "groups": [{
        "group": "torch", "memory": {}, "epochs": [],
        "steps": [{"mode": "torch eager", "n": 1000, "variant": "default", "ratio_bce": 1.2, "ratio_copy": 3.0,
                   "target_bce": 1.5}],
        "calls": [call("torch eager", 32, 2.5), call("torch eager", 256, 2.5),
                  call("torch eager", 32, 1.5, "validate=False")],
        "training": [{"mode": "torch eager", "batch_size": 32, "anyloss_ms": 11.0, "bce_ms": 10.0,
                      "ratio_bce": 1.1, "target_bce": 1.05, "epochs": 17}],
    }]}
    lines = format_report(report).splitlines()
    default_row = next(line for line in lines if line.startswith("torch eager ") and "/100" in line
                       and "validate" not in line)
    assert "2.50x! 250/100" in default_row and "2.50x 250/100" in default_row  # flagged at the smallest n only
    assert any(line.startswith("torch eager validate=False") and "1.50x 150/100" in line for line in lines)
    assert any("batch   32" in line and "1.10x" in line and line.rstrip().endswith("MISS   (17 epochs)")
               for line in lines)  # each row with the number of epochs it timed (more where they are short)
