"""Weighted quantiles, standard deviations and credible-interval coverage (invdiff.metrics.calibration)."""

import pytest
import torch

from invdiff.metrics.calibration import interval_coverage, weighted_quantiles, weighted_std


def test_weighted_quantiles_invert_the_weighted_distribution_function():
    values = torch.tensor([[3.0, 1.0, 2.0, 4.0]], dtype=torch.float64).reshape(1, 4, 1)
    weights = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    # sorted: 1 (0.2), 2 (0.3), 3 (0.1), 4 (0.4); cdf 0.2, 0.5, 0.6, 1.0
    q = weighted_quantiles(values, weights, torch.tensor([0.1, 0.2, 0.55, 0.61, 1.0], dtype=torch.float64))
    assert q[:, 0, 0].tolist() == [1.0, 1.0, 3.0, 4.0, 4.0]


def test_weighted_std_matches_the_definition_and_ignores_zero_weight_particles():
    values = torch.tensor([[0.0, 2.0, 100.0]]).reshape(1, 3, 1, 1)
    weights = torch.tensor([[0.5, 0.5, 0.0]])
    torch.testing.assert_close(weighted_std(values, weights), torch.ones(1, 1, 1))


def test_exact_samples_are_calibrated():
    """Particles and truth drawn from the same N(0, 1) per pixel: coverage equals the nominal level."""
    g = torch.Generator().manual_seed(0)
    particles = torch.randn(2, 400, 50, 50, generator=g, dtype=torch.float64)
    truth = torch.randn(2, 50, 50, generator=g, dtype=torch.float64)
    weights = torch.full((2, 400), 1 / 400, dtype=torch.float64)
    cov = interval_coverage(particles, weights, truth, [0.5, 0.9])
    assert cov[0.5] == pytest.approx(0.5, abs=0.03) and cov[0.9] == pytest.approx(0.9, abs=0.03)
    # an overconfident posterior (std 0.5) covers far less
    narrow = interval_coverage(0.5 * particles, weights, truth, [0.9])
    assert narrow[0.9] < 0.65
    region = torch.zeros(2, 50, 50, dtype=torch.bool)
    region[:, :10] = True
    assert 0.8 < interval_coverage(particles, weights, truth, [0.9], region)[0.9] < 1.0
