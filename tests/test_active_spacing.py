"""The spacing constraint of active subsampling: ``Candidates.near`` is the brute-force neighbourhood,
the policy keeps new candidates apart while it can and still spends its whole budget when it cannot, and
``budget_spacing`` follows the line budget."""

from __future__ import annotations

import itertools

import pytest
import torch

from invdiff.active import AcquisitionPlan, Candidates, Oracle, budget_spacing, run_active
from invdiff.measurement import Measurement
from invdiff.operators import MultiCoilMRI
from invdiff.priors import GaussianMixturePrior
from invdiff.samplers import DPS


@pytest.mark.parametrize("spacing", [1, 2, 4])
def test_near_is_the_brute_force_neighbourhood(spacing):
    g = torch.Generator().manual_seed(spacing)
    cols = torch.rand(3, 20, generator=g) < 0.15
    idx = torch.arange(20)
    brute = ((idx[:, None] - idx[None, :]).abs() < spacing)[None] & cols[:, None, :]
    assert torch.equal(Candidates("columns", (4, 20)).near(cols, spacing), brute.any(-1))
    pix = torch.rand(2, 30, generator=g) < 0.1
    yx = torch.stack(torch.meshgrid(torch.arange(5), torch.arange(6), indexing="ij"), -1).reshape(30, 2)
    cheb = (yx[:, None] - yx[None]).abs().amax(-1) < spacing
    assert torch.equal(Candidates("pixels", (5, 6)).near(pix, spacing), (cheb[None] & pix[:, None, :]).any(-1))
    with pytest.raises(ValueError, match="spacing must be >= 1"):
        Candidates("columns", (4, 20)).near(cols, 0)


def _column_problem():
    g = torch.Generator().manual_seed(0)
    c, h, w = 2, 4, 16
    means = torch.stack([torch.full((c * h * w,), v, dtype=torch.float64) for v in (-1.0, 1.0)])
    prior = GaussianMixturePrior(torch.full((2,), 0.5, dtype=torch.float64), means,
                                 0.1 * torch.eye(c * h * w, dtype=torch.float64).expand(2, -1, -1),
                                 event_shape=(c, h, w))
    maps = torch.randn(2, h, w, generator=g, dtype=torch.complex64) * 0.3 + 1
    op = MultiCoilMRI(torch.ones(w), maps / (maps.abs() ** 2).sum(0, keepdim=True).sqrt())
    oracle = Oracle(op.A(prior.sample(2, g).to(torch.float32)))
    return prior, Measurement(op, oracle.y_full, 0.01), oracle


@pytest.mark.parametrize("per_acquisition", [1, 2])
def test_new_columns_keep_their_spacing_while_they_can(per_acquisition):
    prior, m, oracle = _column_problem()
    initial = torch.zeros(16, dtype=torch.bool)
    initial[7:9] = True
    plan = AcquisitionPlan(initial, budget=6, per_acquisition=per_acquisition)
    res = run_active(DPS(12, step_size=0.2), m, prior, oracle, plan, n_particles=3, policy="random",
                     min_spacing=2, generator=torch.Generator().manual_seed(4), progress=False)
    for row in res.order.tolist():  # a pick blocks 3 of the 12 columns 2 from 7-8: any 4 greedy picks fit
        assert all(abs(a - b) >= 2 for a, b in itertools.combinations(row + [7], 2)), row
        assert all(abs(a - 8) >= 2 for a in row), row
    crowded = run_active(DPS(12, step_size=0.2), m, prior, oracle, plan, n_particles=3, policy="random",
                         min_spacing=6, generator=torch.Generator().manual_seed(4), progress=False)
    assert crowded.acquired.sum(1).tolist() == [6, 6]  # room for 2 at spacing 6: then it gives way
    for row in crowded.order.tolist():
        assert len(set(row)) == 4 and not set(row) & {7, 8}
    with pytest.raises(ValueError, match="min_spacing must be >= 1"):
        run_active(DPS(4), m, prior, oracle, plan, n_particles=2, policy="random", min_spacing=0,
                   generator=torch.Generator().manual_seed(0), progress=False)


def test_budget_spacing_follows_the_line_budget():
    initial = torch.zeros(128, dtype=torch.bool)
    initial[59:69] = True
    assert budget_spacing(AcquisitionPlan(initial, budget=16), 0.25) == 5  # 6 new lines over 118 free
    assert budget_spacing(AcquisitionPlan(initial, budget=32), 0.25) == 2  # 22 new lines
    assert budget_spacing(AcquisitionPlan(initial, budget=16), 0.0) == 1
    allowed = torch.zeros(128, dtype=torch.bool)
    allowed[4:124] = True  # padding columns are not free
    assert budget_spacing(AcquisitionPlan(initial, budget=16, allowed=allowed), 0.5) == 10  # ceil(0.5 * 110 / 6)
    assert budget_spacing(AcquisitionPlan(torch.zeros(100, dtype=torch.bool), budget=4), 1.0, "pixels") == 5
    with pytest.raises(ValueError, match="fraction >= 0"):
        budget_spacing(AcquisitionPlan(initial, budget=16), -1.0)
