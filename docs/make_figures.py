"""Generate the documentation figures from the library itself: ``python docs/make_figures.py``.

Writes docs/figures/approximation.png (A(p) for several L, like the paper's
Figure 2) and docs/figures/scale_range.png (the valid range of L per dtype).
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import anyloss_core as al  # noqa: E402
from anyloss_core.adapters import get_approximation, get_namespace  # noqa: E402

OUT = pathlib.Path(__file__).parent / "figures"


def _save(fig: plt.Figure, ax: plt.Axes, name: str, xlabel: str, ylabel: str) -> None:
    """Label the axes, add the legend and write ``OUT/name`` (both figures share this layout)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / name, dpi=110)
    plt.close(fig)


def approximation() -> None:
    p = np.linspace(0.0, 1.0, 501)
    y = np.zeros_like(p)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(p, p, "k--", lw=1, label="identity (no amplification)")
    for scale in (5, 10, 30, 73):
        yh, _ = get_approximation("anyloss")(p, from_logits=False, scale=float(scale), xp=get_namespace(p))
        ax.plot(p, yh, label=f"A(p), L = {scale}")
    sol, _ = get_approximation("sol-cosine")(p, from_logits=False, scale=73.0, xp=get_namespace(y))
    ax.plot(p, sol, ":", label="SOL cosine (mu 0.5, delta 0.1)")
    _save(fig, ax, "approximation.png", "predicted probability p", "near-label A(p)")


def scale_ranges() -> None:
    levels = np.logspace(-1, -15, 29)
    fig, ax = plt.subplots(figsize=(6, 4))
    for dtype, color in (("float64", "C0"), ("float32", "C1"), ("float16", "C2"), ("bfloat16", "C3")):
        lo, hi = zip(*(al.scale_range(dtype, t, resolution=None) for t in levels), strict=True)
        ax.fill_between(levels, lo, hi, where=np.array(lo) <= np.array(hi), color=color, alpha=0.25)
        ax.plot(levels, hi, color=color, label=f"{dtype}: L max")
    ax.plot(levels, lo, "k", label="L min (all dtypes)")
    ax.axhline(73, color="gray", ls="--", lw=1, label="paper default L = 73")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_ylim(0, 100)
    _save(fig, ax, "scale_range.png", "accuracy level t", "scale L")


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    approximation()
    scale_ranges()
    print(f"wrote {OUT}/approximation.png and {OUT}/scale_range.png")
