"""The Gaussian-mixture prior: the ground truth, so it is checked against independent estimates."""

from __future__ import annotations

import pytest
import torch

from invdiff.measurement import Measurement
from invdiff.operators import MatrixOperator
from invdiff.priors import GaussianMixture, GaussianMixturePrior


def _random_prior(g: torch.Generator, d: int = 3, k: int = 3) -> GaussianMixturePrior:
    roots = torch.randn(k, d, d, generator=g, dtype=torch.float64) * 0.6
    covs = roots @ roots.transpose(-1, -2) + 0.2 * torch.eye(d, dtype=torch.float64)
    means = 3 * torch.randn(k, d, generator=g, dtype=torch.float64)
    return GaussianMixturePrior(torch.rand(k, generator=g, dtype=torch.float64) + 0.2, means, covs)


def test_denoiser_matches_monte_carlo_tweedie():
    g = torch.Generator().manual_seed(0)
    prior = _random_prior(g)
    x0 = prior.sample(400_000, g)
    sigma = 1.0
    x = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.0, -2.0]], dtype=torch.float64)
    log_w = -((x[:, None, :] - x0[None]) ** 2).sum(-1) / (2 * sigma**2)  # (2, M)
    w = torch.softmax(log_w, -1)
    mc = w @ x0
    ess = 1 / (w**2).sum(-1)
    spread = (w @ x0**2 - mc**2).sum(-1).sqrt()  # posterior std, all coordinates together
    err = (prior.denoise(x, sigma) - mc).norm(dim=-1)
    assert bool((ess > 1000).all())  # enough samples for the 1/sqrt(ESS) error bound below
    assert bool((err < 5 * spread / ess.sqrt()).all()), (err, spread / ess.sqrt())


def test_score_is_gradient_of_smoothed_log_density():
    g = torch.Generator().manual_seed(1)
    prior = _random_prior(g)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64) * 3
    for sigma in (0.1, 1.0, 10.0):
        xg = x.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(prior.log_prob(xg, sigma).sum(), xg)
        torch.testing.assert_close(prior.score(x, sigma), auto, rtol=1e-9, atol=1e-12)


def test_per_sample_sigma_equals_separate_calls():
    g = torch.Generator().manual_seed(2)
    prior = _random_prior(g)
    x = torch.randn(3, 3, generator=g, dtype=torch.float64)
    sig = torch.tensor([0.1, 1.0, 5.0], dtype=torch.float64)
    together = prior.denoise(x, sig)
    for i in range(3):
        torch.testing.assert_close(together[i : i + 1], prior.denoise(x[i : i + 1], float(sig[i])))


def test_exact_posterior_is_bayes_rule():
    """log posterior - log prior - log likelihood is the same constant (-log evidence) everywhere."""
    g = torch.Generator().manual_seed(3)
    prior = _random_prior(g)
    a = torch.randn(2, 3, generator=g, dtype=torch.float64)
    y = torch.randn(1, 2, generator=g, dtype=torch.float64)
    s = 0.7
    post = prior.posterior(a, y, s)
    x = torch.randn(50, 3, generator=g, dtype=torch.float64) * 3
    log_lik = -((x @ a.T - y) ** 2).sum(-1) / (2 * s**2) - 2 / 2 * torch.log(torch.tensor(2 * torch.pi * s**2))
    c = post.log_prob(x.unsqueeze(0))[0] - prior.log_prob(x) - log_lik
    assert float(c.std()) < 1e-10 * (1 + float(c.abs().mean()))


def test_exact_posterior_matches_importance_sampling():
    g = torch.Generator().manual_seed(4)
    prior = _random_prior(g)
    op = MatrixOperator.random(2, 3, g)
    x_true = prior.sample(1, g)
    s = 0.5
    y = op.A(x_true) + s * torch.randn(1, 2, generator=g, dtype=torch.float64)
    post = prior.exact_posterior(Measurement(op, y, s))
    x0 = prior.sample(1_000_000, g)
    w = torch.softmax(-((op.A(x0) - y) ** 2).sum(-1) / (2 * s**2), 0)
    ess = float(1 / (w**2).sum())
    mean_is = w @ x0
    cov_is = (w[:, None] * (x0 - mean_is)).T @ (x0 - mean_is)
    mean, cov = post.mean()[0], post.cov()[0]
    assert ess > 10_000
    # Monte-Carlo standard errors: std/sqrt(ESS) for the mean, a few percent for the covariance
    assert bool(((mean_is - mean).abs() < 5 * cov.diagonal().sqrt() / ess**0.5).all())
    assert float((cov_is - cov).norm() / cov.norm()) < 10 / ess**0.5


def test_mixture_sampling_moments():
    g = torch.Generator().manual_seed(5)
    prior = _random_prior(g)
    x = prior.sample(200_000, g)
    m, c = prior.mixture.mean(), prior.mixture.cov()
    assert float((x.mean(0) - m).norm()) < 5 * float(c.trace().sqrt()) / 200_000**0.5
    assert float((torch.cov(x.T) - c).norm() / c.norm()) < 0.02


def test_grid_mixture_follows_mcgdiff():
    prior = GaussianMixturePrior.grid(6, torch.Generator().manual_seed(0))
    means = prior.mixture.means
    assert means.shape == (25, 6)
    assert torch.equal(means[:, 0], means[:, 2]) and torch.equal(means[:, 1], means[:, 3])
    assert sorted(set(means[:, 0].tolist())) == [-16.0, -8.0, 0.0, 8.0, 16.0]
    torch.testing.assert_close(prior.mixture.covs, torch.eye(6, dtype=torch.float64).expand(25, 6, 6))


def test_bad_mixtures_are_rejected():
    with pytest.raises(ValueError, match="positive semi-definite"):
        GaussianMixture(torch.ones(1), torch.zeros(1, 2), -torch.eye(2).unsqueeze(0))
    with pytest.raises(ValueError, match=r"weights \(..., K\)"):
        GaussianMixture(torch.ones(2), torch.zeros(1, 2), torch.eye(2).unsqueeze(0))
    with pytest.raises(ValueError, match="event_shape"):
        GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.ones(1, 4), event_shape=(3,))
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.ones(1, 4), event_shape=(1, 2, 2))
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 1, 2, 2\)"):
        prior.denoise(torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="> 0"):
        prior.denoise(torch.zeros(2, 1, 2, 2), 0.0)
