"""The report's table: per batch, running counts (each momentum) vs plain F1 loss, and bce+threshold, 30 sets."""
import glob, json, os, sys
import numpy as np
out = sys.argv[1] if len(sys.argv) > 1 else "running-counts-out"
R = {}
for p in glob.glob(os.path.join(out, "f1_b*_s0.json")):
    r = json.load(open(p)); R[(r["batch"], r["variant"], r["dataset"])] = r["mean"]["f1"]
variants = sorted({v for _, v, _ in R if v.startswith("run")})
print("| batch | sets | " + " | ".join(f"{v[3:]}: beats plain (ties) | mean F1 {v[3:]}" for v in variants)
      + " | mean F1 plain | mean F1 bce+threshold | plain beats bce+thr | " + " | ".join(f"{v[3:]} beats bce+thr" for v in variants) + " |")
for b in (8, 32, 256):
    names = sorted({n for bb, v, n in R if bb == b and v == "plain"})
    names = [n for n in names if all((b, v, n) in R for v in (*variants, "bce+threshold"))]
    if not names:
        continue
    P = np.array([R[(b, "plain", n)] for n in names]); T = np.array([R[(b, "bce+threshold", n)] for n in names])
    cells = []
    for v in variants:
        V = np.array([R[(b, v, n)] for n in names])
        cells.append(f"**{int((V > P).sum())}** ({int((V == P).sum())}) | {V.mean():.3f}")
    wins_t = [f"{int((np.array([R[(b, v, n)] for n in names]) > T).sum())}" for v in variants]
    print(f"| {b} | {len(names)} | " + " | ".join(cells) + f" | {P.mean():.3f} | {T.mean():.3f} | {int((P > T).sum())} | "
          + " | ".join(wins_t) + " |")
if len(sys.argv) > 2:
    b = int(sys.argv[2])
    names = sorted({n for bb, v, n in R if bb == b and v == "plain"})
    print(f"\nbatch {b}: | set | plain | " + " | ".join(variants) + " | bce+threshold |")
    for n in names:
        print(f"| {n} | {R[(b, 'plain', n)]:.3f} | " + " | ".join(f"{R.get((b, v, n), float('nan')):.3f}" for v in variants)
              + f" | {R.get((b, 'bce+threshold', n), float('nan')):.3f} |")

# Held out from the momentum choice (the 6 tuning sets removed), and a Wilcoxon signed-rank test (scipy).
TUNE = {"abalone9-18", "ecoli3", "haberman", "yeast-1_vs_7", "yeast-2_vs_4", "page-blocks-1-3_vs_4"}
from scipy.stats import wilcoxon
for b in (8, 32, 256):
    names = sorted({n for bb, v, n in R if bb == b and v == "plain"})
    names = [n for n in names if all((b, v, n) in R for v in (*variants, "bce+threshold"))]
    if len(names) < 30:
        continue
    held = [n for n in names if n not in TUNE]
    for v in variants:
        V = np.array([R[(b, v, n)] for n in names]); P = np.array([R[(b, "plain", n)] for n in names])
        Vh = np.array([R[(b, v, n)] for n in held]); Ph = np.array([R[(b, "plain", n)] for n in held])
        print(f"batch {b} {v}: held-out {len(held)} sets: beats plain on {int((Vh > Ph).sum())}, mean "
              f"{Vh.mean():.3f} vs {Ph.mean():.3f}; all 30: Wilcoxon p = {wilcoxon(V, P).pvalue:.4f}, "
              f"diff mean {np.mean(V - P):+.3f} median {np.median(V - P):+.3f}")
