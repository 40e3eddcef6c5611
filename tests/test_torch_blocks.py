"""torch's block-by-block fast paths (large batches) and the fused sigmoid slope, against float64 NumPy.

Above ``_BLOCKED_ABOVE`` samples the rescue slope is computed block by block (``_BLOCK`` at a time)
through one small reused buffer instead of an n-element temporary (the label check and FP's
``1 - y`` too).  Patching them down to 64 and 256 makes a 1,000-sample batch run through 15 full
blocks and a partial one (and a block stride of the bound instead of the block would skip three
blocks in four); the loss and its gradient must still equal the paper's formulas written here in
float64 NumPy (eq. 4-9, F1, the rescue gradient of ``anyloss_core._rescue``), and the
unblocked result.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import anyloss_torch  # noqa: E402
from anyloss_torch import _fast_paths as torch_fast  # noqa: E402

SCALE, RESCUE = 73.0, 0.1


def _reference_f1_loss_and_grad(z: np.ndarray, y: np.ndarray, rescue: float) -> tuple[float, np.ndarray]:
    p = 1.0 / (1.0 + np.exp(-z))
    a = 1.0 / (1.0 + np.exp(-SCALE * (p - 0.5)))
    tp, fp, fn = np.sum(y * a), np.sum((1 - y) * a), np.sum(y * (1 - a))
    d = 2 * tp + fp + fn
    d_tp, d_fp_fn = 2 / d - 4 * tp / d**2, -2 * tp / d**2  # dF1/dTP, dF1/dFP = dF1/dFN
    slope = (y * (d_tp - d_fp_fn) + (1 - y) * d_fp_fn) * SCALE * a * (1 - a) * p * (1 - p)
    wrong = np.abs(p - y) > 0.5
    return 1 - 2 * tp / d, -slope + rescue / z.size * np.where(wrong, p - y, 0.0)


def _batch(n: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 0.3).astype(np.float64)
    return torch.tensor(z, dtype=dtype, requires_grad=True), torch.tensor(y, dtype=dtype)


def _loss_and_grad(z: torch.Tensor, y: torch.Tensor, rescue: float) -> tuple[float, np.ndarray]:
    loss = anyloss_torch.F1Loss(rescue=rescue)(z, y)
    (grad,) = torch.autograd.grad(loss, z)
    return float(loss.detach()), grad.numpy()


@pytest.mark.parametrize("rescue", [0.0, RESCUE])
@pytest.mark.parametrize("n", [1000, 256, 257, 65])
def test_blocked_counts_and_rescue_equal_float64_reference(monkeypatch, n, rescue):
    monkeypatch.setattr(torch_fast, "_BLOCK", 64)
    monkeypatch.setattr(torch_fast, "_BLOCKED_ABOVE", 256)
    z, y = _batch(n, torch.float64)
    loss, grad = _loss_and_grad(z, y, rescue)
    ref_loss, ref_grad = _reference_f1_loss_and_grad(z.detach().numpy(), y.numpy(), rescue)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-18)


def test_blocked_and_unblocked_float32_agree(monkeypatch):
    z, y = _batch(1000, torch.float32, seed=3)
    whole = _loss_and_grad(z, y, RESCUE)
    monkeypatch.setattr(torch_fast, "_BLOCK", 64)
    monkeypatch.setattr(torch_fast, "_BLOCKED_ABOVE", 256)
    blocked = _loss_and_grad(z, y, RESCUE)
    assert blocked[0] == pytest.approx(whole[0], rel=1e-6)
    np.testing.assert_allclose(blocked[1], whole[1], rtol=1e-5, atol=1e-9)


def test_blocked_path_is_not_taken_when_autograd_records(monkeypatch):
    """Under autograd (weights with grad: the plain path) the hooks must not write into recorded tensors."""
    monkeypatch.setattr(torch_fast, "_BLOCK", 64)
    monkeypatch.setattr(torch_fast, "_BLOCKED_ABOVE", 256)
    z, y = _batch(500, torch.float64, seed=5)
    w = torch.full((500,), 1.0, dtype=torch.float64, requires_grad=True)
    loss = anyloss_torch.F1Loss(rescue=RESCUE)(z, y, w)
    grad_z, grad_w = torch.autograd.grad(loss, (z, w))
    ref_loss, ref_grad = _reference_f1_loss_and_grad(z.detach().numpy(), y.numpy(), RESCUE)
    assert float(loss.detach()) == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad_z.numpy(), ref_grad, rtol=1e-10, atol=1e-18)
    assert torch.isfinite(grad_w).all()


def test_times_sigmoid_slope_is_x_s_one_minus_s_in_place():
    hooks = torch_fast.TORCH_FAST_PATHS
    x = torch.tensor([2.0, -1.0, 0.5, 3.0], dtype=torch.float64)
    s = torch.tensor([0.5, 0.25, 1.0, 0.0], dtype=torch.float64)
    expected = x.numpy() * s.numpy() * (1 - s.numpy())
    out = hooks.times_sigmoid_slope(x, s, None)
    np.testing.assert_array_equal(out.numpy(), expected)
    assert out.data_ptr() == x.data_ptr()  # a temporary: updated in place
    recorded = torch.tensor([2.0, -1.0], requires_grad=True)
    result = hooks.times_sigmoid_slope(recorded, torch.tensor([0.5, 0.25]), None)
    assert result.data_ptr() != recorded.data_ptr() and result.requires_grad


def test_blocks_on_the_cpu_only():
    """Off the CPU whole arrays: a caching allocator has no fresh pages to avoid, and every block costs kernel
    launches (on an H200 at n = 1e7, blocks of 2**20 made the eager step 5.44x BCE, whole arrays 2.71x)."""
    def size(n, device):
        return torch_fast._block_size(torch.empty(n, device=device))

    assert (size(1 << 18, "cpu"), size((1 << 18) + 1, "cpu"), size(10**7, "cpu")) == (0, 1 << 16, 1 << 16)
    assert (size((1 << 18) + 1, "meta"), size(1 << 20, "meta"), size(10**7, "meta")) == (0, 0, 0)
