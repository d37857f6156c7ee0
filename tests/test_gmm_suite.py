"""The Gaussian-mixture exact-posterior suite: problems are well formed and the scores separate an
exact sampler from a wrong one."""

from __future__ import annotations

import pytest
import torch

from invdiff.benchmark import gmm_problem, score_posterior, standard_problems
from invdiff.benchmark.gmm_suite import exact_as_posterior
from invdiff.samplers import DDIM, run


def test_standard_problems_have_the_stated_shapes():
    problems = standard_problems(torch.Generator().manual_seed(0))
    assert [(p.dim, p.measurement.y.shape[1], float(p.measurement.sigma[0])) for p in problems] == \
        [(8, 1, 0.1), (8, 2, 0.1), (8, 4, 0.1), (80, 1, 0.1), (16, 12, 1.0), (16, 2, 0.05)]
    for p in problems:
        s = torch.linalg.svdvals(p.measurement.physics.matrix)
        assert bool((s > 0).all() and (s < 1).all())  # MCGdiff's operators: singular values in (0, 1)
        assert abs(float(p.exact.weights.sum()) - 1) < 1e-12


@pytest.fixture(scope="module")
def problem():
    return gmm_problem(8, 2, 0.1, torch.Generator().manual_seed(1))


def test_exact_samples_score_at_the_floor(problem):
    g = torch.Generator().manual_seed(2)
    s = score_posterior(problem, exact_as_posterior(problem, 4000, g), g)
    assert s["sw"] < 1.5 * s["sw_exact"]
    assert s["mean_rel"] < 0.1 and s["mode_tv"] < 0.05 and s["ess"] == pytest.approx(4000)


def test_prior_samples_score_far_from_the_posterior(problem):
    g = torch.Generator().manual_seed(3)
    prior_samples = run(DDIM(100, eta=1.0), None, problem.prior, n_particles=4000, generator=g, progress=False)
    s = score_posterior(problem, prior_samples, g)
    assert s["sw"] > 3 * s["sw_exact"] and s["mode_tv"] > 0.3
