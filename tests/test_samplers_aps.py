"""The discrete (masked token) prior interface, APS and guided remasking, against enumeration."""

from __future__ import annotations

import itertools

import deepinv as dinv
import pytest
import torch

from invdiff.measurement import Measurement
from invdiff.operators.matrix import MatrixOperator
from invdiff.priors.tokens import EnumerableTokenPrior, tv_distance
from invdiff.samplers.aps import APS, GuidedRemasking, marginal_nll, masking_schedule, quantized_expectation


def toy(seed: int = 0, codes: int = 3, positions: int = 4) -> EnumerableTokenPrior:
    return EnumerableTokenPrior.random(codes, positions, 2, 8, torch.Generator().manual_seed(seed), concentration=1.0)


def measurement(prior: EnumerableTokenPrior, rows: int, sigma: float, seed: int = 1) -> Measurement:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(rows, prior.decoder.shape[0], generator=g, dtype=torch.float64)
    x = prior.grid_images()[torch.multinomial(prior.log_joint.exp(), 1, generator=g)]
    return Measurement(MatrixOperator(a), x @ a.T + sigma * torch.randn(1, rows, generator=g, dtype=torch.float64),
                       sigma)


def draw(sampler, m, prior, n: int, seed: int = 0) -> torch.Tensor:
    state = sampler.init(m, prior, n, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        while not state.done:
            state = sampler.step(state)
    return sampler.result(state)


def test_enumerable_conditionals_and_posterior_are_brute_force_bayes():
    prior = toy()
    k, mask = prior.num_codes, prior.mask_id
    tokens = torch.tensor([[2, mask, 0, mask], [mask, mask, mask, mask]])
    got = prior.log_probs(tokens).exp()
    p = prior.log_joint.exp()
    for row, t in enumerate(tokens.tolist()):
        for i in range(prior.num_positions):
            if t[i] != mask:
                continue
            want = torch.zeros(k, dtype=torch.float64)
            for grid in itertools.product(range(k), repeat=prior.num_positions):
                if all(v == mask or v == grid[j] for j, v in enumerate(t)):
                    want[grid[i]] += p[prior.index(torch.tensor(grid))]
            torch.testing.assert_close(got[row, i], want / want.sum())
    m = measurement(prior, 3, 0.5)
    x = prior.grid_images()
    loglik = -0.5 * ((m.y - x @ m.physics.matrix.T) ** 2).sum(1) / 0.5**2
    want = torch.softmax(prior.log_joint + loglik, 0)
    torch.testing.assert_close(prior.exact_posterior(m)[0], want)


def test_masking_schedule_is_maskgits_cosine_and_unmasks_every_step():
    assert masking_schedule(16, 4) == [14, 11, 6, 0]  # floor(16 cos(pi t / 8)), t = 1..4
    for length, steps in [(16, 16), (16, 8), (7, 3), (256, 12)]:
        s = masking_schedule(length, steps)
        assert len(s) == steps and s[-1] == 0
        assert all(a > b for a, b in zip([length] + s, s))
    assert masking_schedule(4, 4, "linear") == [3, 2, 1, 0]
    with pytest.raises(ValueError, match="num_steps"):
        masking_schedule(4, 5)
    with pytest.raises(ValueError, match="schedule"):
        masking_schedule(4, 2, "exp")


def test_quantized_expectation_is_the_nearest_code_forward_and_the_expectation_backward():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    logits = torch.randn(5, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q = torch.softmax(logits, -1).requires_grad_(True)
    e = quantized_expectation(q, codebook)
    expected = q.detach() @ codebook
    nearest = codebook[torch.cdist(expected.flatten(0, 1), codebook).argmin(-1)].reshape(expected.shape)
    torch.testing.assert_close(e.detach(), nearest)
    w = torch.randn_like(e)
    (g_st,) = torch.autograd.grad((e * w).sum(), q)
    (g_exp,) = torch.autograd.grad((quantized_expectation(q, codebook, quantize=False) * w).sum(), q)
    torch.testing.assert_close(g_st, g_exp)


@pytest.mark.parametrize("sampler", [APS(4, opt_steps=0, order="random"), GuidedRemasking(4, 8, order="random")],
                         ids=["aps", "guided"])
def test_one_token_per_step_in_random_order_samples_the_prior_exactly(sampler):
    """With no measurement and a perfect masked model, unmasking one position at a time in random order
    is ancestral sampling of the joint: the histogram is as close to the prior as exact draws are."""
    prior, n = toy(), 4000
    p = prior.log_joint.exp()[None]
    tv = tv_distance(prior.index(draw(sampler, None, prior, n).tokens), p)
    floor = torch.stack([tv_distance(torch.multinomial(p, n, replacement=True,
                                                       generator=torch.Generator().manual_seed(s)), p)
                         for s in range(5)])
    assert float(tv) < 1.25 * float(floor.max())


def test_the_tilt_raises_the_likelihood_and_stays_a_bounded_move_of_the_prior_logits():
    prior = toy(codes=4)
    m = measurement(prior, 2, 0.3, seed=4)
    sampler = APS(4, opt_steps=10, lr=0.5)
    state = sampler.init(m, prior, 1, torch.Generator().manual_seed(0))
    log_p = prior.log_probs(state.tokens)
    log_q = sampler.tilt(state, log_p)
    # all positions masked: the tilted and the prior distribution over grids are products of marginals
    positions = torch.arange(prior.num_positions)
    loglik = m.expand(prior.num_grids).log_likelihood(prior.grid_images())
    p_grid = log_p[0, positions, prior.grids].sum(-1).exp()
    q_grid = log_q[0, positions, prior.grids].sum(-1).exp()
    assert float((q_grid * loglik).sum()) > float((p_grid * loglik).sum()) + 1.0
    phi = log_q - log_p
    assert float((phi - phi.mean(-1, keepdim=True)).abs().max()) <= 2 * 10 * 0.5


def test_guidance_moves_samples_towards_the_exact_posterior():
    """TV to the exact posterior over TV of unguided prior draws, averaged over four toys: below 1 means
    the guidance helps. Measured: APS 0.85, 0.86, 0.88, 0.79; guided remasking 0.66, 0.53, 0.84, 0.85
    (on these toys APS gains little; scripts/eval_aps_toy.py has the larger comparison)."""
    ratios = {"aps": [], "guided": []}
    n = 1000
    for seed in range(4):
        prior = toy(seed=seed, codes=4)
        m = measurement(prior, 2, 0.3, seed=10 + seed)
        post = prior.exact_posterior(m)
        prior_tv = float(tv_distance(torch.multinomial(prior.log_joint.exp()[None], n, replacement=True,
                                                       generator=torch.Generator().manual_seed(0)), post))
        aps = draw(APS(4), m, prior, n, seed)
        guided = draw(GuidedRemasking(4, 16), m, prior, n, seed)
        assert aps.diagnostics.network_evals == 4 and aps.diagnostics.vjp_evals == 40
        ratios["aps"].append(float(tv_distance(prior.index(aps.tokens), post)) / prior_tv)
        ratios["guided"].append(float(tv_distance(prior.index(guided.tokens), post)) / prior_tv)
    assert sum(ratios["aps"]) / 4 < 0.92
    assert sum(ratios["guided"]) / 4 < 0.85


def test_samples_are_seeded_per_item_and_decoded_from_their_tokens():
    prior = toy()
    m1 = measurement(prior, 3, 0.5)
    both = Measurement(m1.physics, torch.cat([m1.y, measurement(prior, 3, 0.5, seed=7).y]), 0.5)
    a = draw(APS(2), m1, prior, 6, seed=5)
    b = draw(APS(2), both, prior, 6, seed=5)
    assert torch.equal(a.tokens[0], b.tokens[0])
    assert b.samples.shape == (2, 6, 8) and b.log_weights.shape == (2, 6)
    torch.testing.assert_close(b.samples, prior.decode(prior.codebook[b.tokens.flatten(0, 1)]).reshape(2, 6, 8))
    assert not torch.equal(draw(APS(2), m1, prior, 6, seed=6).tokens, a.tokens)


def residual_posterior(prior: EnumerableTokenPrior, m: Measurement, tau: float) -> torch.Tensor:
    """``(1, G)``: the exact posterior over grids when ``x = D(z) + N(0, tau^2 I)``, by dense algebra."""
    a, s = m.physics.matrix, float(m.sigma[0])
    cov = s**2 * torch.eye(a.shape[0], dtype=torch.float64) + tau**2 * a @ a.T
    r = m.y - prior.grid_images() @ a.T
    return torch.softmax(prior.log_joint - 0.5 * (r * torch.linalg.solve(cov, r.T).T).sum(1), 0)[None]


def test_marginal_nll_is_the_dense_gaussian_with_its_gradient():
    prior = toy(codes=4)
    m = measurement(prior, 3, 0.3, seed=2)
    tau = 0.6
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    a = m.physics.matrix
    cov = 0.09 * torch.eye(3, dtype=torch.float64) + tau**2 * a @ a.T
    r = m.expand(5).y - x @ a.T
    want = 0.5 * (r * torch.linalg.solve(cov, r.T).T).sum(1)
    (want_grad,) = torch.autograd.grad(want.sum(), x)
    got = marginal_nll(m.expand(5), x, tau**2)
    (got_grad,) = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(got, want.detach())
    torch.testing.assert_close(got_grad, want_grad)


def test_the_residual_draw_is_the_exact_gaussian_given_the_codes():
    """One code, so ``D(z)`` is fixed and ``x | y`` is exactly ``N(m, (A^T A / s^2 + I / tau^2)^-1)``:
    20000 draws' mean within 0.02 (the smallest std is 0.28) and covariance within 4 % (measured 1.4 %)."""
    g = torch.Generator().manual_seed(3)
    prior = EnumerableTokenPrior.random(1, 2, 2, 5, g)
    a = torch.randn(3, 5, generator=g, dtype=torch.float64)
    m = Measurement(MatrixOperator(a), torch.randn(1, 3, generator=g, dtype=torch.float64), 0.4)
    tau = 0.7
    cov = torch.linalg.inv(a.T @ a / 0.16 + torch.eye(5, dtype=torch.float64) / tau**2)
    mean = cov @ (a.T @ m.y[0] / 0.16 + prior.grid_images()[0] / tau**2)
    for sampler in (APS(2, residual_std=tau), GuidedRemasking(2, 4, residual_std=tau)):
        x = draw(sampler, m, prior, 20000).samples[0]
        assert float((x.mean(0) - mean).abs().max()) < 0.02
        assert float((torch.cov(x.T) - cov).norm() / cov.norm()) < 0.04
    exact = draw(APS(2), m, prior, 3).samples[0]
    torch.testing.assert_close(exact, prior.grid_images().expand(3, 5))


def test_with_a_residual_the_samplers_move_towards_its_exact_posterior():
    """The residual model's posterior over grids (``tau`` 0.3): TV over the prior draws' TV, four toys.
    Measured: APS 1.03, 0.62, 0.42, 0.63 (mean 0.68); guided remasking 0.66, 0.49, 0.67, 0.74 (0.64).
    ``residual_std`` 0 is the paper's sampler, draw for draw."""
    n, tau = 1000, 0.3
    ratios = {"aps": [], "guided": []}
    for seed in range(4):
        prior = toy(seed=seed, codes=4)
        m = measurement(prior, 2, 0.3, seed=10 + seed)
        post = residual_posterior(prior, m, tau)
        prior_tv = float(tv_distance(torch.multinomial(prior.log_joint.exp()[None], n, replacement=True,
                                                       generator=torch.Generator().manual_seed(0)), post))
        aps = draw(APS(4, residual_std=tau), m, prior, n, seed)
        guided = draw(GuidedRemasking(4, 16, residual_std=tau), m, prior, n, seed)
        ratios["aps"].append(float(tv_distance(prior.index(aps.tokens), post)) / prior_tv)
        ratios["guided"].append(float(tv_distance(prior.index(guided.tokens), post)) / prior_tv)
    assert sum(ratios["aps"]) / 4 < 0.8
    assert sum(ratios["guided"]) / 4 < 0.8
    prior = toy()
    m = measurement(prior, 3, 0.5)
    assert torch.equal(draw(APS(3, residual_std=0.0), m, prior, 5, 2).tokens, draw(APS(3), m, prior, 5, 2).tokens)


def test_bad_inputs_are_named():
    prior = toy()
    with pytest.raises(ValueError, match="token values"):
        prior.log_probs(torch.tensor([[0, 1, 2, 9]]))
    with pytest.raises(ValueError, match=r"integer \(N, 4\)"):
        prior.log_probs(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="fully unmasked"):
        prior.embed(torch.full((1, 4), prior.mask_id))
    with pytest.raises(TypeError, match="TokenPrior"):
        APS(2).init(None, object(), 1, torch.Generator())
    with pytest.raises(ValueError, match="order"):
        APS(2, order="best")
    with pytest.raises(ValueError, match="log_joint"):
        EnumerableTokenPrior(torch.zeros(10), torch.zeros(3, 2), torch.zeros(8, 8))
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="residual_std"):
            APS(2, residual_std=bad)
    nonlinear = Measurement(dinv.physics.Physics(A=lambda x: x**2), torch.zeros(1, 8, dtype=torch.float64), 0.1)
    with pytest.raises(ValueError, match="linear measurement"):
        GuidedRemasking(2, residual_std=0.1).init(nonlinear, prior, 1, torch.Generator())
