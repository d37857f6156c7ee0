"""The orthonormal wavelet transform (bit-compatible with PyWavelets' periodization mode) and the
l1-wavelet baseline it serves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invdiff.datasets import shepp_logan
from invdiff.linalg import batch_dot
from invdiff.measurement import Measurement
from invdiff.operators import Inpainting, ParallelBeamCT
from invdiff.operators.wavelet import WaveletTransform
from invdiff.samplers import run
from invdiff.samplers.sparsity import L1Wavelet, soft_threshold


@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4"])
def test_transform_is_pywavelets_periodization(wavelet):
    pywt = pytest.importorskip("pywt")
    x = torch.randn(2, 3, 32, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    c = WaveletTransform(wavelet, 3).forward(x)
    theirs = pywt.wavedec2(x[1, 2].numpy(), wavelet, mode="periodization", level=3)
    np.testing.assert_allclose(c[1, 2, :4, :6].numpy(), theirs[0], atol=1e-12)
    for ch, cv, cd in theirs[1:]:
        h, w = ch.shape
        np.testing.assert_allclose(c[1, 2, h:2 * h, :w].numpy(), ch, atol=1e-12)  # high along rows
        np.testing.assert_allclose(c[1, 2, :h, w:2 * w].numpy(), cv, atol=1e-12)  # high along columns
        np.testing.assert_allclose(c[1, 2, h:2 * h, w:2 * w].numpy(), cd, atol=1e-12)


@pytest.mark.parametrize("wavelet", ["haar", "db4"])
def test_transform_is_orthonormal(wavelet):
    g = torch.Generator().manual_seed(2)
    t = WaveletTransform(wavelet, 4)
    x, c = torch.randn(3, 2, 64, 32, dtype=torch.float64, generator=g), torch.randn(3, 2, 64, 32, dtype=torch.float64, generator=g)
    torch.testing.assert_close(t.inverse(t.forward(x)), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(batch_dot(t.forward(x), c), batch_dot(x, t.inverse(c)), rtol=1e-12, atol=1e-12)
    assert WaveletTransform.max_levels((320, 320)) == 6 and WaveletTransform.max_levels((640, 368)) == 4
    with pytest.raises(ValueError, match="divisible by 16"):
        t.forward(torch.zeros(1, 1, 40, 32))
    with pytest.raises(ValueError, match="unknown wavelet"):
        WaveletTransform("sym8")


def test_l1_wavelet_on_an_identity_operator_is_wavelet_shrinkage():
    """With A = I the minimiser is W^T soft(W y, lam), in closed form; FISTA must reach it."""
    y = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(3))
    m = Measurement(Inpainting(torch.ones(32, 32)), y, 0.1)
    lam = 0.3
    post = run(L1Wavelet(lam, iterations=300, levels=3), m, None, n_particles=1,
               generator=torch.Generator().manual_seed(0), progress=False)
    w = WaveletTransform("db4", 3)
    expected = w.inverse(soft_threshold(w.forward(y), lam))
    torch.testing.assert_close(post.samples[:, 0], expected, rtol=0, atol=1e-5)
    shrunk = soft_threshold(torch.tensor([[[3.0]], [[4.0]]]).unsqueeze(0), 1.0)  # magnitude 5 -> 4, same direction
    torch.testing.assert_close(shrunk.flatten(), torch.tensor([2.4, 3.2]))


def test_l1_wavelet_converges_on_sparse_view_ct():
    """On an ill-posed operator: the objective falls with iterations and the proximal-gradient fixed-point
    residual of the result is small (the optimality condition of the convex problem)."""
    op = ParallelBeamCT.sparse_view(32, 12)
    x = (2.0 * shepp_logan(32)).reshape(1, 1, 32, 32).to(torch.float32)
    y = op.A(x) + 0.05 * torch.randn(op.A(x).shape, generator=torch.Generator().manual_seed(4))
    m = Measurement(op, y, 0.05)
    lam = 0.05

    def solve(iterations):
        s = L1Wavelet(lam, iterations=iterations, levels=3)
        return s, run(s, m, None, n_particles=1, generator=torch.Generator().manual_seed(0), progress=False).samples[:, 0]

    s, short = solve(20)
    _, long = solve(2000)
    assert float(s.objective(m, long)) < float(s.objective(m, short))
    t = 1.0 / m.operator_norm_sq(50, torch.ones_like(long))
    w = WaveletTransform("db4", 3)
    grad = m.adjoint(m.residual(long).neg())
    step = w.inverse(soft_threshold(w.forward(long - t.view(-1, 1, 1, 1) * grad), t * lam))
    assert float((step - long).norm() / long.norm()) < 1e-4
    assert float(((long - x) ** 2).mean()) < float(((m.adjoint(y) / m.operator_norm_sq(20, x) - x) ** 2).mean())
