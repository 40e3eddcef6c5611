"""``--protocol paper-code`` (the notebook's MLP carry-over) and ``--protocol tuned`` (inner-validated rates)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("optax")
jax = pytest.importorskip("jax")

from anyloss_bench import protocols  # noqa: E402
from anyloss_bench.data import pad_folds  # noqa: E402


def _data(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 4 == 0).astype(np.int64)
    X = rng.normal(size=(n, 3)) + y[:, None]
    return X, y, list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))


def _same(a: dict, b: dict) -> bool:
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


# --- paper-code ------------------------------------------------------------------------------------


def test_paper_code_carries_weights_over_losses_and_folds():
    X, y, splits = _data()
    folds = pad_folds(X, y, splits)
    fits: list[tuple[str, int, dict, dict]] = []
    losses = ("mse", "bce", "accuracy", "f1")
    chains = (("mse",), ("bce", "accuracy", "f1"))
    def record(loss, f, before, after):
        fits.append((loss, f, before, after))

    logits = protocols.paper_code_mlp_logits(folds, losses, lrs=dict.fromkeys(losses, 1e-2),
                                             batch_sizes=dict.fromkeys(losses, 10), epochs=2, chains=chains,
                                             record=record)
    assert [(loss, f) for loss, f, _, _ in fits] == [("mse", f) for f in range(3)] + [
        (loss, f) for f in range(3) for loss in chains[1]]
    chain = [fit for fit in fits if fit[0] != "mse"]
    for (_, _, _, after), (_, _, before, _) in zip(chain, chain[1:], strict=False):
        assert _same(after, before)  # each fit starts where the previous one (loss, or fold) left the model
    mse = [fit for fit in fits if fit[0] == "mse"]
    assert _same(mse[0][3], mse[1][2])  # MSE's own model, carried over the folds
    assert not _same(chain[0][2], chain[1][2])  # the second loss does not start from the initial weights
    # A fresh start (every loss its own chain) gives other weights and other predictions.
    fresh = protocols.paper_code_mlp_logits(folds, ("f1",), lrs={"f1": 1e-2}, batch_sizes={"f1": 10}, epochs=2,
                                            chains=(("f1",),))
    assert not np.allclose(fresh["f1"][0], logits["f1"][0])


def test_paper_code_counts_n_as_the_training_fold_size():
    import jax.numpy as jnp

    import anyloss_core as al

    z, y, m = jnp.array([3.0, -3.0, 2.0, -2.0]), jnp.array([1.0, 0.0, 0.0, 0.0]), jnp.ones(4)
    plain = al.soft_confusion(y, z, from_logits=True, xp=jnp)
    c = protocols.notebook_confusion(z, y, m, 100.0)
    np.testing.assert_allclose(float(c.tn), float(plain.tn) + 96.0, rtol=1e-6)
    np.testing.assert_allclose([float(c.tp), float(c.fp), float(c.fn)], [float(plain.tp), float(plain.fp),
                                                                         float(plain.fn)], rtol=1e-6)
    # The notebook's B-Acc formula with yl = 100.
    yh = jax.nn.sigmoid(73.0 * (jax.nn.sigmoid(z) - 0.5))
    syhy, sy, yl = float(jnp.sum(y * yh)), float(jnp.sum(y)), 100.0
    baccu = (yl * (syhy + sy) - sy * (float(jnp.sum(yh)) + sy)) / (2 * sy * (yl - sy))
    loss = protocols.paper_code_loss("balanced_accuracy")(z, y, m, yl)
    np.testing.assert_allclose(float(loss), 1.0 - baccu, rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda v: protocols.paper_code_loss("gmean")(v, y, m, yl))(z)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_paper_code_scores_and_predictions(monkeypatch):
    X, y, splits = _data()
    calls = []

    def fake(folds, losses, *, lrs, batch_sizes, epochs, seed):  # the chain's training, tested above
        calls.append((tuple(losses), batch_sizes))
        return {loss: np.where(np.arange(folds["Xv"].shape[1]) % 2, 1.0, -1.0)[None].repeat(3, 0) for loss in losses}

    monkeypatch.setattr(protocols, "paper_code_mlp_logits", fake)
    scores = protocols.paper_code_scores(X, y, ("mse", "bce", "f1"), {}, splits, ("f1",), epochs=2)
    assert calls[0][0] == ("mse", "bce", "f1")
    assert calls[0][1]["f2"] == calls[0][1]["f1"] == 2 and calls[0][1]["gmean"] == 20  # 5% / 50% of 40 rows
    assert set(scores) == {"mse", "bce", "f1"}
    assert all(len(v["f1"]) == 3 and all(0.0 <= s <= 1.0 for s in v["f1"]) for v in scores.values())
    np.testing.assert_array_equal(protocols.paper_code_predictions("mse", np.array([0.4, 0.6])), [0.0, 1.0])
    np.testing.assert_array_equal(protocols.paper_code_predictions("f1", np.array([-0.1, 0.1])), [0.0, 1.0])
    with pytest.raises(ValueError):
        protocols.paper_code_loss("wbce")


# --- tuned -----------------------------------------------------------------------------------------


def test_choose_lrs_picks_the_best_grid_point_per_fold():
    scores = np.array([[0.1, 0.9], [0.5, 0.2], [0.5, 0.3]])  # (grid, folds)
    np.testing.assert_array_equal(protocols.choose_lrs(scores, (1e-3, 1e-2, 1e-1)), [1e-2, 1e-3])  # ties: smaller


def test_tuned_uses_only_training_fold_rows_and_picks_the_best_rate():
    X, y, splits = _data(90)
    seen: list[tuple[set, set]] = []
    best = 3e-2

    def trainer(loss, arch, folds, lrs, *, epochs, batch_size, seed):
        F = folds["X"].shape[0]
        for f in range(F):  # (validation rows, training rows) of every fit
            seen.append((len(folds["y_val"][f]), int(folds["m"][f].sum())))
        # Perfect logits for the best rate, inverted ones for the others.
        sign = np.where(np.isclose(np.asarray(lrs), best), 1.0, -1.0)[:, None]
        out = np.zeros(folds["Xv"].shape[:2])
        for f in range(F):
            out[f, : len(folds["y_val"][f])] = sign[f] * (2.0 * folds["y_val"][f] - 1.0)
        return out

    grid = (1e-3, 1e-2, 3e-2)
    scores, chosen = protocols.tuned_scores(X, y, "slp", ["bce", "f1"], splits, ("f1",),
                                            epochs=1, batch_size=lambda loss, n: n, grid=grid, trainer=trainer)
    assert chosen == {"bce": [best] * 3, "f1": [best] * 3}
    assert all(s == 1.0 for v in scores.values() for s in v["f1"])
    # The inner splits hold only training-fold rows, 80/20.
    inner = protocols.inner_splits(y, splits, 0)
    for (tr, va), (itr, iva) in zip(splits, inner, strict=True):
        assert set(itr) | set(iva) == set(tr) and not set(itr) & set(iva)
        assert not (set(itr) | set(iva)) & set(va)
        assert len(iva) == pytest.approx(0.2 * len(tr), abs=1)
    # The grid fits train on 80% of the 60 training rows (48) and are scored on the other 12; the final fits
    # train on the whole training fold (60) and are scored on its validation fold (30).
    grid_fits = [s for s in seen if s == (12, 48)]
    assert len(grid_fits) == 2 * len(grid) * 3 and seen.count((30, 60)) == 2 * 3


def test_tuned_trainer_sees_only_training_rows(monkeypatch):
    """With the real engine: every row the tuning fits train or score on lies in the outer training fold."""
    X, y, splits = _data(60)
    import anyloss_bench.data as data_module

    rows: list[list] = []

    original = data_module.pad_folds

    def recording(X_, y_, pairs, *args, **kwargs):
        rows.append(pairs)
        return original(X_, y_, pairs, *args, **kwargs)

    monkeypatch.setattr(data_module, "pad_folds", recording)
    scores, chosen = protocols.tuned_scores(X, y, "slp", ["f1"], splits, ("f1",), epochs=3,
                                            batch_size=lambda loss, n: n, grid=(1e-2, 1e-1))
    inner_pairs = rows[0]
    for (tr, va), (itr, iva) in zip(splits, inner_pairs, strict=True):
        assert set(itr) <= set(tr) and set(iva) <= set(tr) and not set(iva) & set(va)
    assert rows[1] == splits
    assert all(v in (1e-2, 1e-1) for v in chosen["f1"])
    assert len(scores["f1"]["f1"]) == 3


def test_tuning_metric():
    assert protocols.tuning_metric("gmean") == "gmean"
    assert protocols.tuning_metric("balanced_accuracy") == "balanced_accuracy"
    assert protocols.tuning_metric("sol-f1") == "f1"
    for loss in ("mse", "bce", "wbce", "focal", "bce+threshold", "f2"):
        assert protocols.tuning_metric(loss) == "f1"


def test_train_folds_lr_one_rate_per_fold():
    X, y, splits = _data()
    folds = pad_folds(X, y, splits)
    a = protocols.train_folds_lr("bce", "slp", folds, np.array([1e-3, 1e-1, 1e-3]), epochs=5, batch_size=100, seed=0)
    b = protocols.train_folds_lr("bce", "slp", folds, np.array([1e-3, 1e-3, 1e-3]), epochs=5, batch_size=100, seed=0)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5)
    assert not np.allclose(a[1], b[1])


# --- the commands' dispatch ------------------------------------------------------------------------


def test_reproduce_dispatches_paper_code_and_tuned(tmp_path, monkeypatch):
    import json

    from anyloss_bench import cli
    from anyloss_bench import reproduce as paper
    from anyloss_bench.data import Dataset

    X, y, _ = _data(40)
    monkeypatch.setattr(paper, "load_dataset", lambda name, seed=0: Dataset(name, X, y, positive_class="1"))
    calls = []

    def fake(protocol, data, arch, losses, lrs, metrics, **kwargs):
        calls.append((protocol, arch, tuple(losses)))
        return {loss: {m: {"mean": 0.5, "std": 0.0} for m in metrics} for loss in losses}

    def fake_cv(data, losses, **kwargs):
        calls.append(("fresh", kwargs["model"], tuple(losses)))
        return {loss: {m: {"mean": 0.5, "std": 0.0} for m in paper.METRICS} for loss in losses}, {}

    monkeypatch.setattr(protocols, "reproduce_results", fake)
    monkeypatch.setattr(paper, "cross_validate", fake_cv)
    out = tmp_path / "rows.json"
    for protocol in ("paper-code", "tuned"):
        calls.clear()
        assert cli.main(["reproduce", "--arch", "mlp", "--folds", "2", "--protocol", protocol, "--json", str(out)]) == 0
        assert json.loads(out.read_text())["protocol"] == protocol
        own = [c for c in calls if c[0] == protocol]
        assert own and all(c[1] == "mlp" for c in own)
        if protocol == "paper-code":  # the strong baselines are not in the notebook: they train fresh
            assert all(set(c[2]) == set(paper.STRONG) for c in calls if c[0] == "fresh")
            assert not set(own[0][2]) & set(paper.STRONG)
        else:
            assert set(own[0][2]) == set(paper.LOSSES) and not [c for c in calls if c[0] == "fresh"]


def test_suite_dispatches_tuned_and_paper_code(monkeypatch):
    from anyloss_bench import suite

    X, y, _ = _data(40)
    seen = []

    def fake_tuned(X_, y_, arch, losses, splits, metrics, **kwargs):
        seen.append(("tuned", arch, tuple(losses)))
        return {loss: dict.fromkeys(metrics, [0.5]) for loss in losses}, {}

    def fake_code(X_, y_, losses, lrs, splits, metrics, **kwargs):
        seen.append(("paper-code", tuple(losses)))
        return {loss: dict.fromkeys(metrics, [0.25]) for loss in losses}

    monkeypatch.setattr(protocols, "tuned_scores", fake_tuned)
    monkeypatch.setattr(protocols, "paper_code_scores", fake_code)
    monkeypatch.setattr(suite, "train_folds", lambda loss, arch, folds, **kw: np.zeros(folds["Xv"].shape[:2]))
    scores = suite.evaluate_dataset(X, y, "slp", folds=2, epochs=1, protocol="tuned")
    assert seen[-1] == ("tuned", "slp", tuple(suite.LOSSES)) and set(scores) == set(suite.LOSSES)
    scores = suite.evaluate_dataset(X, y, "mlp", folds=2, epochs=1, protocol="paper-code")
    assert seen[-1] == ("paper-code", tuple(suite.PAPER_LOSSES))
    assert all(scores[loss]["f1"] == [0.25] for loss in suite.PAPER_LOSSES)  # BCE's fresh fit only feeds the threshold
    assert set(scores) == set(suite.LOSSES)
