"""The torch eager step on a GPU: the path it takes (since the second GPU round, "one node") against each path
forced, each against BCE.

On a CUDA GPU eager torch takes the "one node" path: it reads the counts' sums in one copy (one wait for the
device per step) and runs about 20 kernels.  The "analytic counts" path reads nothing back and runs about 60,
each a kernel launch; it is what a CUDA graph being captured, a sync debug mode and distributed counts take.
On the H200 of the second GPU round, from n = 32 to 1e6, the analytic path (then the default) was 4.75x-6.12x
BCE per step and the one node 2.94x-3.58x (docs/performance.md).  This prepared script measures them in one run:

    PYTHONPATH=.:backends OMP_NUM_THREADS=1 python benchmarks/gpu_paths.py [repeats]

Rows: one loss step (forward + backward on fixed logits, then a device synchronisation) at n = 32 to 1e7, a
training epoch (the MLP of ``anyloss speed``, Adam, batch 256, 4096 samples), and the extra memory of one step
at n = 1e7.  p10 of interleaved rounds
(order reversed every other round) after a warm-up, as ``anyloss speed`` measures.  On a CPU it runs too, but
there "one node" is what the loss already takes.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import anyloss_torch
from anyloss_bench.speed import _torch_peak, interleaved
from anyloss_torch import _autograd


def forced(path: _autograd.Path | None):
    """``choose_path`` with the one-node / analytic choice replaced by ``path`` (``None``: unchanged)."""
    choose = _autograd.choose_path

    def choice(*args, **kwargs):
        chosen = choose(*args, **kwargs)
        if path is None or chosen not in (_autograd.Path.ONE_NODE, _autograd.Path.ANALYTIC):
            return chosen
        return path

    return choice


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    print(f"torch {torch.__version__} on {name}; p10 of {repeats} interleaved rounds, float32")
    original = _autograd.choose_path
    paths = {"now": None, "analytic": _autograd.Path.ANALYTIC, "one node": _autograd.Path.ONE_NODE}

    def with_path(path, fn):
        def run():
            _autograd.choose_path = forced(path)
            try:
                fn()
            finally:
                _autograd.choose_path = original
            sync()
        return run

    rng = np.random.default_rng(0)
    print(f"{'loss step':12s}" + "".join(f"{k + ' / BCE':>18s}" for k in paths) + f"{'BCE ms':>10s}")
    for n in (32, 1024, 100_000, 1_000_000, 10_000_000):
        x = torch.tensor(rng.normal(size=n), dtype=torch.float32, device=device, requires_grad=True)
        y = torch.tensor(rng.random(n) < 0.1, dtype=torch.float32, device=device)
        f1, bce = anyloss_torch.F1Loss(), torch.nn.BCEWithLogitsLoss()
        fns = [with_path(p, lambda f1=f1, x=x, y=y: f1(x, y).backward()) for p in paths.values()]
        fns.append(with_path(None, lambda bce=bce, x=x, y=y: bce(x, y).backward()))
        times = interleaved(fns, repeats, warmup=max(3, repeats // 3))
        base = times[-1]["p10"]
        print(f"n = {n:<8.0e}" + "".join(f"{t['p10'] / base:17.2f}x" for t in times[:-1]) + f"{base * 1e3:10.3f}")

    X = torch.tensor(rng.normal(size=(4096, 32)), dtype=torch.float32, device=device)
    Y = torch.tensor(rng.random(4096) < 0.15, dtype=torch.float32, device=device)

    def epoch(loss_fn, path):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                                    torch.nn.ReLU(), torch.nn.Linear(64, 1)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def run():
            for i in range(0, 4096, 256):
                opt.zero_grad(set_to_none=True)
                loss_fn(model(X[i:i + 256]).squeeze(1), Y[i:i + 256]).backward()
                opt.step()
        return with_path(path, run)

    fns = [epoch(anyloss_torch.F1Loss(), p) for p in paths.values()] + [epoch(torch.nn.BCEWithLogitsLoss(), None)]
    times = interleaved(fns, max(5, repeats // 5), warmup=2)
    base = times[-1]["p10"]
    print(f"{'epoch b256':12s}" + "".join(f"{t['p10'] / base:17.2f}x" for t in times[:-1]) + f"{base * 1e3:10.3f}")

    # Extra memory of one step at n = 1e7 in logits' bytes, as `anyloss speed` measures it (the allocator's
    # peak on a GPU, the resident set's on a CPU).
    n = 10_000_000
    x = torch.tensor(rng.normal(size=n), dtype=torch.float32, device=device, requires_grad=True)
    y = torch.tensor(rng.random(n) < 0.1, dtype=torch.float32, device=device)
    f1, bce = anyloss_torch.F1Loss(), torch.nn.BCEWithLogitsLoss()

    def step(loss_fn, path):
        def run():
            x.grad = None
            loss_fn(x, y).backward()
        return with_path(path, run)

    peaks = []
    for fn in [step(f1, p) for p in paths.values()] + [step(bce, None)]:
        fn()  # warm: the gradient's and the allocator's first pages are not the step's
        peaks.append(min(_torch_peak(fn, device) for _ in range(3)) / (4 * n))
    print(f"{'memory 1e7':12s}" + "".join(f"{p:17.2f}x" for p in peaks[:-1])
          + f"{peaks[-1]:9.2f}x (BCE, logits' bytes)")


if __name__ == "__main__":
    main()
