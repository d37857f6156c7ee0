"""The Gaussian-mixture suite: posterior problems whose exact answer is known.

A problem is a Gaussian-mixture prior, a linear measurement ``y = A x0 + s n`` of one prior draw
``x0``, and the exact posterior (again a mixture, :meth:`GaussianMixturePrior.exact_posterior`).
:func:`score_posterior` compares a sampler's weighted samples with it:

* ``sw``: sliced Wasserstein distance to ``n`` exact posterior samples, beside ``sw_exact``, the same
  distance between two independent exact sets of that size (the floor a perfect sampler reaches);
* ``mean_rel``: error of the weighted mean over the posterior's own spread ``sqrt(trace(cov))``;
* ``cov_rel``: relative Frobenius error of the weighted covariance;
* ``mode_tv``: total-variation distance between the exact component weights and the fraction of
  (weighted) samples each component claims.

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
from invdiff.metrics import mode_weights, moment_errors, sliced_wasserstein
from invdiff.operators import MatrixOperator
from invdiff.posterior import Posterior
from invdiff.priors import GaussianMixturePrior
from invdiff.problems.base import Problem

__all__ = ["exact_as_posterior", "gmm_problem", "score_posterior", "standard_problems"]


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
    return {
        "sw": float(sliced_wasserstein(samples, ref, x_weights=weights)),
        "sw_exact": float(sliced_wasserstein(ref2, ref)),
        "mean_rel": moments["mean_rel"],
        "cov_rel": moments["cov_rel"],
        "mode_tv": 0.5 * float((sampled_modes - exact_modes).abs().sum()),
        "ess": float(posterior.ess[0]),
    }


def exact_as_posterior(problem: Problem, n: int, generator: torch.Generator) -> Posterior:
    """``n`` exact posterior samples as an equally weighted :class:`Posterior` (the reference)."""
    s = problem.exact.sample(n, generator)
    return Posterior(s, torch.zeros(1, n, dtype=torch.float64))
