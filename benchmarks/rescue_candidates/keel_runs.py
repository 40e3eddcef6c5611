"""H2: paper SLP (zero init, float64, full-batch GD lr 0.01, 1000 its, standardised per fold) and
H3: MLP Linear(d,32)-ReLU-Linear(32,1), Adam 1e-3, batch 32, 30 epochs, float32 (std or raw features),
on 10 KEEL sets (keel10.npz from dump_keel.py), 5-fold stratified CV (anyloss_bench.common.stratified_splits, seed 0).
Usage: keel_runs.py slp | mlp-std | mlp-raw      -> prints a markdown table and saves <mode>.json"""
import sys, json, time
import numpy as np, torch
from anyloss_bench.common import stratified_splits
from anyloss_bench.data import standardize
from cands import CANDS, EXTRA, loss, f1
ALL = {**CANDS, **EXTRA}

torch.set_num_threads(1)
mode = sys.argv[1]
D = np.load("keel10.npz")  # from dump_keel.py, in the working directory
names = sorted({k.split("/")[0] for k in D.files})
if mode == "slp":
    cands = {k: v for k, v in CANDS.items()}
elif mode == "slp-extra":
    cands = {k: ALL[k] for k in ["a plain", "b leak 3e-1", "b2 floor 3e-1", "d bce_wrong 0.01", "d bce_wrong 0.1"]}
else:
    cands = {k: ALL[k] for k in ["bce(baseline)", "a plain", "b leak 1e-1", "b2 floor 1e-1", "c bce 0.01",
                                 "d bce_wrong 0.1"]}
res = {c: {} for c in cands}  # cand -> name -> [val F1 per fold]
trainloss = {c: {} for c in cands}
agree = {c: {} for c in cands}
t0 = time.time()
for name in names:
    X, y = D[name + "/X"], D[name + "/y"]
    splits = stratified_splits(y, 5, 0)
    preds_plain = {}
    for c, cand in cands.items():
        res[c][name], trainloss[c][name], agree[c][name] = [], [], []
        for f, (tr, va) in enumerate(splits):
            if mode == "mlp-raw":
                Xtr, Xva = [np.nan_to_num(a) for a in (X[tr], X[va])]
            else:
                Xtr, Xva = standardize(X[tr], X[va])
            if mode.startswith("slp"):
                dt = torch.float64
                Xt, Xv = torch.tensor(Xtr, dtype=dt), torch.tensor(Xva, dtype=dt)
                yt = torch.tensor(y[tr], dtype=dt)
                w = torch.zeros(Xt.shape[1], dtype=dt, requires_grad=True)
                b = torch.zeros((), dtype=dt, requires_grad=True)
                lr = 0.1 if cand[0] == "bce_only" else 0.01  # the paper's BCE rate / F1 rate
                for it in range(1000):
                    scale = 1 + 72 * min(1.0, it / 100) if cand[0] == "warmup" else 73.0
                    lo = loss(Xt @ w + b, yt, cand, "f1", True, scale)
                    gw, gb = torch.autograd.grad(lo, (w, b))
                    with torch.no_grad():
                        w -= lr * gw; b -= lr * gb
                fwd = lambda A: A @ w + b
            else:
                dt = torch.float32
                Xt, Xv = torch.tensor(Xtr, dtype=dt), torch.tensor(Xva, dtype=dt)
                yt = torch.tensor(y[tr], dtype=dt)
                torch.manual_seed(f)
                net = torch.nn.Sequential(torch.nn.Linear(Xt.shape[1], 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
                opt = torch.optim.Adam(net.parameters(), lr=1e-3)
                g = torch.Generator().manual_seed(f)
                for ep in range(30):
                    for idx in torch.randperm(len(yt), generator=g).split(32):  # batches of 32, a fresh order
                        if len(idx) < 2:  # each epoch
                            continue
                        lo = loss(net(Xt[idx]).squeeze(1), yt[idx], cand)
                        opt.zero_grad(); lo.backward(); opt.step()
                fwd = lambda A: net(A).squeeze(1)
            with torch.no_grad():
                trainloss[c][name].append(float(loss(fwd(Xt), yt, ("plain", 0))))
                pv = (fwd(Xv) > 0).double().numpy()
            res[c][name].append(f1(y[va], pv))
            if c == "a plain":
                preds_plain[f] = pv
            agree[c][name].append(float((pv == preds_plain[f]).mean()) if f in preds_plain else float("nan"))
    print(f"# {name} done {time.time()-t0:.0f}s", file=sys.stderr)
json.dump({"res": res, "trainloss": trainloss, "agree": agree}, open(f"{mode}.json", "w"))
print(f"\n## {mode}: mean validation F1 per dataset (5-fold); W/T/L vs plain (tie = |diff| < 0.005); "
      f"mean train plain-F1-loss; mean val-prediction agreement with plain")
print("| candidate | " + " | ".join(n[:10] for n in names) + " | mean | W/T/L | train loss | agree |")
print("|---" * (len(names) + 5) + "|")
pm = {n: np.mean(res["a plain"][n]) for n in names}
for c in cands:
    m = {n: np.mean(res[c][n]) for n in names}
    d = np.array([m[n] - pm[n] for n in names])
    wtl = f"{(d > 0.005).sum()}/{(abs(d) <= 0.005).sum()}/{(d < -0.005).sum()}"
    tl = np.mean([np.mean(trainloss[c][n]) for n in names])
    ag = np.nanmean([np.mean(agree[c][n]) for n in names])
    print(f"| {c} | " + " | ".join(f"{m[n]:.3f}" for n in names) + f" | {np.mean(list(m.values())):.3f} | {wtl} | {tl:.3f} | {ag:.3f} |")
