"""The volume samplers (invdiff.samplers.volume): z-differences and 3-D gradients with exact adjoints, the
z-TV ADMM converging to its convex problem's minimiser (optimality conditions), DDS's volume form equal to
DDS on a single slice, coupling along z lowering the error on a volume that is constant along z, 3-D TV
minimising its objective, and DiffusionMBIR's network-evaluation count."""

from __future__ import annotations

import math

import pytest
import torch

from invdiff.measurement import Measurement
from invdiff.operators import Inpainting, MatrixOperator, random_pixel_mask
from invdiff.priors import GaussianMixturePrior
from invdiff.samplers import DDS, TotalVariation, run
from invdiff.samplers.volume import (DDSVolume, DiffusionMBIR, TotalVariation3D, ZTV, gradient_3d, gradient_3d_adjoint,
                                     mean_curvature, z_diff, z_diff_adjoint)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("particles", [1, 3])
def test_z_differences_and_3d_gradient_have_exact_adjoints(particles):
    x = torch.randn(5 * particles, 2, 4, 6, generator=_gen(0), dtype=torch.float64)
    d = torch.randn(4 * particles, 2, 4, 6, generator=_gen(1), dtype=torch.float64)
    assert abs(float((z_diff(x, particles) * d).sum() - (x * z_diff_adjoint(d, particles)).sum())) < 1e-12
    g = torch.randn(5 * particles, 3, 2, 4, 6, generator=_gen(2), dtype=torch.float64)
    lhs = (gradient_3d(x, particles, 0.7) * g).sum()
    rhs = (x * gradient_3d_adjoint(g, particles, 0.7)).sum()
    assert abs(float(lhs - rhs)) < 1e-12 * float(lhs.abs() + 1)
    # slice b of particle n sits at row b * N + n: its difference is to slice b + 1 of the same particle
    v = x.reshape(5, particles, 2, 4, 6)
    torch.testing.assert_close(z_diff(x, particles).reshape(4, particles, 2, 4, 6), v[1:] - v[:-1])


def test_ztv_admm_reaches_the_minimiser_of_its_convex_problem():
    """(w/2)||Ax - y||^2 + t r ||D_z x||_1 on 6 slices of 4 unknowns seen through 3 rows each: at the ADMM's
    fixed point the optimality conditions hold (w A^T(Ax - y) + r D^T u = 0, |u| <= t, and u = t sign(D x)
    where D x != 0), and no perturbation lowers the objective."""
    g = _gen(3)
    a = torch.randn(3, 4, generator=g, dtype=torch.float64)
    m = Measurement(MatrixOperator(a), torch.randn(6, 3, generator=g, dtype=torch.float64), 0.1)
    admm = ZTV(rho=2.0, threshold=0.15, cg_iterations=10, admm_iterations=3000)
    w = torch.tensor([0.7], dtype=torch.float64)
    r = torch.tensor([2.0], dtype=torch.float64)
    x0 = torch.zeros(6, 4, dtype=torch.float64)
    zeros = z_diff(x0, 1)
    x, d, u = admm.solve(m, m.adjoint(m.y), w, r, x0, zeros, zeros.clone(), 1)
    stationarity = w * m.adjoint(m.forward(x) - m.y) + r * z_diff_adjoint(u, 1)
    assert float(stationarity.abs().max()) < 1e-6
    assert float(u.abs().max()) <= admm.threshold * (1 + 1e-6)
    dx = z_diff(x, 1)
    active = dx.abs() > 1e-6
    assert bool(active.any()) and bool((~active).any())  # both kinds of coordinates are exercised
    torch.testing.assert_close(u[active], admm.threshold * dx[active].sign(), atol=1e-6, rtol=0)

    def objective(v):
        return 0.5 * w * ((m.forward(v) - m.y) ** 2).sum() + admm.threshold * r * z_diff(v, 1).abs().sum()

    best = objective(x)
    for k in range(20):
        assert objective(x + 1e-3 * torch.randn(x.shape, generator=_gen(10 + k), dtype=x.dtype)) > best


def test_mean_curvature_is_the_trace_of_the_normal_operator_per_unknown():
    a = torch.randn(5, 40, generator=_gen(4), dtype=torch.float64)
    m = Measurement(MatrixOperator(a), torch.zeros(2, 5, dtype=torch.float64), 0.1)
    exact = float((a * a).sum()) / 40
    estimate = mean_curvature(m, probes=400)
    torch.testing.assert_close(estimate, torch.tensor(exact, dtype=torch.float64), rtol=0.1, atol=0)
    mask = Measurement(Inpainting(random_pixel_mask((16, 16), 0.3, _gen(5)).to(torch.float64)),
                       torch.zeros(1, 1, 16, 16, dtype=torch.float64), 0.1)
    seen = float(mask.physics.mask.mean())
    assert abs(float(mean_curvature(mask)) - seen) < 1e-12  # a mask's A^T A is diagonal: exact with any probe


def test_dds_volume_on_one_slice_is_dds_with_hard_data_consistency():
    """With one slice there is nothing to couple: the volume form's CG on (A^T A / ||A||^2) x = A^T y / ||A||^2
    has the same iterates as DDS's CG on the unscaled normal equations."""
    prior = GaussianMixturePrior(torch.ones(1, dtype=torch.float64), torch.tensor([[1.0, -1.0, 0.5]], dtype=torch.float64),
                                 torch.eye(3, dtype=torch.float64)[None] * 0.5)
    m = Measurement(MatrixOperator(torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)),
                    torch.tensor([[1.5, -0.5]], dtype=torch.float64), 0.1)
    volume = run(DDSVolume(10, cg_iterations=2), m, prior, n_particles=4, generator=_gen(5), progress=False)
    plain = run(DDS(10, gamma=math.inf, cg_iterations=2), m, prior, n_particles=4, generator=_gen(5), progress=False)
    torch.testing.assert_close(volume.samples, plain.samples, rtol=1e-9, atol=1e-9)


def _constant_volume(slices: int = 6):
    """A correlated Gaussian prior on 1 x 8 x 8 images; one image repeated as every slice of a volume,
    each slice seen at half its pixels with its own noise."""
    idx = torch.arange(8, dtype=torch.float64)
    dist = ((idx[:, None, None, None] - idx[None, None, :, None]) ** 2
            + (idx[None, :, None, None] - idx[None, None, None, :]) ** 2).reshape(64, 64)
    cov = 0.04 * torch.exp(-dist / 4.0) + 1e-4 * torch.eye(64, dtype=torch.float64)
    prior = GaussianMixturePrior(torch.ones(1, dtype=torch.float64), torch.full((1, 64), 0.5, dtype=torch.float64),
                                 cov.unsqueeze(0), event_shape=(1, 8, 8))
    op = Inpainting(random_pixel_mask((8, 8), 0.5, _gen(7)).to(torch.float64))
    x = prior.sample(1, _gen(8)).expand(slices, 1, 8, 8)
    y = op.A(x) + 0.1 * torch.randn(slices, 1, 8, 8, generator=_gen(9), dtype=torch.float64)
    return prior, Measurement(op, y, 0.1), x


@pytest.mark.parametrize("cls", [DDSVolume, DiffusionMBIR])
def test_coupling_along_z_lowers_the_error_on_a_volume_constant_along_z(cls):
    """At the defaults' rho, 20 steps: threshold 0.3 against 0 (no shrinkage: slice differences kept)."""
    prior, m, x = _constant_volume()
    errors = {}
    for threshold in (0.0, 0.3):
        sampler = cls(20, threshold=threshold, **({"corrector_snr": 0.0} if cls is DiffusionMBIR else {}))
        post = run(sampler, m, prior, n_particles=2, generator=_gen(11), progress=False)
        errors[threshold] = float((post.mean - x).pow(2).mean())
    assert errors[0.3] < 0.85 * errors[0.0]


def test_tv3d_minimises_its_objective_better_than_slice_wise_tv():
    prior, m, x = _constant_volume()
    lam = 0.02
    tv3 = TotalVariation3D(lam, iterations=400)
    vol = run(tv3, m, None, generator=_gen(0), progress=False).mean
    slice_wise = run(TotalVariation(lam, iterations=400), m, None, generator=_gen(0), progress=False).mean
    best = tv3.volume_objective(m, vol)
    assert best < tv3.volume_objective(m, slice_wise)
    for k in range(10):
        assert tv3.volume_objective(m, vol + 1e-3 * torch.randn(vol.shape, generator=_gen(20 + k), dtype=vol.dtype)) > best
    assert float((vol - x).pow(2).mean()) < float((slice_wise - x).pow(2).mean())


@pytest.mark.parametrize("snr, budget, expected", [(0.16, 9, 9), (0.16, 10, 9), (0.0, 10, 10)])
def test_diffusion_mbir_counts_predictor_and_corrector_evaluations(snr, budget, expected):
    prior, m, _ = _constant_volume(3)
    post = run(DiffusionMBIR(budget, corrector_snr=snr), m, prior, n_particles=2, generator=_gen(1), progress=False)
    assert post.diagnostics.network_evals == expected <= budget
    assert bool(torch.isfinite(post.samples).all())


def test_volume_samplers_refuse_bad_settings_and_nonlinear_data():
    with pytest.raises(ValueError, match="rho"):
        DDSVolume(10, rho=0.0)
    with pytest.raises(ValueError, match="threshold"):
        DiffusionMBIR(10, threshold=-1.0)
    with pytest.raises(ValueError, match="cg_iterations"):
        ZTV(cg_iterations=0)
    prior, _, _ = _constant_volume(2)
    with pytest.raises(ValueError, match="linear measurement"):
        DDSVolume(4).init(None, prior, 1, _gen(0))


def test_a_chunked_prior_gives_the_unchunked_result_with_per_item_noise_levels():
    from invdiff.priors.base import ChunkedDenoiser

    prior, _, _ = _constant_volume(2)
    x = torch.randn(5, 1, 8, 8, generator=_gen(2), dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    chunked = ChunkedDenoiser(prior, 2)
    torch.testing.assert_close(chunked.denoise(x, sigma), prior.denoise(x, sigma), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked.denoise(x, 0.7), prior.denoise(x, 0.7), rtol=1e-12, atol=1e-12)
    assert chunked.event_shape == prior.event_shape
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkedDenoiser(prior, 0)
