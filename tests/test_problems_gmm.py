"""The Gaussian-mixture exact-posterior suite: problems are well formed and the scores separate an
exact sampler from a wrong one."""

from __future__ import annotations

import pytest
import torch

from invdiff.problems.gmm import exact_as_posterior, gmm_problem, score_posterior, standard_problems
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
