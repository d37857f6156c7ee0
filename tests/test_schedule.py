"""Noise schedules and VP <-> EDM conversions."""

from __future__ import annotations

import math

import pytest
import torch

from invdiff.samplers import DDIM
from invdiff.schedule import VPSchedule, alpha_bar_from_sigma, edm_to_vp, karras_sigmas, sigma_from_alpha_bar, vp_to_edm


def test_linear_schedule_matches_ddpm():
    s = VPSchedule.linear()
    assert s.num_steps == 1000
    assert float(s.betas[0]) == pytest.approx(1e-4) and float(s.betas[-1]) == pytest.approx(0.02)
    abar = s.alpha_bars
    assert bool((abar[1:] < abar[:-1]).all())
    # closed form of the last cumulative product, computed independently in log space
    expected = math.exp(sum(math.log(1 - (1e-4 + (0.02 - 1e-4) * t / 999)) for t in range(1000)))
    assert float(abar[-1]) == pytest.approx(expected, rel=1e-10)
    assert float(s.sigmas[-1]) == pytest.approx(math.sqrt((1 - expected) / expected), rel=1e-10)


def test_cosine_schedule_follows_its_definition():
    s = VPSchedule.cosine(num_steps=1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 250, 500, 900):
        assert float(s.alpha_bars[t]) == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert float(s.betas.max()) <= 0.999


def test_vp_edm_conversions_are_inverse():
    sigma = torch.logspace(-3, 2, 50, dtype=torch.float64)
    torch.testing.assert_close(sigma_from_alpha_bar(alpha_bar_from_sigma(sigma)), sigma, rtol=1e-9, atol=0)
    g = torch.Generator().manual_seed(0)
    x0, n = torch.randn(2, 4, generator=g, dtype=torch.float64)
    abar = torch.tensor(0.3, dtype=torch.float64)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * n  # a VP state
    # its EDM state is x0 + sigma n with sigma = sqrt((1 - abar) / abar)
    torch.testing.assert_close(vp_to_edm(x_t, abar), x0 + sigma_from_alpha_bar(abar) * n)
    torch.testing.assert_close(edm_to_vp(vp_to_edm(x_t, 0.3), 0.3), x_t)


def test_karras_sigmas():
    s = karras_sigmas(18, sigma_min=0.002, sigma_max=80.0, rho=7.0)
    assert s.numel() == 19 and float(s[-1]) == 0.0
    assert float(s[0]) == pytest.approx(80.0) and float(s[-2]) == pytest.approx(0.002)
    assert bool((s[1:] < s[:-1]).all())
    mid = (80 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert float(karras_sigmas(3)[1]) == pytest.approx(mid)


def test_timesteps_and_sampling_sigmas():
    s = VPSchedule.linear()
    t = s.timesteps(10)
    assert t[0] == 999 and t[-1] == 0 and t.numel() == 10 and bool((t[1:] < t[:-1]).all())
    sig = s.sampling_sigmas(10)
    assert sig[-1] == 0 and torch.equal(sig[:-1], s.sigmas[t])
    idx = torch.tensor([3.0, 100.0, 998.0], dtype=torch.float64)
    torch.testing.assert_close(s.timestep_of_sigma(s.sigmas[idx.long()]), idx)


def test_bad_schedules_are_rejected():
    with pytest.raises(ValueError, match="betas"):
        VPSchedule(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="num_steps"):
        VPSchedule.linear().timesteps(0)
    with pytest.raises(ValueError, match="decreasing"):
        DDIM(sigmas=torch.tensor([1.0, 2.0, 0.0]))
