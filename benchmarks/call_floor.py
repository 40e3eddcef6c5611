"""How fast can one eager torch call of an F1 AnyLoss be?  A lower bound, against ``BCEWithLogitsLoss``.

    python benchmarks/call_floor.py [n] [threads] [repeats]

Times forward + backward at small n (default 32) of:

* ``BCEWithLogitsLoss()``: four fused kernels and a C++ autograd node;
* a *floor*: the F1 AnyLoss of the paper's approximation, hand-written for this one case as a
  single ``torch.autograd.Function`` with the fewest kernels we found (two sigmoids, one dot,
  two sums and four float reads forward; five in-place kernels backward) and nothing else:
  no argument or value checks, no rescue gradient, no weights, float32 only;
* the same math with the gradient computed in the forward pass and attached by a
  ``dot(z, g) - dot(z, g).detach()`` term (no Python backward node at all);
* the library's ``F1Loss()`` (default arguments) and ``F1Loss(rescue=0.0, validate=False)``.

If the floor is already near 2x BCE, no amount of Python trimming in the library reaches
the 2x target at n = 32: what is left is the number of small kernels (each 1-3 us on a
CPU) and the Python autograd node, which only a fused compiled kernel would remove.
Interleaved, order alternated, p10 after a warm-up of a sixth of the repeats.
"""

from __future__ import annotations

import sys

import torch

SCALE = 73.0


def _f1_and_slopes(tp: float, predicted: float, positives: float) -> tuple[float, float, float]:
    """F1 and its derivatives in TP and in FP (= in FN) for soft counts (eq. 8 of the paper)."""
    fp, fn = predicted - tp, positives - tp
    d = 2 * tp + fp + fn
    return 2 * tp / d, 2 / d - 4 * tp / d**2, -2 * tp / d**2


class FloorF1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, y):
        p = torch.sigmoid(z)
        a = torch.sigmoid(p.mul(SCALE).sub_(SCALE / 2))
        f1, d_tp, d_fx = _f1_and_slopes(float(torch.dot(y, a)), float(a.sum()), float(y.sum()))
        ctx.save_for_backward(y, p, a)
        ctx.slopes = d_tp, d_fx
        return torch.scalar_tensor(1 - f1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, upstream):
        y, p, a = ctx.saved_tensors
        d_tp, d_fx = ctx.slopes
        u = -float(upstream) * SCALE
        grad = y.mul(u * (d_tp - 2 * d_fx)).add_(u * d_fx)  # d loss / d a, times the scale
        grad.mul_(torch.addcmul(a, a, a, value=-1)).mul_(torch.addcmul(p, p, p, value=-1))
        return grad, None


def floor_without_backward_node(z, y):
    with torch.no_grad():
        p = torch.sigmoid(z)
        a = torch.sigmoid(p.mul(SCALE).sub_(SCALE / 2))
        f1, d_tp, d_fx = _f1_and_slopes(float(torch.dot(y, a)), float(a.sum()), float(y.sum()))
        grad = y.mul(-SCALE * (d_tp - 2 * d_fx)).add_(-SCALE * d_fx)
        grad.mul_(torch.addcmul(a, a, a, value=-1)).mul_(torch.addcmul(p, p, p, value=-1))
    term = torch.dot(z, grad)
    return (term - term.detach()).add_(1 - f1)  # value 1 - F1, gradient grad


def main(n: int, threads: int, repeats: int) -> None:
    torch.set_num_threads(threads)
    import anyloss_torch
    from anyloss_bench.speed import _labels, _logits, interleaved

    z = torch.tensor(_logits(n), requires_grad=True)
    y = torch.tensor(_labels(n))
    bce = torch.nn.BCEWithLogitsLoss()
    losses = {"BCEWithLogitsLoss()": bce, "floor: one Function": FloorF1.apply,
              "floor: no backward node": floor_without_backward_node, "F1Loss()": anyloss_torch.F1Loss(),
              "F1Loss(rescue=0.0, validate=False)": anyloss_torch.F1Loss(rescue=0.0, validate=False)}
    reference = float(anyloss_torch.F1Loss(rescue=0.0)(z, y).detach())
    assert abs(float(FloorF1.apply(z, y).detach()) - reference) < 1e-5  # the floor computes the same loss

    def call(loss_fn: object) -> object:
        def run() -> None:
            z.grad = None
            loss_fn(z, y).backward()
        return run

    timings = interleaved([call(f) for f in losses.values()], repeats, max(50, repeats // 6))
    base = timings[0]["p10"]
    for name, t in zip(losses, timings, strict=True):
        print(f"n={n} threads={threads} {name:36s} p10 {t['p10'] * 1e6:8.1f} us ({t['p10'] / base:.2f}x BCE)")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(float(args[0])) if args else 32, int(args[1]) if len(args) > 1 else 1,
         int(args[2]) if len(args) > 2 else 3000)
