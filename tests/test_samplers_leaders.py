"""DDS, DAPS, PnP-DM and ΠGDM: each step checked against a closed form, and convergence where the method
claims it. (The registry contract suite, tests/test_sampler_contract.py, checks their shapes, seeds,
batch independence and moments on an exact Gaussian posterior beside every other sampler.)"""

from __future__ import annotations

import pytest
import torch

from invdiff.measurement import Measurement
from invdiff.operators import Inpainting, MatrixOperator
from invdiff.priors import GaussianMixturePrior
from invdiff.rng import BatchGenerator
from invdiff.samplers import DAPS, DDS, PiGDM, PnPDM, run
from invdiff.samplers.splitting import gaussian_likelihood_sample

F64 = torch.float64


def _gaussian(mean, cov):
    return GaussianMixturePrior(torch.ones(1, dtype=F64), torch.tensor([mean], dtype=F64),
                                torch.tensor([cov], dtype=F64))


def _sum_measurement(y=1.5, sigma=0.3):
    return Measurement(MatrixOperator(torch.tensor([[1.0, 1.0]], dtype=F64)), torch.tensor([[y]], dtype=F64), sigma)


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(0)
    return mean, (x - mean).T @ (x - mean) / (x.shape[0] - 1)


@pytest.mark.parametrize("operator", ["matrix", "inpainting"])
def test_perturbed_proximal_point_is_an_exact_draw_of_the_gaussian(operator):
    g = torch.Generator().manual_seed(0)
    if operator == "matrix":
        a = torch.randn(2, 3, generator=g, dtype=F64)
        m = Measurement(MatrixOperator(a), torch.tensor([[0.7, -0.2]], dtype=F64), 0.4)
        dense = a
    else:  # decomposable: the closed-form prox
        mask = torch.tensor([1.0, 0.0, 1.0], dtype=F64).reshape(1, 1, 3)
        m = Measurement(Inpainting(mask), torch.tensor([0.7, 0.0, -0.2], dtype=F64).reshape(1, 1, 1, 3), 0.4)
        dense = torch.diag(mask.flatten())
    n, gamma = 40000, 0.5
    z = torch.tensor([0.3, -1.0, 2.0], dtype=F64).reshape(1, *m.x_shape[1:])
    draws = gaussian_likelihood_sample(m.expand(n), z.expand(n, *z.shape[1:]).contiguous(), gamma,
                                       BatchGenerator.spawn(g, 1), n).reshape(n, 3)
    precision = dense.T @ dense / 0.16 + torch.eye(3, dtype=F64) / gamma
    cov = torch.linalg.inv(precision)
    mean = cov @ (dense.T @ m.y.flatten() / 0.16 + z.flatten() / gamma)
    got_mean, got_cov = _moments(draws)
    assert torch.allclose(got_mean, mean, atol=4 * float(cov.diag().max().sqrt()) / n**0.5)
    assert float((got_cov - cov).norm() / cov.norm()) < 0.03


def test_pigdm_guided_estimate_is_the_exact_conditional_mean_for_an_isotropic_gaussian_prior():
    # prior N(mu, c^2 I) with c = the prior's scale: p(x0 | x_t) is exactly N(x0_hat, r^2 I) and PiGDM's
    # guided Tweedie estimate is E[x0 | x_t, y]
    c = 1.0
    prior = _gaussian([1.0, -1.0], [[c**2, 0.0], [0.0, c**2]])
    m = _sum_measurement()
    sampler = PiGDM(num_steps=10)
    state = sampler.init(m, prior, 1, torch.Generator().manual_seed(0))
    a = torch.tensor([[1.0, 1.0]], dtype=F64)
    for sigma in (0.05, 0.7, 4.0):
        x = torch.tensor([[0.4, 0.9]], dtype=F64)
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            x0 = prior.denoise(xg, sigma)
            v = sampler.guidance_direction(state, x0.detach(), sigma)
            (g,) = torch.autograd.grad(x0, xg, grad_outputs=v)
        guided = x0.detach() + sigma**2 * g
        precision = torch.eye(2, dtype=F64) / c**2 + torch.eye(2, dtype=F64) / sigma**2 + a.T @ a / 0.09
        exact = torch.linalg.solve(precision, torch.tensor([1.0, -1.0], dtype=F64) / c**2 + x[0] / sigma**2
                                   + a[0] * 1.5 / 0.09)
        torch.testing.assert_close(guided[0], exact, rtol=1e-10, atol=1e-10)


def test_dds_data_step_is_the_proximal_point_or_the_consistent_point_nearest_the_estimate():
    m = Measurement(MatrixOperator(torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]], dtype=F64)),
                    torch.tensor([[1.0, -0.5]], dtype=F64), 0.2)
    prior = _gaussian([0.0, 0.0, 0.0], torch.eye(3).tolist())
    x0 = torch.tensor([[0.3, 0.1, -0.4]], dtype=F64)
    finite = DDS(num_steps=4, gamma=2.0, cg_iterations=10)
    state = finite.init(m, prior, 1, torch.Generator().manual_seed(0))
    weight = float(state.weight[0])
    torch.testing.assert_close(weight, 2.0 / float(m.operator_norm_sq()[0]))
    torch.testing.assert_close(finite.data_step(state, x0), m.prox(x0, weight * 0.04), rtol=1e-9, atol=1e-9)
    hard = DDS(num_steps=4, gamma=float("inf"), cg_iterations=10)
    u = hard.data_step(hard.init(m, prior, 1, torch.Generator().manual_seed(0)), x0)
    torch.testing.assert_close(m.forward(u), m.y, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(u, m.consistent(x0), rtol=1e-9, atol=1e-9)  # x0 + A^+(y - A x0)


def test_daps_langevin_chain_targets_the_gaussian_of_its_step():
    m = _sum_measurement()
    prior = _gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
    sampler = DAPS(num_steps=1, ode_steps=1, langevin_steps=3000, lr=0.05, lr_min_ratio=1.0)
    n, sigma = 4000, 0.5
    state = sampler.init(m, prior, n, torch.Generator().manual_seed(1))
    x0_hat = torch.tensor([0.2, -0.3], dtype=F64).expand(n, 2).contiguous()
    draws = sampler.langevin(state, x0_hat, sigma)
    a = torch.tensor([[1.0, 1.0]], dtype=F64)
    cov = torch.linalg.inv(a.T @ a / 0.09 + torch.eye(2, dtype=F64) / sigma**2)
    mean = cov @ (a[0] * 1.5 / 0.09 + x0_hat[0] / sigma**2)
    got_mean, got_cov = _moments(draws)
    assert float((got_mean - mean).norm()) < 0.02
    assert float((got_cov - cov).norm() / cov.norm()) < 0.08  # ULA's O(h) bias at h = 0.05 / curvature


def test_pnp_dm_approaches_the_exact_posterior_as_its_budget_grows():
    prior = _gaussian([1.0, -1.0], [[1.0, 0.3], [0.3, 0.5]])
    m = _sum_measurement()
    exact = prior.exact_posterior(m)
    errors = []
    # measured: covariance error 0.39-0.41 at 100 evaluations (20 iterations), 0.08-0.09 at 4000
    # (200 iterations of 20 steps, rho_min 0.01)
    for nfe, settings in ((100, {}), (4000, {"inner_steps": 20, "rho_min": 0.01})):
        post = run(PnPDM(num_steps=nfe, **settings), m, prior, n_particles=3000,
                   generator=torch.Generator().manual_seed(0), progress=False)
        _, cov = _moments(post.samples[0])
        errors.append(float((cov - exact.cov()[0]).norm() / exact.cov()[0].norm()))
    assert errors[1] < 0.15 < 0.3 < errors[0]


def test_pnp_dm_sigma_scale_is_the_sampler_for_data_of_that_noise_level():
    # sigma_scale k on data of noise s is, draw for draw, PnP-DM on the same data declared at noise k s;
    # k = 4 on the sum measurement (s = 0.3) differs from k = 1
    prior = _gaussian([1.0, -1.0], [[1.0, 0.3], [0.3, 0.5]])
    draws = {}
    for key, sampler, m in (("scaled", PnPDM(num_steps=40, sigma_scale=4.0), _sum_measurement(sigma=0.3)),
                            ("declared", PnPDM(num_steps=40), _sum_measurement(sigma=1.2)),
                            ("plain", PnPDM(num_steps=40), _sum_measurement(sigma=0.3))):
        draws[key] = run(sampler, m, prior, n_particles=4, generator=torch.Generator().manual_seed(3),
                         progress=False).samples
    assert torch.equal(draws["scaled"], draws["declared"])
    assert not torch.allclose(draws["scaled"], draws["plain"])
    sampler = PnPDM(num_steps=40, sigma_scale=4.0)
    state = sampler.init(_sum_measurement(sigma=0.3), prior, 2, torch.Generator().manual_seed(0))
    assert state.measurement.sigma.tolist() == pytest.approx([1.2, 1.2])
    state = sampler.with_measurement(state, _sum_measurement(y=0.5, sigma=0.1))  # new data keeps the scale
    assert state.measurement.sigma.tolist() == pytest.approx([0.4, 0.4]) and state.measurement.y.flatten().tolist() == [0.5, 0.5]


@pytest.mark.parametrize("cls, kwargs, match", [
    (DDS, {"eta": 1.5}, "eta"), (DDS, {"gamma": 0.0}, "gamma"), (DDS, {"cg_iterations": -1}, "cg_iterations"),
    (PiGDM, {"guidance": -1.0}, "guidance"), (DAPS, {"lr": 2.5}, "lr"), (DAPS, {"num_steps": 1, "ode_steps": 2}, "ode_steps"),
    (DAPS, {"mcmc": "exact", "tau": 0.1}, "tau"), (DAPS, {"sigma_min": 5.0, "sigma_max": 1.0}, "sigma_min"),
    (PnPDM, {"rho_min": 20.0}, "rho_min"), (PnPDM, {"num_steps": 2, "inner_steps": 5}, "inner_steps"),
    (PnPDM, {"sigma_scale": 0.5}, "sigma_scale"), (PnPDM, {"sigma_scale": float("nan")}, "sigma_scale"),
    (PnPDM, {"sigma_scale": True}, "sigma_scale"),
])
def test_bad_settings_are_refused(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_linear_only_samplers_refuse_a_missing_measurement():
    prior = _gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
    for sampler in (DDS(num_steps=2), PiGDM(num_steps=2), PnPDM(num_steps=2, inner_steps=1), DAPS(num_steps=2)):
        with pytest.raises(ValueError, match="measurement"):
            sampler.init(None, prior, 1, torch.Generator().manual_seed(0))
