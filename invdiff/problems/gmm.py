"""The Gaussian-mixture suite: posterior problems whose exact answer is known.

A problem is a Gaussian-mixture prior, a linear measurement ``y = A x0 + s n`` of one prior draw
``x0``, and the exact posterior (again a mixture, :meth:`GaussianMixturePrior.exact_posterior`).
:func:`score_posterior` compares a sampler's weighted samples with it:

* ``sw``: sliced Wasserstein distance to ``n`` exact posterior samples, beside ``sw_exact``, the same
  distance between two independent exact sets of that size (the floor a perfect sampler reaches);
* ``mean_rel``: error of the weighted mean over the posterior's own spread ``sqrt(trace(cov))``;
* ``cov_rel``: relative Frobenius error of the weighted covariance;
* ``mode_tv``: total-variation distance between the exact component weights and the fraction of
  (weighted) samples each component claims;
* ``delta_cal``: the calibration ratio, the samples' total variance ``trace(cov)`` over the expected squared
  error of their mean for a truth drawn from the exact posterior, ``trace(exact cov) + ||mean - exact mean||^2``
  (1 when the spread matches the error; below 1 the samples claim more certainty than they have);
* ``coverage_90_min`` / ``coverage_90_max``: over the coordinates, the smallest and largest *exact*
  posterior probability of the samples' central 90 % interval (weighted 5 % and 95 % quantiles of each
  coordinate; :func:`interval_mass`). A calibrated sampler gives 0.9 in every coordinate;
* the two pass/fail tests of the exact-posterior suite (1 passes, 0 fails):

  - ``sw_pass``: ``sw`` is at most ``sw_floor_q99``, the 99th percentile of the distance from ``N`` exact
    samples (``N`` = the sampler's particle count) to the same reference set over :data:`FLOOR_DRAWS`
    draws, so an exact sampler fails about one problem in a hundred. Weighted samples are held to the
    floor of their particle count, not of their effective size: ``N`` particles with an ESS of ``N / 2`` are
    worth fewer samples, which is what the test measures (a floor at the ESS would let a run that keeps one
    particle pass against the distance of two exact samples);
  - ``coverage_pass``: every coordinate's ``coverage_90`` is within :data:`COVERAGE_TOLERANCE` of 0.9
    (an exact sampler of 1000 independent draws misses by 0.0095 in standard deviation).

:func:`standard_problems` is the suite of the samplers issue: MCGdiff's 25-mode grid mixture
(Cardoso et al. 2023) with Haar-random operators whose singular values are uniform in (0, 1), in
dimension 8 with 1, 2 and 4 observations and in dimension 80 with 1; and a 16-dimensional mixture
seen through 12 weak (noise 1) or 2 strong (noise 0.05) observations.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from invdiff.measurement import Measurement
from invdiff.metrics import (mode_weights, moment_errors, sliced_wasserstein, sliced_wasserstein_draws,
                             weighted_moments, weighted_quantiles)
from invdiff.operators import MatrixOperator
from invdiff.posterior import Posterior
from invdiff.priors import GaussianMixture, GaussianMixturePrior
from invdiff.problems.base import Problem

__all__ = ["COVERAGE_TOLERANCE", "FLOOR_DRAWS", "exact_as_posterior", "gmm_problem", "interval_mass",
           "score_posterior", "standard_problems"]

#: Largest ``|coverage_90 - 0.9|`` over the coordinates that passes the coverage test.
COVERAGE_TOLERANCE = 0.05
#: Draws of the exact-vs-exact distance behind ``sw_floor_q99``.
FLOOR_DRAWS = 100


def _vectors(x: Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def gmm_problem(dim: int, observations: int, noise_sigma: float, generator: torch.Generator,
                name: str | None = None) -> Problem:
    """MCGdiff's grid mixture in ``dim`` dimensions seen through ``observations`` random projections: a
    :class:`~invdiff.problems.base.Problem` of one item whose ``prior`` is the mixture, ``exact`` its
    closed-form posterior (batch shape ``(1,)``) and ``target`` the drawn ``x0`` ``(1, dim)``."""
    prior = GaussianMixturePrior.grid(dim, generator)
    op = MatrixOperator.random(observations, dim, generator)
    x0 = prior.sample(1, generator)
    y = op.A(x0) + noise_sigma * torch.randn(1, observations, generator=generator, dtype=torch.float64)
    m = Measurement(op, y, noise_sigma)
    info = {"operator": "MatrixOperator", "dim": dim, "observations": observations, "noise_sigma": noise_sigma,
            "components": int(prior.mixture.weights.shape[-1])}
    return Problem(m, _vectors(x0), _vectors, None, "", "gmm", prior, info,
                   name=name or f"d{dim}-m{observations}-s{noise_sigma:g}", exact=prior.exact_posterior(m))


def standard_problems(generator: torch.Generator) -> list[Problem]:
    """The suite of the module docstring, drawn from ``generator`` in a fixed order."""
    specs = [(8, 1, 0.1), (8, 2, 0.1), (8, 4, 0.1), (80, 1, 0.1), (16, 12, 1.0), (16, 2, 0.05)]
    return [gmm_problem(d, m, s, generator) for d, m, s in specs]


def interval_mass(exact: GaussianMixture, lo: Tensor, hi: Tensor) -> Tensor:
    """Exact probability of ``lo_j <= x_j <= hi_j`` per coordinate ``j`` under the first mixture of
    ``exact`` (each coordinate's marginal is a mixture of normals): ``lo``, ``hi`` ``(d,)`` -> ``(d,)``."""
    w = exact.weights[0]  # (K,)
    mu = exact.means[0]  # (K, d)
    sd = torch.diagonal(exact.covs[0], dim1=-2, dim2=-1).clamp_min(1e-300).sqrt()  # (K, d)
    lo, hi = lo.to(torch.float64), hi.to(torch.float64)
    mass = torch.special.ndtr((hi - mu) / sd) - torch.special.ndtr((lo - mu) / sd)
    return (w[:, None] * mass).sum(0)


def score_posterior(problem: Problem, posterior: Posterior, generator: torch.Generator,
                    n_reference: int | None = None) -> dict[str, float]:
    """Scores of the module docstring for the first item of ``posterior`` (samples ``(1, N, d)``)."""
    samples = posterior.samples[0].reshape(posterior.samples.shape[1], -1).to(torch.float64)
    weights = posterior.weights[0]
    n = n_reference or samples.shape[0]
    ref = problem.exact.sample(n, generator)[0]
    ref2 = problem.exact.sample(n, generator)[0]
    exact_mean, exact_cov = problem.exact.mean()[0], problem.exact.cov()[0]
    resp = problem.prior.mixture.responsibilities(samples)
    sampled_modes = mode_weights(resp, weights)
    exact_modes = problem.exact.weights[0]
    moments = moment_errors(samples, exact_mean, exact_cov, weights)
    sample_mean, sample_cov = weighted_moments(samples, weights)
    delta_cal = float(torch.trace(sample_cov) / (torch.trace(exact_cov) + (sample_mean - exact_mean).square().sum()))
    sw = float(sliced_wasserstein(samples, ref, x_weights=weights))
    ess = float(posterior.ess[0])
    floor = sliced_wasserstein_draws([problem.exact.sample(samples.shape[0], generator)[0] for _ in range(FLOOR_DRAWS)],
                                     ref)
    floor_q99 = float(torch.quantile(floor, 0.99))
    lo, hi = weighted_quantiles(samples[None], weights[None], torch.tensor([0.05, 0.95]))[:, 0]
    coverage = interval_mass(problem.exact, lo, hi)
    return {
        "sw": sw,
        "sw_exact": float(sliced_wasserstein(ref2, ref)),
        "mean_rel": moments["mean_rel"],
        "cov_rel": moments["cov_rel"],
        "mode_tv": 0.5 * float((sampled_modes - exact_modes).abs().sum()),
        "ess": ess,
        "delta_cal": delta_cal,
        "sw_floor_q99": floor_q99,
        "coverage_90_min": float(coverage.min()),
        "coverage_90_max": float(coverage.max()),
        "sw_pass": float(sw <= floor_q99),
        "coverage_pass": float(bool(((coverage - 0.9).abs() <= COVERAGE_TOLERANCE).all())),
    }


def exact_as_posterior(problem: Problem, n: int, generator: torch.Generator) -> Posterior:
    """``n`` exact posterior samples as an equally weighted :class:`Posterior` (the reference)."""
    s = problem.exact.sample(n, generator)
    return Posterior(s, torch.zeros(1, n, dtype=torch.float64))
