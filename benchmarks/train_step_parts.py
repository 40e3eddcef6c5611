"""Where one torch eager training step goes: model forward, loss, backward, optimizer, F1Loss() against BCE.

    python benchmarks/train_step_parts.py [threads] [steps]

The MLP, data and batch of ``anyloss speed``'s training rows (32 -> 64 -> 64 -> 1, Adam, one batch of 32 of
its synthetic set); the two trainings alternate step by step; p10 microseconds of each part after a warm-up of
a sixth of the steps.  A loss's per-call cost shows here as its "loss" and part of its "backward".
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch


def main(threads: int, steps: int) -> None:
    torch.set_num_threads(threads)
    import anyloss_torch
    from anyloss_bench.speed import _torch_mlp, training_data

    X_np, y_np = training_data(4096)
    X, y = torch.tensor(X_np[:32]), torch.tensor(y_np[:32])
    torch.manual_seed(0)
    runs = {}
    for name, loss_fn in [("F1Loss()", anyloss_torch.F1Loss()), ("BCEWithLogitsLoss()", torch.nn.BCEWithLogitsLoss())]:
        model = _torch_mlp(X.shape[1])
        runs[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), loss_fn)
    parts: dict[str, dict[str, list[float]]] = {name: {"forward": [], "loss": [], "backward": [], "optimizer": []}
                                                for name in runs}
    for step in range(steps):
        for name in (list(runs) if step % 2 else list(runs)[::-1]):
            model, optimizer, loss_fn = runs[name]
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            logits = model(X).squeeze(-1)
            t1 = time.perf_counter()
            loss = loss_fn(logits, y)
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            optimizer.step()
            t4 = time.perf_counter()
            if step >= steps // 6:
                for part, seconds in zip(parts[name], (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    parts[name][part].append(seconds)
    for name, by_part in parts.items():
        p10 = {part: np.percentile(times, 10) * 1e6 for part, times in by_part.items()}
        print(f"{name:20s} " + "  ".join(f"{part} {us:6.1f} us" for part, us in p10.items())
              + f"  sum {sum(p10.values()):6.1f} us")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 1, int(args[1]) if len(args) > 1 else 3000)
