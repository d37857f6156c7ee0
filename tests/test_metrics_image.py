"""Posterior-fidelity and fastMRI image metrics against hand-computed values and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invdiff import metrics
from invdiff.metrics import (PROJECTION_SEED, mode_weights, moment_errors, sliced_wasserstein, sliced_wasserstein_draws,
                             wasserstein_1d_squared)


def test_w2_1d_unequal_sizes_by_hand():
    # quantile functions differ by 0.5 on (1/3, 2/3): W2^2 = 0.25 * 1/3
    u = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    assert float(wasserstein_1d_squared(u, v)) == pytest.approx(1 / 12)


def test_w2_1d_weighted_equals_repeated():
    u = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    w = torch.tensor([1.0, 3.0], dtype=torch.float64)
    assert float(wasserstein_1d_squared(u, v, u_weights=w)) == pytest.approx(0.0, abs=1e-15)


def test_sliced_wasserstein_of_a_translation_is_exact():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 5, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    # W2 along direction theta is |theta . shift|; recompute the same directions independently
    theta = torch.randn(64, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(PROJECTION_SEED))
    theta = theta / theta.norm(dim=1, keepdim=True)
    expected = ((theta @ shift) ** 2).mean().sqrt()
    assert float(sliced_wasserstein(x, x + shift, n_projections=64)) == pytest.approx(float(expected), rel=1e-10)
    # and in expectation over directions it is ||shift|| / sqrt(d)
    sw = float(sliced_wasserstein(x, x + shift, n_projections=4000))
    assert sw == pytest.approx(float(shift.norm()) / 5**0.5, rel=0.03)
    assert float(sliced_wasserstein(x, x)) == 0.0


def test_moment_errors_and_mode_weights():
    s = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]], dtype=torch.float64)
    mean, cov = torch.tensor([1.0, 1.0], dtype=torch.float64), torch.eye(2, dtype=torch.float64)
    e = moment_errors(s, mean, cov)
    assert e["mean_l2"] == 0.0 and e["cov_rel"] == pytest.approx(0.0, abs=1e-15)
    e = moment_errors(s, mean + torch.tensor([3.0, 4.0], dtype=torch.float64), cov)
    assert e["mean_l2"] == pytest.approx(5.0) and e["mean_rel"] == pytest.approx(5.0 / 2**0.5)
    resp = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    torch.testing.assert_close(mode_weights(resp), torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(mode_weights(resp, torch.tensor([1.0, 2.0, 1.0])),
                               torch.tensor([0.5, 0.5], dtype=torch.float64))


# ----- fastMRI image metrics ------------------------------------------------------------------------
def _volume_pair(seed=0, shape=(3, 40, 32)):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(shape, generator=g, dtype=torch.float64) * 3.0
    return gt, gt + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)


def test_fastmri_metrics_equal_scikit_image_with_fastmri_settings():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    gt, pred = _volume_pair()
    g, p = gt.numpy(), pred.numpy()
    expected_ssim = np.mean([structural_similarity(g[i], p[i], data_range=g.max()) for i in range(3)])
    assert abs(metrics.ssim(gt, pred) - expected_ssim) < 1e-12
    assert abs(metrics.psnr(gt, pred) - peak_signal_noise_ratio(g, p, data_range=g.max())) < 1e-10
    assert abs(metrics.nmse(g, p) - np.linalg.norm(g - p) ** 2 / np.linalg.norm(g) ** 2) < 1e-14
    # fastMRI's call forms: psnr(gt, pred, maxval) and mse
    from skimage.metrics import mean_squared_error

    assert abs(metrics.psnr(gt, pred, maxval=5.0) - peak_signal_noise_ratio(g, p, data_range=5.0)) < 1e-10
    assert abs(metrics.mse(gt, pred) - mean_squared_error(g, p)) < 1e-15


def test_fastmri_metrics_hand_computed_cases():
    gt = torch.zeros(1, 8, 8, dtype=torch.float64)
    gt[0, :, 4:] = 2.0
    pred = gt + 0.5
    assert metrics.nmse(gt, pred) == pytest.approx(64 * 0.25 / (32 * 4.0))
    assert metrics.psnr(gt, pred) == pytest.approx(10 * np.log10(4.0 / 0.25))
    assert metrics.ssim(gt, gt) == pytest.approx(1.0) and metrics.psnr(gt, gt) == float("inf")
    # a constant offset c on a constant patch: luminance (2 u (u + c) + C1) / (u^2 + (u + c)^2 + C1)
    flat = torch.full((1, 7, 7), 1.0, dtype=torch.float64)
    c1 = (0.01 * 1.0) ** 2
    assert metrics.ssim(flat, flat + 0.5) == pytest.approx((2 * 1.5 + c1) / (1 + 2.25 + c1))


def test_fastmri_volume_metrics_crop_to_the_target_width():
    gt, pred = _volume_pair(shape=(2, 48, 32))
    pred_outside = pred.clone()
    pred_outside[:, :8] = 1e3  # rows outside the central 32x32 do not count
    a = metrics.fastmri_volume_metrics(gt, pred)
    b = metrics.fastmri_volume_metrics(gt, pred_outside)
    assert a == pytest.approx(b)
    assert metrics.center_crop(torch.arange(10.0).reshape(1, 10), (1, 3)).tolist() == [[3.0, 4.0, 5.0]]
    with pytest.raises(ValueError, match=r"\(slices, H, W\)"):
        metrics.ssim(gt[0], pred[0])


@pytest.mark.parametrize("n", [1000, 713, 1])
def test_sliced_wasserstein_draws_equal_separate_calls(n):
    g = torch.Generator().manual_seed(0)
    y = torch.randn(1000, 6, dtype=torch.float64, generator=g)
    draws = [1.1 * torch.randn(n, 6, dtype=torch.float64, generator=g) for _ in range(3)]
    separate = torch.stack([sliced_wasserstein(x, y, n_projections=64) for x in draws])
    assert torch.allclose(sliced_wasserstein_draws(draws, y, n_projections=64), separate, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="one shape"):
        sliced_wasserstein_draws([draws[0], y[:5]], y)
