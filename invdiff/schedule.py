"""Noise schedules and the VP <-> EDM conversions.

invdiff works in the EDM convention (Karras et al. 2022): ``x = x0 + sigma * noise`` in data units.
A variance-preserving (VP/DDPM) model sees ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``; the
two are related by

    sigma_t = sqrt((1 - abar_t) / abar_t),     x_t = sqrt(abar_t) * x,     abar_t = 1 / (1 + sigma_t^2).

All schedules are computed in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def sigma_from_alpha_bar(alpha_bar: Tensor) -> Tensor:
    """EDM noise level of a VP cumulative signal fraction: ``sqrt((1 - abar) / abar)``."""
    return ((1.0 - alpha_bar) / alpha_bar).sqrt()


def alpha_bar_from_sigma(sigma: Tensor) -> Tensor:
    """VP cumulative signal fraction of an EDM noise level: ``1 / (1 + sigma^2)``."""
    return 1.0 / (1.0 + sigma**2)


def vp_to_edm(x_t: Tensor, alpha_bar: Tensor | float) -> Tensor:
    """VP state ``x_t`` to the EDM state ``x = x_t / sqrt(abar)``."""
    return x_t / math.sqrt(alpha_bar) if isinstance(alpha_bar, float) else x_t / alpha_bar.sqrt()


def edm_to_vp(x: Tensor, alpha_bar: Tensor | float) -> Tensor:
    """EDM state ``x`` to the VP state ``x_t = sqrt(abar) x``."""
    return x * math.sqrt(alpha_bar) if isinstance(alpha_bar, float) else x * alpha_bar.sqrt()


@dataclass(frozen=True)
class VPSchedule:
    """A discrete variance-preserving schedule of ``T`` steps, ``t = 0 .. T-1``.

    ``betas[t]`` is the per-step noise variance, ``alpha_bars[t] = prod_{s<=t} (1 - betas[s])``.
    """

    betas: Tensor

    @classmethod
    def linear(cls, beta_start: float = 1e-4, beta_end: float = 0.02, num_steps: int = 1000) -> VPSchedule:
        """DDPM's linear schedule (Ho et al. 2020): betas from 1e-4 to 0.02 over 1000 steps."""
        return cls(torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64))

    @classmethod
    def cosine(cls, num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> VPSchedule:
        """Cosine schedule (Nichol & Dhariwal 2021): ``abar(t) = f(t)/f(0)``,
        ``f(t) = cos^2(((t/T + s)/(1 + s)) pi/2)``, betas clipped at ``max_beta``."""
        t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)
        return cls(betas)

    def __post_init__(self):
        b = self.betas
        if b.dim() != 1 or b.numel() < 1 or bool((b <= 0).any()) or bool((b >= 1).any()):
            raise ValueError("betas must be a non-empty 1-D tensor with values in (0, 1)")

    @property
    def num_steps(self) -> int:
        return int(self.betas.numel())

    @property
    def alpha_bars(self) -> Tensor:
        return torch.cumprod(1.0 - self.betas, dim=0)

    @property
    def sigmas(self) -> Tensor:
        """EDM noise level of every step, increasing with ``t``."""
        return sigma_from_alpha_bar(self.alpha_bars)

    def timesteps(self, num_steps: int) -> Tensor:
        """Evenly spaced step indices for a sampler of ``num_steps`` steps, decreasing from ``T-1``
        (DDIM's "trailing" spacing, which always includes the noisiest step)."""
        if not 1 <= num_steps <= self.num_steps:
            raise ValueError(f"num_steps must be in [1, {self.num_steps}], got {num_steps}")
        t = torch.round(torch.linspace(self.num_steps - 1, 0, num_steps, dtype=torch.float64))
        return t.long()

    def sampling_sigmas(self, num_steps: int) -> Tensor:
        """Decreasing noise levels for ``num_steps`` sampler steps, with a final 0 appended."""
        s = self.sigmas[self.timesteps(num_steps)]
        return torch.cat([s, s.new_zeros(1)])

    def timestep_of_sigma(self, sigma: Tensor) -> Tensor:
        """Fractional step index with noise level ``sigma`` (linear interpolation in log sigma),
        for networks conditioned on a VP time."""
        log_s = self.sigmas.log()
        x = torch.as_tensor(sigma, dtype=torch.float64).clamp(self.sigmas[0], self.sigmas[-1]).log()
        idx = torch.searchsorted(log_s, x.contiguous()).clamp(1, self.num_steps - 1)
        lo, hi = log_s[idx - 1], log_s[idx]
        return (idx - 1).to(torch.float64) + (x - lo) / (hi - lo)


def karras_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                  rho: float = 7.0) -> Tensor:
    """EDM/Karras noise levels (Karras et al. 2022, eq. 5), decreasing, with a final 0 appended:
    ``sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if num_steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    i = torch.arange(num_steps, dtype=torch.float64) / (num_steps - 1)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    s = (a + i * (b - a)) ** rho
    return torch.cat([s, s.new_zeros(1)])
