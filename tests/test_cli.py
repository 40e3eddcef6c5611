"""The ``anyloss`` command: error paths, JSON schema, a fast smoke run per installed backend."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from conftest import ACTIVE  # noqa: E402

from anyloss_bench.cli import main  # noqa: E402

BACKEND_OF_SESSION = next((b for b in ("jax", "torch", "keras") if b in ACTIVE), None)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anyloss_bench.cli", *args], capture_output=True, text=True,
                          check=False)


@pytest.mark.parametrize(
    "args,words",
    [
        (["compare", "--csv", "/nonexistent.csv", "--target", "y"], ["no such file"]),
        (["compare", "--losses", "f1,f3"], ["unknown loss 'f3'"]),
        (["compare", "--dataset", "mnist"], ["unknown dataset 'mnist'"]),
        (["compare", "--folds", "1"], ["--folds"]),
        (["compare", "--model", "cnn"], ["invalid choice"]),
        (["compare", "--csv", "x.csv"], ["--target"]),
        (["compare", "--lr", "-1"], ["--lr must be a positive number, got -1"]),
        (["compare", "--lr", "nan"], ["--lr"]),
        (["compare", "--batch-size", "0"], ["--batch-size must be at least 1, got 0"]),
        (["compare", "--json", "/nonexistent/dir/out.json"], ["--json", "/nonexistent/dir does not exist"]),
        (["compare", "--plot", "/nonexistent/dir/curves.png"], ["--plot", "does not exist"]),
        (["compare", "--json", "/"], ["is a folder"]),
        (["compare", "--csv", "x.csv", "--target", "y", "--sep", ";;"], ["--sep must be one character"]),
        (["compare", "--positive", "benign"], ["positive class of --dataset breast_cancer is 'malignant'"]),
        (["compare", "--task", "multiclass", "--lr", "0"], ["--lr"]),
        (["reproduce", "--json", "/nonexistent/dir/rows.json"], ["/nonexistent/dir does not exist"]),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, words, capsys, monkeypatch):
    from anyloss_bench import common, compare, reproduce

    def no_training(*a, **k):
        raise AssertionError("trained before refusing the options")

    monkeypatch.setattr(compare, "cross_validate", no_training)  # option values are checked before any work
    monkeypatch.setattr(reproduce, "cross_validate", no_training)
    monkeypatch.setattr(common, "train", no_training)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err


def test_csv_errors(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,x,0\n2,y,1\n3,z,2\n")
    assert main(["compare", "--csv", str(path), "--target", "label"]) == 2
    err = capsys.readouterr().err
    assert "column 'label' has 3 classes (0, 1, 2), not two: use --task multiclass" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["compare", "--csv", str(path), "--target", "nope"]) == 2
    err = capsys.readouterr().err
    assert "column 'nope' not in" in err and "--sep" in err
    many = "\n".join(f"{i},id{i},{i % 2}" for i in range(150))
    path.write_text("a,b,label\n" + many + "\n")
    assert main(["compare", "--csv", str(path), "--target", "label"]) == 2
    assert "too many to one-hot encode" in capsys.readouterr().err


# --- reading CSV files (pandas) and the per-fold preprocessing (scikit-learn) ----------------------


def _rows(n: int = 40, sep: str = ",") -> list[str]:
    rng = np.random.default_rng(0)
    return [sep.join([f"{rng.normal():.3f}", rng.choice(["red", "blue"]), "pos" if i % 4 == 0 else "neg"])
            for i in range(n)]


def test_csv_with_a_utf8_bom(tmp_path):
    # Excel's "CSV UTF-8" starts the file with a BOM, which a plain reader glues to the first column's name.
    from anyloss_bench.data import load_csv

    path = tmp_path / "excel.csv"
    path.write_bytes(("\ufefflabel,x,color\n" + "\n".join(
        ",".join([r.split(",")[2], r.split(",")[0], r.split(",")[1]]) for r in _rows())).encode("utf-8"))
    data = load_csv(str(path), "label")
    assert list(data.X.columns) == ["x", "color"] and data.positive_class == "pos" and data.y.sum() == 10


def test_csv_with_semicolons_sniffed_or_given(tmp_path, capsys):
    from anyloss_bench.data import load_csv

    path = tmp_path / "semi.csv"
    path.write_text("x;color;label\n" + "\n".join(_rows(sep=";")) + "\n")
    data = load_csv(str(path), "label")
    assert list(data.X.columns) == ["x", "color"] and data.categorical == ("color",) and data.n_features == 3
    assert data.positive_class == "pos" and len(data.y) == 40
    assert load_csv(str(path), "label", sep=";").n_features == 3
    # A separator that is given is used as given: a wrong one says so, in one line.
    assert main(["compare", "--csv", str(path), "--target", "label", "--sep", ","]) == 2
    err = capsys.readouterr().err
    assert "column 'label' not in" in err and "separator ','" in err and len(err.strip().splitlines()) == 1
    tabs = tmp_path / "tabs.tsv"
    tabs.write_text("x\tcolor\tlabel\n" + "\n".join(_rows(sep="\t")) + "\n")
    assert load_csv(str(tabs), "label").n_features == 3


def test_na_tokens_keep_a_numeric_column_numeric(tmp_path):
    # One "n/a" among 374 numbers used to make the column categorical: "374 distinct values: too many".
    from anyloss_bench.data import UsageError, load_csv

    rng = np.random.default_rng(0)
    values = [f"{v:.4f}" for v in rng.normal(size=380)]
    for i, token in zip((3, 50, 100, 150, 200, 250), ("n/a", "NA", "", "?", "null", "NaN"), strict=True):
        values[i] = token
    path = tmp_path / "na.csv"
    path.write_text("age,label\n" + "\n".join(f"{v},{'a' if i % 5 else 'b'}" for i, v in enumerate(values)) + "\n")
    data = load_csv(str(path), "label")
    assert data.categorical == () and data.n_features == 1 and int(data.X["age"].isna().sum()) == 6
    train, val = np.arange(0, 300), np.arange(300, 380)
    X_tr, X_va = data.fold(train, val)
    assert np.isfinite(X_tr).all() and np.isfinite(X_va).all()  # imputed with the training fold's median
    age = data.X["age"].to_numpy()[train]
    filled = np.where(np.isnan(age), np.nanmedian(age), age)
    assert X_tr[:, 0] == pytest.approx((filled - filled.mean()) / filled.std())
    # A token that is not a missing-value marker is named, with what to do.
    values[7] = "n.a."
    path.write_text("age,label\n" + "\n".join(f"{v},{'a' if i % 5 else 'b'}" for i, v in enumerate(values)) + "\n")
    with pytest.raises(UsageError, match=r"column 'age' holds numbers but 1 cell is not \('n.a.'\); if they mean"):
        load_csv(str(path), "label")


def test_rows_without_a_target_are_dropped_and_counted(tmp_path):
    from anyloss_bench.data import load_csv

    path = tmp_path / "holes.csv"
    rows = _rows()
    rows[5] = rows[5].rsplit(",", 1)[0] + ","
    rows[9] = rows[9].rsplit(",", 1)[0] + ",NA"
    path.write_text("x,color,label\n" + "\n".join(rows) + "\n")
    data = load_csv(str(path), "label")
    assert data.dropped_rows == 2 and len(data.y) == len(data.X) == 38
    assert data.classes == ("neg", "pos")  # a missing target is not a third class


def test_positive_chooses_the_class_coded_1(tmp_path, capsys):
    from anyloss_bench.data import UsageError, load_csv

    path = tmp_path / "p.csv"
    path.write_text("x,label\n" + "\n".join(f"{i},{1 if i % 3 == 0 else 0}" for i in range(30)) + "\n")
    assert load_csv(str(path), "label").positive_class == "1"
    data = load_csv(str(path), "label", positive="0")
    assert data.positive_class == "0" and data.y.sum() == 20
    assert load_csv(str(path), "label", positive="1.0").positive_class == "1"
    with pytest.raises(UsageError, match="--positive 'maybe' is not a class"):
        load_csv(str(path), "label", positive="maybe")


def test_preprocessing_is_fitted_on_the_training_fold(tmp_path):
    from anyloss_bench.data import load_csv, load_dataset

    path = tmp_path / "leak.csv"
    lines = [f"{i if i < 30 else 1000 + i},{'red' if i % 2 else 'blue'},{i % 3 == 0}" for i in range(30)]
    lines += ["5,green,False", "7,,True"]  # a category the training fold never sees; a missing category
    path.write_text("x,color,label\n" + "\n".join(lines) + "\n")
    data = load_csv(str(path), "label")
    assert data.categories == (("blue", "green", "red"),) and data.n_features == 4
    train, val = np.arange(0, 20), np.arange(20, 32)
    X_tr, X_va = data.fold(train, val)
    assert X_tr.shape == (20, 3) and X_va.shape == (12, 3)  # x, blue, red: the training fold's categories
    assert X_tr[:, 0].mean() == pytest.approx(0, abs=1e-12) and X_tr[:, 0].std() == pytest.approx(1)
    assert X_va[10, 1:].tolist() == [0.0, 0.0]  # "green": unknown to the training fold
    assert X_va[11, 1:].sum() == 1.0  # missing: the training fold's most frequent category
    # A bundled dataset takes the same path, numeric only: the training fold's median, mean and std.
    bc = load_dataset("breast_cancer")
    X_tr, X_va = bc.fold(np.arange(300), np.arange(300, 393))
    mean, std = bc.X[:300].mean(0), bc.X[:300].std(0)
    assert np.allclose(X_va, (bc.X[300:] - mean) / std, rtol=0, atol=1e-12)


def test_no_traceback_from_a_subprocess():
    out = run_cli("compare", "--losses", "nope")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


@pytest.mark.skipif(BACKEND_OF_SESSION is None, reason="no framework backend in this session")
def test_smoke_run_writes_the_json_schema(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=120) > 1.0).astype(int)
    color = np.where(rng.uniform(size=120) < 0.5, "red", "blue")
    lines = ["f1,f2,f3,color,cls"] + [
        f"{a:.4f},{'' if i == 3 else f'{b:.4f}'},{c:.4f},{col},{'yes' if t else 'no'}"
        for i, ((a, b, c), col, t) in enumerate(zip(X, color, y, strict=True))
    ] + ["0.1,0.2,0.3,red,", "0.4,0.5,0.6,blue,n/a"]  # two rows without a target
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.json"
    code = main(["compare", "--csv", str(path), "--target", "cls", "--losses", "bce,f1,gmean",
                 "--folds", "2", "--epochs", "5", "--backend", BACKEND_OF_SESSION, "--json", str(out)])
    assert code == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert "n=120 (2 rows without a target dropped)" in head and "positive class 'yes'" in head
    report = json.loads(out.read_text())
    assert report["dataset"] == "data" and report["n_samples"] == 120 and report["n_features"] == 5
    assert report["positive_class"] == "yes" and report["dropped_missing_target"] == 2
    assert report["positive_rate"] == pytest.approx(y.mean()) and report["folds"] == 2
    assert report["model"] == "slp" and set(report["results"]) == {"bce", "f1", "gmean"}
    for result in report["results"].values():
        for score in ("accuracy", "f1", "gmean", "balanced_accuracy"):
            assert set(result[score]) == {"mean", "std"} and 0 <= result[score]["mean"] <= 1
        assert result["seconds_per_epoch"] > 0


@pytest.mark.skipif(BACKEND_OF_SESSION is None, reason="no framework backend in this session")
def test_bundled_dataset_names_its_positive_class(tmp_path, capsys):
    out = tmp_path / "bc.json"
    assert main(["compare", "--losses", "bce", "--folds", "2", "--epochs", "1", "--backend", BACKEND_OF_SESSION,
                 "--json", str(out), "--positive", "malignant"]) == 0
    assert "positive class 'malignant' (rate 0.092)" in capsys.readouterr().out.splitlines()[0]
    report = json.loads(out.read_text())
    assert report["positive_class"] == "malignant" and report["dropped_missing_target"] == 0


@pytest.mark.skipif(BACKEND_OF_SESSION is None, reason="no framework backend in this session")
def test_loss_names_train_what_they_say():
    # Each name trains its own loss: the first epoch's loss of an untrained SLP (zero
    # weights, p = 0.5) is 0.25 for MSE and ln 2 for BCE.
    from anyloss_bench.common import LOSSES
    from anyloss_bench.engines import train

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 3)).astype("float32"), rng.integers(0, 2, 40)
    first = {name: train(BACKEND_OF_SESSION, LOSSES[name], X, y, X[:4], arch="slp", epochs=2, lr=1e-6,
                         batch_size=40, seed=0).history[0] for name in ("mse", "bce", "f1")}
    assert first["mse"] == pytest.approx(0.25, abs=1e-4)
    assert first["bce"] == pytest.approx(np.log(2), abs=1e-4)
    # The same weights (zero) and batch give the same soft loss on every backend: the core's value.
    import anyloss_core as al

    assert first["f1"] == pytest.approx(float(al.f1_loss(y, np.zeros(40), from_logits=True)), abs=1e-6)


def test_reproduce_rows_compare_with_the_paper():
    from anyloss_bench import reproduce as paper

    def res(value):
        return {"mean": value, "std": 0.0}

    # Synthetic results: AnyLoss 0.95 on every metric, MSE 0.5, BCE 0.9, SOL 0.93.
    fake = {}
    for key in (("random", "slp"), ("breast_cancer", "mlp")):
        fake[key] = {}
        for loss in paper.LOSSES:
            value = {"mse": 0.5, "bce": 0.9}.get(loss, 0.93 if loss.startswith("sol-") else 0.95)
            fake[key][loss] = {m: res(value) for m in paper.METRICS}
    table = paper.rows(fake)
    assert len(table) == 8
    f1_bc = next(r for r in table if r["dataset"] == "breast_cancer" and r["metric"] == "f1")
    assert f1_bc["ours"] == [0.5, 0.9, 0.93, 0.95] and f1_bc["paper"] == [.833, .966, .955, 1.000]
    assert f1_bc["beats_baselines"] and not f1_bc["within_0.02_or_above"]  # 0.95 < 1.000 - 0.02
    gmean = next(r for r in table if r["dataset"] == "random" and r["metric"] == "gmean")
    assert gmean["ours"][2] is None and gmean["within_0.02_or_above"]  # 0.95 >= 0.874 - 0.02
    text = paper.markdown(table)
    row = "| #3 Breast cancer | MLP | f1 | 0.500 (0.833) | 0.900 (0.966) | 0.930 (0.955) | 0.950 (1.000) | yes | no |"
    assert row in text


def test_reproduce_rejects_other_tables(capsys):
    assert main(["reproduce", "--table", "5"]) == 2
    assert "only --table 6" in capsys.readouterr().err


# --- anyloss speed -------------------------------------------------------------------------------

SPEED_GROUP = {"jax": "jax", "torch": "torch"}.get(BACKEND_OF_SESSION or "") or (
    f"keras-{__import__('os').environ.get('KERAS_BACKEND', 'tensorflow')}" if BACKEND_OF_SESSION == "keras" else None)


@pytest.mark.parametrize(
    "args,words",
    [
        (["speed", "--backends", "mxnet"], ["unknown backend 'mxnet'"]),
        (["speed", "--sizes", "1e3,abc"], ["'abc' is not a number"]),
        (["speed", "--sizes", "1.5"], ["not a whole number"]),
        (["speed", "--metric", "nope"], ["--metric", "nope"]),  # "f3" is F-beta with beta 3 in the core
        (["speed", "--repeats", "0"], ["--repeats"]),
        (["speed", "--train-seconds", "-1"], ["--train-seconds"]),
        (["speed", "--train-seconds", "inf"], ["--train-seconds"]),
        (["speed", "--train-seconds", "nan"], ["--train-seconds"]),
    ],
)
def test_speed_usage_errors(args, words, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err


@pytest.mark.skipif(SPEED_GROUP is None, reason="no framework backend in this session")
def test_speed_json_has_every_mode_size_and_consistent_ratios(tmp_path, capsys, monkeypatch):
    from anyloss_bench.speed import GROUPS

    path = tmp_path / "speed.json"
    # The per-call and training rows have their own tests (tests/test_validation_speedpath.py).
    assert main(["speed", "--backends", SPEED_GROUP, "--sizes", "1000,3000", "--repeats", "3",
                 "--epoch-repeats", "1", "--call-sizes", "none", "--batch-sizes", "none", "--multiclass-n", "2000",
                 "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["train_seconds"] == 1.0  # the default, reported
    assert isinstance(report["machine"]["cpu"], str) and report["machine"]["cpu"]
    (group,) = report["groups"]
    assert group["group"] == SPEED_GROUP
    assert set(group["versions"]) <= {"torch", "jax", "jaxlib", "optax", "keras", "tensorflow"}
    assert group["versions"]  # the group's own framework at least
    got = {(r["mode"], r["n"]) for r in group["steps"]}
    assert got == {(m, n) for m in GROUPS[SPEED_GROUP] for n in (1000, 3000)}
    for rec in group["steps"]:
        assert rec["anyloss_ms"] > 0 and rec["bce_ms"] > 0 and rec["copy_ms"] > 0
        assert rec["ratio_bce"] == pytest.approx(rec["anyloss_ms"] / rec["bce_ms"])
        assert rec["ratio_copy"] == pytest.approx(rec["anyloss_ms"] / rec["copy_ms"])
    assert set(group["memory"]) == set(GROUPS[SPEED_GROUP])
    if SPEED_GROUP in ("jax", "keras-jax"):
        # XLA's plan of the compiled step, exact at any size: BCE's gradient step allocates its output, n floats
        # (the resident set of a CPU showed nothing at this size, where glibc reuses freed heap blocks).
        for mode in GROUPS[SPEED_GROUP]:
            assert group["memory"][mode]["bce"] == pytest.approx(1.0, abs=0.05)
    if SPEED_GROUP == "keras-tensorflow":
        # The TensorFlow figures say when they are a CPU pool's count: exactly when the reading does not fall back to
        # the resident set (the worker's allocator is this process's: the same build, CPU and environment).
        import tensorflow as tf

        from anyloss_bench import speed

        def no_resident_set(fn):
            raise LookupError("fell back to the resident set")

        monkeypatch.setattr(speed, "_rss_peak_extra", no_resident_set)
        try:
            speed._keras_peak_extra("tensorflow", lambda: tf.zeros(1 << 20).numpy())
            pooled = not tf.config.list_logical_devices("GPU")
        except LookupError:
            pooled = False
        assert (group.get("memory_from") == "CPU BFC pool") is pooled
    else:
        assert "memory_from" not in group
    assert [r["arch"] for r in group["epochs"]] == ["slp", "mlp"]
    for rec in group["epochs"]:
        assert rec["ratio_bce"] == pytest.approx(rec["anyloss_ms"] / rec["bce_ms"])
    table = capsys.readouterr().out
    for mode in GROUPS[SPEED_GROUP]:
        assert mode in table


@pytest.mark.backend("torch")
def test_speed_compiles_torch_with_the_guard_filter_when_asked(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import anyloss_torch
    from anyloss_bench import speed
    from anyloss_torch import _region

    # The worker's compile wrapper: the default guards, or anyloss's filter (no guard reads anyloss's modules), on
    # the traced path (no regions, which have few guards either way).
    monkeypatch.setattr(_region, "TORCH_RUNS_REGIONS", False)
    def own_module_accessors(setting: str) -> int:
        monkeypatch.setattr(speed, "_torch_guard_filter", setting)
        torch._dynamo.reset()
        try:  # no entry compiled with the filter may outlive this test
            loss_fn = anyloss_torch.F1Loss()
            speed._torch_wrap("torch.compile")(loss_fn)(torch.randn(16), (torch.arange(16) % 2).float())
            (entry,) = torch._dynamo.eval_frame._debug_get_cache_entry_list(anyloss_torch.AnyLoss.forward.__code__)
        finally:
            torch._dynamo.reset()
        registry = re.compile(r"_REGISTER|source=G\['__import_anyloss_core_dot__(fast_paths|metrics)'\],")
        return sum("GuardManager: source=" in line and "__import_anyloss_" in line and not registry.search(line)
                   for line in str(entry.guard_manager).splitlines())

    assert own_module_accessors("none") > 50
    assert own_module_accessors("anyloss") == 0
    # The command passes the choice to the torch worker and says so above the tables.
    path = tmp_path / "speed.json"
    assert main(["speed", "--backends", "torch", "--sizes", "1000", "--repeats", "1", "--call-sizes", "none",
                 "--batch-sizes", "none", "--epoch-repeats", "0", "--multiclass-n", "none",
                 "--torch-guard-filter", "anyloss", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["torch_guard_filter"] == "anyloss"
    assert [group["torch_guard_filters"] for group in report["groups"]] == [["anyloss"]]
    assert speed.format_report(report).startswith("every torch.compile row, both losses: guard_filter_fn=")


def test_speed_table_flags_misses_against_the_targets():
    from anyloss_bench.speed import format_report

    def step(mode, n, ratio):
        return {"mode": mode, "n": n, "anyloss_ms": ratio, "bce_ms": 1.0, "copy_ms": 0.5, "ratio_bce": ratio,
                "ratio_copy": 2 * ratio, "target_bce": 1.0 if mode == "jax.jit" else 1.5}

    report = {"metric": "f1", "sizes": [1000, 100_000], "repeats": 1, "groups": [{
        "group": "jax", "memory": {"jax.jit": {"anyloss": 3.5, "bce": 1.0}},
        "steps": [step("jax.jit", 1000, 2.0), step("jax.jit", 100_000, 1.2)],
        "epochs": [{"arch": "slp", "batch_size": 393, "anyloss_ms": 1.0, "bce_ms": 1.0, "ratio_bce": 1.0}],
    }]}
    row = next(line for line in format_report(report).splitlines() if line.startswith("jax.jit"))
    assert "2.00x " in row + " " and "1.20x!" in row  # no flag below 1e5, a flag over target at 1e5
    text = format_report(report)
    assert "anyloss  3.50x" in text and "MISS" in text.split("training epoch")[0]
    assert text.rstrip().endswith("ok")
    assert "pool" not in text
    # TensorFlow's figures from its CPU pool carry a note under the memory table.
    report["groups"][0]["memory_from"] = "CPU BFC pool"
    memory_table = format_report(report).split("extra memory")[1].split("paper epochs")[0]
    assert "CPU pool's count" in memory_table and "tf_pool_requests.py" in memory_table


def test_resident_peak_is_the_least_of_three_steps():
    # Steps that touch 96, 64 and 128 MiB (each above glibc's largest mmap threshold, so the resident set
    # rises by their size and falls back when they are freed): the least of the three is the 64 MiB one.
    from anyloss_bench.speed import _rss_peak_extra

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("the resident peak is read from Linux's /proc")
    sizes = iter([96, 64, 128])

    def step():
        block = np.ones(next(sizes) << 20, dtype=np.uint8)  # written: resident
        return int(block[-1])

    peak = _rss_peak_extra(step)
    assert peak is not None and 63 << 20 <= peak <= 80 << 20


# --- compare --task multiclass -----------------------------------------------------------------------


def test_multiclass_compare_needs_jax_and_known_losses(capsys):
    assert main(["compare", "--task", "multiclass", "--backend", "torch"]) == 2
    assert "--task multiclass runs on the JAX backend" in capsys.readouterr().err
    assert main(["compare", "--task", "multiclass", "--losses", "ce,f3"]) == 2
    assert "unknown multiclass loss 'f3'" in capsys.readouterr().err


@pytest.mark.skipif(BACKEND_OF_SESSION != "jax", reason="the multiclass comparison runs in the jax session")
def test_multiclass_compare_json_scores_agree_with_sklearn_shapes(tmp_path, capsys):
    path = tmp_path / "mc.json"
    assert main(["compare", "--task", "multiclass", "--dataset", "digits", "--folds", "2", "--epochs", "30",
                 "--losses", "ce,macro_f1", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["classes"] == 10 and report["n_samples"] == 1797 and report["task"] == "multiclass"
    for loss in ("ce", "macro_f1"):
        for score in ("f1_macro", "accuracy", "balanced_accuracy"):
            assert 0.5 < report["results"][loss][score]["mean"] <= 1.0  # 30 epochs learn digits well past chance
    assert "macro_f1" in capsys.readouterr().out


def test_multiclass_csv_gives_class_ids(tmp_path):
    from anyloss_bench.data import UsageError, load_csv

    path = tmp_path / "three.csv"
    path.write_text("a,label\n1,cat\n2,dog\n3,emu\n4,cat\n")
    data = load_csv(str(path), "label", multiclass=True)
    assert data.y.tolist() == [0, 1, 2, 0]
    path.write_text("a,label\n1,cat\n2,dog\n")
    with pytest.raises(UsageError, match="three or more classes"):
        load_csv(str(path), "label", multiclass=True)


@pytest.mark.skipif(BACKEND_OF_SESSION != "jax", reason="the multiclass comparison runs in the jax session")
def test_multiclass_csv_runs_with_categorical_columns_and_missing_targets(tmp_path, capsys):
    rng = np.random.default_rng(0)
    lines = [f"{rng.normal() + i % 3:.3f};{'abc'[(i + (i % 7 == 0)) % 3]};{'' if i == 4 else 'xyz'[i % 3]}"
             for i in range(60)]
    path = tmp_path / "three.csv"
    path.write_text("x;letter;label\n" + "\n".join(lines) + "\n")
    out = tmp_path / "mc.json"
    assert main(["compare", "--task", "multiclass", "--csv", str(path), "--target", "label", "--folds", "2",
                 "--epochs", "5", "--losses", "ce,macro_f1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["classes"] == 3 and report["n_samples"] == 59 and report["dropped_missing_target"] == 1
    assert report["n_features"] == 4 and "1 row without a target dropped" in capsys.readouterr().out


# --- the baselines wbce, focal, bce+threshold and the verdict (issue 17) ---------------------------


def test_balanced_class_weights_are_n_over_2_n_c():
    from sklearn.utils.class_weight import compute_class_weight

    from anyloss_bench.engines import balanced_class_weights

    y = np.array([0] * 6 + [1] * 2)
    assert balanced_class_weights(y) == pytest.approx((8 / 12, 8 / 4))
    y = np.random.default_rng(0).integers(0, 2, 37)
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
    assert balanced_class_weights(y) == pytest.approx(tuple(expected))
    w0, w1 = balanced_class_weights(y)
    assert w0 * np.sum(y == 0) + w1 * np.sum(y == 1) == pytest.approx(len(y))  # mean weight 1


def _has_torchvision() -> bool:
    from anyloss_bench.compare import _has_torchvision

    return _has_torchvision()


@pytest.mark.skipif(BACKEND_OF_SESSION is None, reason="no framework backend in this session")
def test_wbce_and_focal_train_what_they_say():
    # Untrained SLP (p = 0.5): weighted BCE with balanced weights (mean 1 over the batch) starts at ln 2, the
    # focal loss (gamma 2, no alpha) at (1 - 0.5)^2 ln 2; after training, the class weights predict more positives.
    from anyloss_bench.common import LOSSES
    from anyloss_bench.engines import train

    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 3)).astype("float32")
    y = (X[:, 0] + rng.normal(size=80) > 1.2).astype(int)
    names = ["bce", "wbce"] + (["focal"] if BACKEND_OF_SESSION != "torch" or _has_torchvision() else [])
    first = {n: train(BACKEND_OF_SESSION, LOSSES[n], X, y, X, arch="slp", epochs=1, lr=1e-6, batch_size=80,
                      seed=0).history[0] for n in names}
    assert first["wbce"] == pytest.approx(np.log(2), abs=1e-4)
    if "focal" in first:
        assert first["focal"] == pytest.approx(0.25 * np.log(2), abs=1e-4)
    trained = {n: train(BACKEND_OF_SESSION, LOSSES[n], X, y, X, arch="slp", epochs=30, lr=0.05, batch_size=80,
                        seed=0).val_logits for n in ("bce", "wbce")}
    assert (trained["wbce"] > 0).sum() > (trained["bce"] > 0).sum()


def test_focal_on_torch_without_torchvision_is_a_usage_error(monkeypatch, capsys):
    from anyloss_bench import compare

    monkeypatch.setattr(compare, "_has_torchvision", lambda: False)
    monkeypatch.setattr(compare, "check_backend", lambda backend: None)
    monkeypatch.setattr(compare, "cross_validate", lambda *a, **k: pytest.fail("trained"))
    assert "focal" not in compare._default_losses("torch") and "focal" in compare._default_losses("jax")
    assert main(["compare", "--losses", "bce,focal", "--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert "loss 'focal' on --backend torch needs torchvision" in err and len(err.strip().splitlines()) == 1


def _fake_train(backend, spec, X, y, X_val, **kwargs):
    """A stand-in for a framework: the first standardized feature as the logit."""
    from anyloss_bench.engines import TrainResult

    return TrainResult(np.asarray(X_val[:, 0], dtype=np.float64), [0.0], 1.0, [1.0, 1.0])


def test_bce_threshold_is_tuned_on_the_training_fold_only(monkeypatch):
    from sklearn.model_selection import StratifiedKFold

    import anyloss_bench.common as common
    import anyloss_core
    from anyloss_bench.data import load_dataset

    data = load_dataset("breast_cancer", seed=0)
    seen_indices: list[np.ndarray] = []
    real_fold = type(data).fold

    def fold(self, train, val):
        seen_indices.append(np.concatenate([train, val]))
        return real_fold(self, train, val)

    seen_labels: list[np.ndarray] = []
    real_best = anyloss_core.best_threshold

    def best_threshold(y_true, y_score, metric="f1", **kw):
        seen_labels.append(np.asarray(y_true))
        return real_best(y_true, y_score, metric, **kw)

    monkeypatch.setattr(type(data), "fold", fold)
    monkeypatch.setattr(anyloss_core, "best_threshold", best_threshold)
    monkeypatch.setattr(common, "train", _fake_train)
    results, per_fold = common.cross_validate(data, ["bce+threshold"], model="slp", folds=3,
                                              epochs={"bce+threshold": 1}, lr={"bce+threshold": 0.01},
                                              batch_size=None, backend="jax", seed=0)
    splits = list(StratifiedKFold(3, shuffle=True, random_state=0).split(np.zeros(len(data.y)), data.y))
    # One best_threshold per score and outer fold, each on the labels of that training fold (out-of-fold scores).
    assert len(seen_labels) == 3 * len(common.SCORES)
    for k, (tr, va) in enumerate(splits):
        for labels in seen_labels[k * len(common.SCORES):(k + 1) * len(common.SCORES)]:
            assert np.array_equal(labels, data.y[tr])
        # the inner fits' preprocessing reads the training fold only
        inner = seen_indices[3 + k * common.INNER_FOLDS: 3 + (k + 1) * common.INNER_FOLDS]
        assert len(inner) == common.INNER_FOLDS
        for idx in inner:
            assert set(idx) <= set(tr) and not set(idx) & set(va)
    # The F1 column scores the validation fold at the F1-tuned threshold: recompute fold 1 by hand.
    tr, va = splits[0]
    X_tr, X_va = data.fold(tr, va)
    t = common.tuned_thresholds(data, tr, fit=lambda a, b, c, s: c[:, 0], seed=0)["f1"]
    assert per_fold["bce+threshold"]["f1"][0] == pytest.approx(
        float(anyloss_core.score("f1", data.y[va], (X_va[:, 0] > t).astype(float))))
    assert results["bce+threshold"]["seconds_per_epoch"] == pytest.approx(1 + common.INNER_FOLDS)


def test_verdict_agrees_with_baycomp():
    baycomp = pytest.importorskip("baycomp")
    from anyloss_bench.verdict import format_verdict, verdict

    rng = np.random.default_rng(0)
    base = rng.uniform(0.8, 0.9, 10)
    per_fold = {
        "bce": {"f1": base, "gmean": base + 0.02},
        "bce+threshold": {"f1": base + 0.01, "gmean": base},
        "f1": {"f1": base + rng.normal(0.01, 0.01, 10), "gmean": base - 0.01},
        "gmean": {"f1": base - 0.05, "gmean": base + 0.05 + rng.normal(0, 0.005, 10)},
    }
    result = verdict(per_fold, {"f1", "gmean"}, ("f1", "gmean"))
    assert result["f1"]["anyloss"] == "f1" and result["f1"]["baseline"] == "bce+threshold"
    assert result["gmean"]["best"] == "gmean" and result["gmean"]["baseline"] == "bce"
    for metric, v in result.items():
        p = (v["p_better"], v["p_equivalent"], v["p_worse"])
        assert sum(p) == pytest.approx(1.0)
        expected = baycomp.two_on_single(np.asarray(per_fold[v["anyloss"]][metric]),
                                         np.asarray(per_fold[v["baseline"]][metric]), rope=0.01, runs=1)
        assert p == pytest.approx(tuple(expected))
    assert result["gmean"]["p_better"] > 0.9  # 0.03 better on every fold
    text = format_verdict(result).splitlines()
    assert text[1].startswith("G-mean: best is gmean (") and "the G-mean loss vs bce: P(better) " in text[1]


@pytest.mark.skipif(BACKEND_OF_SESSION is None, reason="no framework backend in this session")
def test_new_losses_run_and_the_json_has_a_verdict(tmp_path, capsys):
    pytest.importorskip("baycomp")
    out, plot = tmp_path / "r.json", tmp_path / "p.png"
    losses = ["bce+threshold", "wbce", "f1"] + (["focal"] if BACKEND_OF_SESSION != "torch" or _has_torchvision()
                                                else [])
    assert main(["compare", "--losses", ",".join(losses), "--folds", "2", "--epochs", "3", "--backend",
                 BACKEND_OF_SESSION, "--json", str(out)] + (["--plot", str(plot)] if _has_matplotlib() else [])) == 0
    text = capsys.readouterr().out
    assert "F1: best is " in text and "the F1 loss vs " in text
    report = json.loads(out.read_text())
    assert set(report["results"]) == set(losses)
    for result in report["results"].values():
        for score in ("accuracy", "f1", "gmean", "balanced_accuracy"):
            assert 0 <= result[score]["mean"] <= 1
    assert set(report["verdict"]) == {"accuracy", "f1", "gmean", "balanced_accuracy"}
    v = report["verdict"]["f1"]
    assert v["anyloss"] == "f1" and v["baseline"] in losses and v["baseline"] != "f1"
    assert v["p_better"] + v["p_equivalent"] + v["p_worse"] == pytest.approx(1.0)
    if _has_matplotlib():
        assert plot.read_bytes()[:4] == b"\x89PNG"


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(BACKEND_OF_SESSION != "jax", reason="the paper protocol trains with JAX")
def test_reproduce_json_records_the_protocol(tmp_path, monkeypatch):
    from anyloss_bench import reproduce as paper
    from anyloss_bench.data import Dataset

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(8), np.zeros(32)].astype(np.int64)
    X = rng.normal(size=(40, 3)) + y[:, None]
    monkeypatch.setattr(paper, "load_dataset", lambda name, seed=0: Dataset(name, X, y, positive_class="1"))
    monkeypatch.setattr(paper, "epochs_for", lambda loss, arch: 2)  # the SOL rows, with Adam
    out = tmp_path / "rows.json"
    assert main(["reproduce", "--arch", "slp", "--folds", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["protocol"] == "paper"
    assert len(report["rows"]) == 8
    for row in report["rows"]:
        assert {"dataset", "arch", "metric", "ours", "paper", "beats_baselines", "within_0.02_or_above"} <= set(row)
        assert all(v is None or 0.0 <= v <= 1.0 for v in row["ours"])
    assert main(["reproduce", "--arch", "slp", "--folds", "2", "--protocol", "adam", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["protocol"] == "adam"
    assert main(["reproduce", "--protocol", "bogus"]) == 2  # an unknown protocol: a usage error


# --- reproduce: the strong baselines and --data-dir ------------------------------------------------


def test_reproduce_rows_carry_the_strong_baselines_and_beats_strong():
    from anyloss_bench import reproduce as paper

    def res(value):
        return {"mean": value, "std": 0.0}

    # AnyLoss 0.95 on every metric; MSE 0.5, BCE 0.9, SOL 0.93; bce+threshold 0.96 on F1 only, else 0.94.
    fake = {("random", "slp"): {}}
    for loss in paper.LOSSES:
        value = {"mse": 0.5, "bce": 0.9, "wbce": 0.92, "focal": 0.91, "bce+threshold": 0.94}.get(
            loss, 0.93 if loss.startswith("sol-") else 0.95)
        fake[("random", "slp")][loss] = {m: res(value) for m in paper.METRICS}
    fake[("random", "slp")]["bce+threshold"]["f1"] = res(0.96)
    table = paper.rows(fake)
    assert {"bce+threshold", "wbce", "focal"} <= set(paper.LOSSES)
    for row in table:
        assert row["strong"] == {"bce+threshold": 0.96 if row["metric"] == "f1" else 0.94, "wbce": 0.92,
                                 "focal": 0.91}
        assert row["beats_baselines"]  # 0.95 > MSE 0.5 and BCE 0.9: the paper's question, unchanged
        assert row["beats_strong"] is (row["metric"] != "f1")  # 0.95 < 0.96 on F1
    text = paper.markdown(table)
    assert "| #1 Random | SLP | f1 | 0.500 (0.075) | 0.900 (0.546) | 0.930 (0.634) | 0.950 (0.632) | yes | yes | " \
           "0.960 | 0.920 | 0.910 | no |" in text
    # A strong baseline equal to AnyLoss is not beaten; one not run is ignored.
    fake[("random", "slp")]["wbce"]["accuracy"] = res(0.95)
    del fake[("random", "slp")]["focal"]
    acc = next(r for r in paper.rows(fake) if r["metric"] == "accuracy")
    assert acc["strong"]["focal"] is None and not acc["beats_strong"]


def test_reproduce_data_dir_names_the_missing_files(tmp_path, monkeypatch, capsys):
    from anyloss_bench import reproduce as paper

    names, messages = paper.table6_datasets(str(tmp_path))
    assert names == ["random", "breast_cancer"]
    assert len(messages) == 2
    assert "creditcard_2023.csv" in messages[0] and "Kaggle" in messages[0] and "\n" not in messages[0]
    assert "diabetes_prediction_dataset.csv" in messages[1] and "kaggle.com" in messages[1]
    assert paper.table6_datasets(None) == (["random", "breast_cancer"], [])
    assert main(["reproduce", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "--data-dir" in capsys.readouterr().err


def _write_kaggle_like(tmp_path, rng):
    """Small synthetic files with the public files' columns."""
    n = 200
    y = (rng.random(n) < 0.3).astype(int)
    cols = ["id", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"]
    lines = [",".join(cols)]
    for i in range(n):
        v = rng.normal(size=28) + y[i]
        lines.append(",".join([str(i), *(f"{x:.4f}" for x in v), f"{rng.uniform(0, 500):.2f}", str(y[i])]))
    (tmp_path / "creditcard_2023.csv").write_text("\n".join(lines) + "\n")
    d = (rng.random(n) < 0.2).astype(int)
    lines = ["gender,age,hypertension,heart_disease,smoking_history,bmi,HbA1c_level,blood_glucose_level,diabetes"]
    smoke = ["never", "No Info", "current", "former", "ever", "not current"]
    for i in range(n):
        bmi = "" if i == 3 else f"{25 + 5 * d[i] + rng.normal():.2f}"  # one missing value
        lines.append(f"{['Female', 'Male', 'Other'][i % 3]},{rng.integers(1, 80)},{rng.integers(0, 2)},"
                     f"{rng.integers(0, 2)},{smoke[i % 6]},{bmi},{5 + d[i] + rng.normal() / 2:.1f},"
                     f"{rng.integers(80, 300)},{d[i]}")
    (tmp_path / "diabetes_prediction_dataset.csv").write_text("\n".join(lines) + "\n")
    return y, d


def test_reproduce_reads_the_kaggle_files_as_the_paper_sampled_them(tmp_path):
    from anyloss_bench import reproduce as paper
    from anyloss_bench.data import UsageError

    y, d = _write_kaggle_like(tmp_path, np.random.default_rng(0))
    assert paper.table6_datasets(str(tmp_path)) == (list(paper.TABLE6), [])
    credit = paper.load_kaggle("credit_card", str(tmp_path), seed=0)
    negatives = int((y == 0).sum())
    assert credit.X.shape == (negatives + round(negatives / 20), 29)  # id dropped; 20:1
    assert int(credit.y.sum()) == round(negatives / 20) and credit.X.dtype == np.float64
    diabetes = paper.load_kaggle("diabetes", str(tmp_path))
    assert diabetes.X.shape == (200, 6 + 3 + 6)  # 6 numeric columns, gender and smoking_history one-hot
    np.testing.assert_array_equal(diabetes.y, d)
    assert np.isnan(diabetes.X).sum() == 1  # filled per training fold later
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "diabetes_prediction_dataset.csv").write_text("a,diabetes\n1,0\n2,1\n")
    with pytest.raises(UsageError, match="'gender' not found"):
        paper.load_kaggle("diabetes", str(tmp_path / "bad"))


@pytest.mark.skipif(BACKEND_OF_SESSION != "jax", reason="the paper protocol trains with JAX")
def test_reproduce_runs_the_kaggle_sets_and_the_strong_baselines(tmp_path, monkeypatch):
    from anyloss_bench import reproduce as paper
    from anyloss_bench.data import Dataset

    rng = np.random.default_rng(0)
    _write_kaggle_like(tmp_path, rng)
    yb = np.r_[np.ones(8), np.zeros(32)].astype(np.int64)
    Xb = rng.normal(size=(40, 3)) + yb[:, None]
    monkeypatch.setattr(paper, "load_dataset", lambda name, seed=0: Dataset(name, Xb, yb, positive_class="1"))
    monkeypatch.setattr(paper, "epochs_for", lambda loss, arch: 2)  # the SOL rows, with Adam
    out = tmp_path / "rows.json"
    assert main(["reproduce", "--arch", "slp", "--folds", "2", "--data-dir", str(tmp_path), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["dataset"] for r in rows[::4]] == list(paper.TABLE6)
    for row in rows:
        assert set(row["strong"]) == {"bce+threshold", "wbce", "focal"}
        assert all(0.0 <= v <= 1.0 for v in row["strong"].values())
        assert row["beats_strong"] == (row["ours"][3] > max(row["strong"].values()))
        assert row["beats_baselines"] == (row["ours"][3] > max(row["ours"][:2]))


def _bench_imports() -> dict[str, set[str]]:
    """``{module: modules of anyloss_bench it imports}``, module-level and function-level imports alike."""
    import ast
    import pathlib

    import anyloss_bench

    package = pathlib.Path(anyloss_bench.__file__).parent
    modules = {path.stem for path in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    names = [node.module] if node.module else [a.name for a in node.names]
                elif node.level == 0 and (node.module or "").startswith("anyloss_bench"):
                    rest = (node.module or "").removeprefix("anyloss_bench").lstrip(".")
                    names = [rest] if rest else [a.name for a in node.names]
                else:
                    continue
            elif isinstance(node, ast.Import):
                names = [a.name.removeprefix("anyloss_bench.") for a in node.names
                         if a.name.startswith("anyloss_bench.")]
            else:
                continue
            edges |= {name.split(".")[0] for name in names if name and name.split(".")[0] in modules}
        graph[path.stem] = edges - {path.stem}
    return graph


def test_bench_modules_import_no_circle_and_only_the_entry_point_is_cli():
    graph = _bench_imports()
    assert {"cli", "reproduce", "suite", "speed", "protocols"} <= set(graph)
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path[path.index(other):], other]))
            if other not in state:
                visit(other, [*path, other])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not [m for m, edges in graph.items() if "cli" in edges]
