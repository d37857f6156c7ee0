"""Particle utilities and the Posterior container."""

from __future__ import annotations

import pytest
import torch

from invdiff.particles import effective_sample_size, gather_particles, multinomial_resample, systematic_resample
from invdiff.rng import BatchGenerator
from invdiff.samplers import Posterior


def test_ess_known_values():
    lw = torch.log(torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 2.0, 0.0]]))
    torch.testing.assert_close(effective_sample_size(lw), torch.tensor([4.0, 1.0, 16 / 6], dtype=torch.float64))
    assert effective_sample_size(lw).dtype == torch.float64


def test_systematic_copies_are_floor_or_ceil_of_expected_counts():
    g = torch.Generator().manual_seed(0)
    lw = torch.randn(50, 37, generator=g, dtype=torch.float64) * 2
    idx = systematic_resample(lw, BatchGenerator.spawn(g, 50))
    counts = torch.zeros(50, 37, dtype=torch.float64).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    expected = torch.softmax(lw, -1) * 37
    assert bool((counts >= expected.floor() - 1e-9).all() and (counts <= expected.ceil() + 1e-9).all())


def test_multinomial_is_unbiased():
    g = torch.Generator().manual_seed(1)
    w = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    rows, n = 4000, 4
    idx = multinomial_resample(w.log().expand(rows, n), BatchGenerator.spawn(g, rows))
    freq = torch.bincount(idx.reshape(-1), minlength=4).double() / (rows * n)
    se = (w * (1 - w) / (rows * n)).sqrt()
    assert bool(((freq - w).abs() < 4 * se).all())


def test_resampling_rows_do_not_depend_on_batch_size():
    lw = torch.randn(5, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for resample in (systematic_resample, multinomial_resample):
        big = resample(lw, BatchGenerator.spawn(torch.Generator().manual_seed(7), 5))
        small = resample(lw[:1], BatchGenerator.spawn(torch.Generator().manual_seed(7), 1))
        assert torch.equal(big[:1], small)


def test_batch_generator_needs_a_generator():
    with pytest.raises(TypeError, match="torch.Generator"):
        BatchGenerator.spawn(0, 2)


def test_gather_is_item_major():
    x = torch.arange(6.0).reshape(6, 1)  # B=2 items x N=3 particles
    idx = torch.tensor([[2, 2, 0], [1, 0, 0]])
    assert gather_particles(x, idx).flatten().tolist() == [2.0, 2.0, 0.0, 4.0, 3.0, 3.0]


def test_posterior_weighted_moments_and_resampling():
    samples = torch.tensor([[[0.0], [1.0], [3.0]]], dtype=torch.float64)
    lw = torch.log(torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64))
    p = Posterior(samples, lw)
    torch.testing.assert_close(p.mean, torch.tensor([[1.0]], dtype=torch.float64))
    torch.testing.assert_close(p.var, torch.tensor([[0.5 * 1 + 0.25 * 0 + 0.25 * 4]], dtype=torch.float64))
    r = p.resampled(torch.Generator().manual_seed(0))
    assert torch.equal(r.log_weights, torch.zeros_like(lw)) and r.samples.shape == samples.shape
    q = Posterior(samples, torch.zeros(1, 3, dtype=torch.float64)).reweighted(lw)
    torch.testing.assert_close(q.weights, p.weights)
    with pytest.raises(ValueError, match="log_weights"):
        Posterior(samples, torch.zeros(1, 2))
