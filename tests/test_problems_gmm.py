"""The Gaussian-mixture exact-posterior suite: problems are well formed and the scores separate an
exact sampler from a wrong one."""

from __future__ import annotations

import pytest
import torch

from invdiff.posterior import Posterior
from invdiff.priors import GaussianMixture
from invdiff.problems.gmm import (COVERAGE_TOLERANCE, exact_as_posterior, gmm_problem, interval_mass, score_posterior,
                                  standard_problems)
from invdiff.samplers import DDIM, DPS, REDDiff, run


def test_standard_problems_have_the_stated_shapes():
    problems = standard_problems(torch.Generator().manual_seed(0))
    assert [(p.info["dim"], p.measurement.y.shape[1], float(p.measurement.sigma[0])) for p in problems] == \
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


def test_interval_mass_is_the_exact_probability():
    # one component: mean +- 1.645 sd holds 0.9; a mixture of two equal far-apart components: half of it
    one = GaussianMixture(torch.ones(1, 1, dtype=torch.float64), torch.tensor([[[1.0, -2.0]]], dtype=torch.float64),
                          torch.diag(torch.tensor([4.0, 0.25], dtype=torch.float64)).reshape(1, 1, 2, 2))
    z = 1.6448536269514722
    mass = interval_mass(one, torch.tensor([1 - 2 * z, -2 - 0.5 * z]), torch.tensor([1 + 2 * z, -2 + 0.5 * z]))
    assert torch.allclose(mass, torch.full((2,), 0.9, dtype=torch.float64), atol=1e-12)
    two = GaussianMixture(torch.full((1, 2), 0.5, dtype=torch.float64), torch.tensor([[[-50.0], [50.0]]], dtype=torch.float64),
                          torch.ones(1, 2, 1, 1, dtype=torch.float64))
    assert float(interval_mass(two, torch.tensor([40.0]), torch.tensor([60.0]))[0]) == pytest.approx(0.5, abs=1e-12)


def test_exact_samples_pass_the_fidelity_tests(suite):
    """Each test fails an exact sampler with probability about 1 % (module docstring of invdiff.problems.gmm):
    over 8 independent sets of 400 exact samples at most one fails either test."""
    problem = suite[4]
    passed = []
    for seed in range(8):
        g = torch.Generator().manual_seed(30 + seed)
        s = score_posterior(problem, exact_as_posterior(problem, 400, g), g)
        passed.append((s["sw_pass"], s["coverage_pass"]))
    assert sum(p[0] for p in passed) >= 7 and sum(p[1] for p in passed) >= 7, passed


@pytest.mark.parametrize("index", [1, 4])
def test_a_spread_20_percent_too_small_fails_the_coverage_test(suite, index):
    """Exact samples pulled 20 % towards the exact mean: every coordinate's 90 % interval holds under 0.85.
    The sliced Wasserstein test catches it on the unimodal posterior (index 4) but not on index 1, whose
    distance is dominated by the sampling noise of its mode weights: the coverage test is the sharper one."""
    problem = suite[index]
    g = torch.Generator().manual_seed(21)
    exact = exact_as_posterior(problem, 1000, g)
    mean = problem.exact.mean()[0]
    t = score_posterior(problem, Posterior(mean + 0.8 * (exact.samples - mean), exact.log_weights), g)
    assert t["coverage_pass"] == 0.0 and t["coverage_90_max"] < 0.9 - COVERAGE_TOLERANCE, t
    assert t["delta_cal"] == pytest.approx(0.64, abs=0.06)  # variance 0.8^2 of the exact one, the mean kept
    if index == 4:
        assert t["sw_pass"] == 0.0 and t["sw"] > 2 * t["sw_floor_q99"], t


def test_one_surviving_particle_fails_the_sliced_wasserstein_test(suite):
    """Exact samples of which one carries all the weight (ESS 1) are one sample, not 1000: held to the floor of
    1000 exact samples they fail, where a floor at the effective size would have passed them."""
    problem = suite[4]
    g = torch.Generator().manual_seed(22)
    exact = exact_as_posterior(problem, 1000, g)
    log_w = torch.full_like(exact.log_weights, -1e4)
    log_w[0, 0] = 0.0
    s = score_posterior(problem, Posterior(exact.samples, log_w), g)
    assert s["ess"] == pytest.approx(1.0) and s["sw_pass"] == 0.0 and s["coverage_pass"] == 0.0, s


def test_prior_samples_score_far_from_the_posterior(problem):
    g = torch.Generator().manual_seed(3)
    prior_samples = run(DDIM(100, eta=1.0), None, problem.prior, n_particles=4000, generator=g, progress=False)
    s = score_posterior(problem, prior_samples, g)
    assert s["sw"] > 3 * s["sw_exact"] and s["mode_tv"] > 0.3


@pytest.fixture(scope="module")
def suite():
    return standard_problems(torch.Generator().manual_seed(0))


# Measured at 400 particles and 100 network evaluations (seeds 1 and 2; step sizes and RED-Diff's
# lam/lr are those the tuned GMM suite selected on its independent tuning draw, scripts/benchmarks/gmm-tuned.toml):
#   d8-m4:  DPS ancestral (zeta 0.1) SW 4.9-5.1, mode TV 0.53;  RED-Diff (0.25, 0.05) SW 0.74-0.75,
#           mean error 0.28-0.29, mode TV 0.005;  prior samples SW 10.2-10.5;  exact vs exact 0.23-0.59.
#   d16-m12 (weak): DPS ancestral (0.03) SW 0.50-0.52, mean error 0.27-0.31;  DDIM-DPS (0.03) SW 0.57;
#           prior samples SW 16.9-17.4;  exact vs exact 0.10-0.11.
# Bounds: 1.3x the measured value. They pin today's accuracy, so a regression in a sampler, the
# schedule or the prior's denoiser fails them; DPS's distance to the exact posterior on d8-m4 is
# real bias (the SMC samplers of issue 7 exist to remove it), not a tolerance.
@pytest.mark.parametrize("index, make, bounds", [
    (2, lambda: DPS(100, step_size=0.1), {"sw": 6.6, "mode_tv": 0.7}),
    (2, lambda: REDDiff(100, lam=0.25, lr=0.05), {"sw": 1.0, "mean_rel": 0.38, "mode_tv": 0.02}),
    (4, lambda: DPS(100, step_size=0.03), {"sw": 0.68, "mean_rel": 0.4}),
    (4, lambda: DPS(100, step_size=0.03, eta=0.0), {"sw": 0.75}),
], ids=["d8m4-dps", "d8m4-red-diff", "d16m12-dps", "d16m12-ddim-dps"])
def test_suite_scores_stay_within_measured_bounds(suite, index, make, bounds):
    problem = suite[index]
    post = run(make(), problem.measurement, problem.prior, n_particles=400, generator=torch.Generator().manual_seed(1),
               progress=False)
    scores = score_posterior(problem, post, torch.Generator().manual_seed(11))
    for key, bound in bounds.items():
        assert scores[key] < bound, (key, scores)
    prior_samples = run(DDIM(100, eta=1.0), None, problem.prior, n_particles=400,
                        generator=torch.Generator().manual_seed(1), progress=False)
    assert scores["sw"] < 0.7 * score_posterior(problem, prior_samples, torch.Generator().manual_seed(11))["sw"]
