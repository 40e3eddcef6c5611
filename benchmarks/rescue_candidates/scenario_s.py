"""Scenario S (raw breast cancer) and H1 (standardised), MLP Linear(30,32)-ReLU-Linear(32,1), Adam 1e-3,
full batch, 300 steps, float32, seeds 0-4; stratified 30% hold-out (random_state=0). Positive = malignant
(y = sklearn target == 0, 212 of 569).  Usage: scenario_s.py [raw|std] [f1|gmean|bacc] [logits|probs]"""
import sys, time
import numpy as np, torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from cands import CANDS, EXTRA, loss, SCORE, L

torch.set_num_threads(1)
prep, metric, inp = (sys.argv[1:] + ["raw", "f1", "logits"][len(sys.argv) - 1:])[:3]
import os
if os.environ.get("EXTRA"):
    CANDS = EXTRA
STEPS = int(os.environ.get("STEPS", 300))
logits = inp == "logits"
X, t = load_breast_cancer(return_X_y=True)
y = (t == 0).astype(np.float32)
Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
if prep == "std":
    sc = StandardScaler().fit(Xtr); Xtr, Xva = sc.transform(Xtr), sc.transform(Xva)
Xtr, Xva = torch.tensor(Xtr, dtype=torch.float32), torch.tensor(Xva, dtype=torch.float32)
ytr_t = torch.tensor(ytr)
WARM = 100
score = SCORE[metric]
print(f"# S/H1: prep={prep} loss/score={metric} input={inp}; columns: mean/min over seeds 0-4 of train {metric}, "
      f"mean/min val {metric}, mean final loss value (metric part)")
for name, cand in CANDS.items():
    tr, va, lv = [], [], []
    t0 = time.time()
    for seed in range(5):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(30, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for step in range(STEPS):
            scale = 1 + (L - 1) * min(1.0, step / WARM) if cand[0] == "warmup" else L
            z = net(Xtr).squeeze(1)
            s = z if logits else torch.sigmoid(z)
            lo = loss(s, ytr_t, cand, metric, logits, scale)
            opt.zero_grad(); lo.backward(); opt.step()
        with torch.no_grad():
            z = net(Xtr).squeeze(1); zv = net(Xva).squeeze(1)
            s = z if logits else torch.sigmoid(z)
            lv.append(float(loss(s, ytr_t, ("plain", 0), metric, logits)))
        tr.append(score(ytr, (z > 0).float().numpy())); va.append(score(yva, (zv > 0).float().numpy()))
    print(f"| {name:18s} | {np.mean(tr):.3f} | {np.min(tr):.3f} | {np.mean(va):.3f} | {np.min(va):.3f} | {np.mean(lv):.3f} | {time.time()-t0:.1f}s")
