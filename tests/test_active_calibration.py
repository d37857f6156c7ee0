"""The per-frequency calibration of active subsampling: the fit recovers known error/variance ratios per
distance from the k-space centre, ignores measured columns, and the policy ranks by the scaled variance."""

from __future__ import annotations

import pytest
import torch

from invdiff.active import AcquisitionPlan, Oracle, run_active
from invdiff.active.calibration import column_distance, fit_column_scale, fit_records
from invdiff.measurement import Measurement
from invdiff.operators import Inpainting
from invdiff.priors import GaussianMixturePrior
from invdiff.samplers import DPS


def _records(k: int, m: int, ratio_of_distance, g: torch.Generator):
    var = torch.rand(m, k, generator=g, dtype=torch.float64) + 0.1
    err = var * ratio_of_distance(column_distance(k).to(torch.float64))
    measured = torch.rand(m, k, generator=g) < 0.3
    return var, err, measured


def test_column_distance_follows_fastmri_centre():
    assert column_distance(8).tolist() == [4, 3, 2, 1, 0, 1, 2, 3]
    assert column_distance(7).tolist() == [3, 2, 1, 0, 1, 2, 3]


def test_fit_recovers_the_ratio_per_distance_and_ignores_measured_columns():
    g = torch.Generator().manual_seed(0)
    truth = lambda d: 0.05 + d**2 / 10  # noqa: E731  (any positive profile)
    var, err, measured = _records(32, 40, truth, g)
    err_garbage = torch.where(measured, torch.full_like(err, 1e6), err)  # what measured columns say is ignored
    scale = fit_column_scale(var, err_garbage, measured, smooth=0)
    torch.testing.assert_close(scale, truth(column_distance(32).to(torch.float64)))
    # pooling neighbours is the ratio of pooled sums: exact on a constant profile, in between otherwise
    flat = fit_column_scale(var, 3.0 * var, measured, smooth=3)
    torch.testing.assert_close(flat, torch.full((32,), 3.0, dtype=torch.float64))
    pooled = fit_column_scale(var, err, measured, smooth=2)
    exact = truth(column_distance(32).to(torch.float64))
    assert bool((pooled[16:] > 0).all()) and bool((pooled[17:].diff() > 0).all())  # still increasing outward
    assert float((pooled - exact).abs().max()) < float(exact.max() - exact.min())


def test_unseen_distances_get_the_median_and_the_floor_holds():
    k = 16
    var = torch.ones(3, k, dtype=torch.float64)
    err = torch.ones(3, k, dtype=torch.float64)
    err[:, 0] = 0.0  # distance 8 predicted perfectly: floored, not zero
    measured = torch.zeros(3, k, dtype=torch.bool)
    measured[:, 7:10] = True  # columns 7, 8, 9: distances 1, 0, 1 are never unmeasured
    scale = fit_column_scale(var, err, measured, smooth=0, floor=1e-2)
    assert float(scale[8]) == 1.0 and float(scale[7]) == 1.0  # d = 0, 1: unseen, the median
    assert float(scale[0]) == pytest.approx(1e-2)


def test_bad_records_are_refused():
    with pytest.raises(ValueError, match=r"\(M, K\) alike"):
        fit_column_scale(torch.ones(3, 8), torch.ones(3, 7), torch.zeros(3, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="no unmeasured column"):
        fit_column_scale(torch.ones(2, 4), torch.ones(2, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="smooth"):
        fit_column_scale(torch.ones(2, 4), torch.ones(2, 4), torch.zeros(2, 4, dtype=torch.bool), smooth=-1)


def _left_varying_prior() -> GaussianMixturePrior:
    """6x6 images whose left half takes one of three levels (-2, 2, 0) and whose right half is ~0."""
    means = []
    for level in (-2.0, 2.0, 0.0):
        m = torch.zeros(1, 6, 6, dtype=torch.float64)
        m[..., :3] = level
        means.append(m.flatten())
    covs = 0.01 * torch.eye(36, dtype=torch.float64).expand(3, 36, 36)
    return GaussianMixturePrior(torch.full((3,), 1 / 3, dtype=torch.float64), torch.stack(means), covs,
                                event_shape=(1, 6, 6))


def _pixel_problem(items: int):
    """``items`` draws of the left-varying prior observed with noise, three right-half pixels measured first,
    two more at each of two acquisitions."""
    g = torch.Generator().manual_seed(0)
    prior = _left_varying_prior()
    truth = prior.sample(items, g).to(torch.float32)
    oracle = Oracle(truth + 0.05 * torch.randn(truth.shape, generator=g))
    m = Measurement(Inpainting(torch.ones(6, 6)), oracle.y_full, 0.05)
    initial = torch.zeros(36, dtype=torch.bool)
    initial[[5, 17, 29]] = True
    return prior, oracle, m, AcquisitionPlan(initial, budget=7, per_acquisition=2, window=(0.1, 0.6))


def test_policy_ranks_by_the_scaled_variance():
    prior, oracle, m, plan = _pixel_problem(1)
    left = torch.arange(36).reshape(6, 6)[:, :3].flatten()
    scale = torch.ones(36, dtype=torch.float64)
    scale[left] = 1e-12  # validation said: the left half's spread overstates its error 1e12-fold
    for policy in ("gaussian", "entropy"):
        kwargs = dict(n_particles=16, policy=policy, progress=False)
        plain = run_active(DPS(30, step_size=0.5), m, prior, oracle, plan, generator=torch.Generator().manual_seed(1),
                           **kwargs)
        scaled = run_active(DPS(30, step_size=0.5), m, prior, oracle, plan, generator=torch.Generator().manual_seed(1),
                            variance_scale=scale, **kwargs)
        assert bool(torch.isin(plain.order, left).all())
        assert not bool(torch.isin(scaled.order, left).any())


def test_bad_scales_are_refused():
    m = Measurement(Inpainting(torch.ones(6, 6)), torch.zeros(1, 1, 6, 6), 0.1)
    plan = AcquisitionPlan(torch.zeros(36, dtype=torch.bool), budget=2)
    common = dict(n_particles=2, generator=torch.Generator().manual_seed(0), progress=False)
    prior = _left_varying_prior()
    with pytest.raises(ValueError, match=r"\(36,\) positive factors"):
        run_active(DPS(4), m, prior, Oracle(torch.zeros(1, 1, 6, 6)), plan, policy="gaussian",
                   variance_scale=torch.ones(35), **common)
    with pytest.raises(ValueError, match=r"\(36,\) positive factors"):
        run_active(DPS(4), m, prior, Oracle(torch.zeros(1, 1, 6, 6)), plan, policy="gaussian",
                   variance_scale=torch.zeros(36), **common)
    with pytest.raises(ValueError, match="not 'oracle'"):
        run_active(DPS(4), m, prior, Oracle(torch.zeros(1, 1, 6, 6)), plan, policy="oracle",
                   variance_scale=torch.ones(36), **common)


def test_recorded_runs_fit_what_their_records_hold():
    prior, oracle, m, plan = _pixel_problem(2)
    initial = plan.initial
    res = run_active(DPS(20, step_size=0.5), m, prior, oracle, plan, n_particles=8, policy="gaussian", record=True,
                     generator=torch.Generator().manual_seed(1), progress=False)
    assert len(res.records) == 2 and all(r["variance"].shape == r["error"].shape == (2, 36) for r in res.records)
    assert bool(res.records[0]["measured"][:, initial].all()) and int(res.records[1]["measured"].sum()) == 2 * 5
    stacked = {k: torch.cat([r[k] for r in res.records]) for k in ("variance", "error", "measured")}
    torch.testing.assert_close(fit_records(res.records), fit_column_scale(**stacked))
    plain = run_active(DPS(20, step_size=0.5), m, prior, oracle, plan, n_particles=8, policy="gaussian",
                       generator=torch.Generator().manual_seed(1), progress=False)
    assert plain.records == [] and torch.equal(plain.order, res.order)  # recording changes nothing
    with pytest.raises(ValueError, match="no records"):
        fit_records([])
