"""The kernels one loss step launches on a GPU, AnyLoss against BCE: where a compiled step's time goes.

On the H200 of the fourth round, `torch.compile` and `jax.jit` steps were 1.22x-1.37x their BCE at every n
from 1e5 to 1e7, where both sides are a handful of fused kernels.  This lists, for one forward + backward at
n (default 1e6), each kernel's name and device time: torch eager and `torch.compile` from torch's profiler
(CUDA activity), `jax.jit` from the compiled program's text (its fusions and other kernels, counted).  Run it
on a GPU machine (on a CPU it lists CPU operators):

    PYTHONPATH=.:backends python benchmarks/gpu_kernels.py [n] [out-dir]

With an out-dir, the JAX programs' optimised HLO text is written there too, to read off the machine.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict

import numpy as np


def torch_kernels(n: int) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    import anyloss_torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    activity = ProfilerActivity.CUDA if device == "cuda" else ProfilerActivity.CPU
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=n), dtype=torch.float32, device=device, requires_grad=True)
    y = torch.tensor(rng.random(n) < 0.1, dtype=torch.float32, device=device)
    losses = {"F1Loss()": anyloss_torch.F1Loss(), "BCEWithLogitsLoss": torch.nn.BCEWithLogitsLoss()}
    for mode in ("eager", "torch.compile"):
        for name, loss_fn in losses.items():
            fn = torch.compile(loss_fn) if mode == "torch.compile" else loss_fn

            def step(fn=fn):
                x.grad = None
                fn(x, y).backward()

            for _ in range(5):
                step()
            if device == "cuda":
                torch.cuda.synchronize()
            with profile(activities=[activity]) as prof:
                step()
                if device == "cuda":
                    torch.cuda.synchronize()
            kernels: dict[str, list[float]] = defaultdict(list)
            for event in prof.events():
                if device == "cuda" and event.device_type.name != "CUDA":
                    continue
                if device == "cpu" and not event.name.startswith("aten::"):
                    continue
                kernels[event.name].append(event.device_time if device == "cuda" else event.cpu_time)
            total = sum(sum(v) for v in kernels.values())
            print(f"torch {mode:14s} {name:18s} n = {n:.0e}: {sum(map(len, kernels.values()))} kernels, "
                  f"{total:.1f} us of device time")
            for kernel, times in sorted(kernels.items(), key=lambda kv: -sum(kv[1]))[:25]:
                print(f"    {len(times):3d} x {sum(times):9.1f} us  {kernel[:110]}")


def jax_kernels(n: int, out: str | None) -> None:
    import jax
    import jax.numpy as jnp
    import optax

    import anyloss_jax

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=n), dtype=jnp.float32)
    y = jnp.asarray(rng.random(n) < 0.1, dtype=jnp.float32)
    losses = {"f1_loss": lambda z, t: anyloss_jax.f1_loss(z, t),  # (logits, labels), as optax's losses
              "optax BCE": lambda z, t: optax.sigmoid_binary_cross_entropy(z, t).mean()}
    for name, loss_fn in losses.items():
        step = jax.jit(jax.value_and_grad(loss_fn))
        compiled = step.lower(x, y).compile()
        text = compiled.as_text()
        entry = text[text.find("ENTRY"):]
        calls = [line.split("=", 1)[1].split("(", 1)[0].strip().split(" ")[-1]
                 for line in entry.splitlines() if "=" in line and "(" in line]
        kinds = defaultdict(int)
        for call in calls:
            kinds[call] += 1
        print(f"jax.jit {name:10s} n = {n:.0e} on {jax.devices()[0].platform}: ENTRY ops {dict(kinds)}")
        if out:
            with open(os.path.join(out, f"hlo_{name.split()[0]}.txt"), "w") as handle:
                handle.write(text)


def main() -> None:
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 1_000_000
    out = sys.argv[2] if len(sys.argv) > 2 else None
    jax_kernels(n, out)  # first: it compiles in seconds, torch.compile on a cold machine takes longer
    torch_kernels(n)


if __name__ == "__main__":
    main()
