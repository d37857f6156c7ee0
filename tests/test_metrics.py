"""Posterior-fidelity metrics against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from invdiff.metrics import (PROJECTION_SEED, mode_weights, moment_errors, sliced_wasserstein,
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
