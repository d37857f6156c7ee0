"""Decoupled annealing posterior sampling (DAPS; Zhang, Chu, Berner, Zheng, He, Torr, Anandkumar and Yue,
CVPR 2025, "Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing").

Each annealing level ``sigma_i`` (data units, Karras-spaced from ``sigma_max`` to ``sigma_min`` times the
prior's scale, then 0) does three things, with no back-propagation through the network::

    x0_hat = ODE(x_i, sigma_i -> 0)                 ode_steps Euler steps of the probability-flow ODE
    x0_y   ~ p(x0 | x_i, y) ∝ N(x0; x0_hat, sigma_i^2 I) exp(-||y - A x0||^2 / (2 tau^2))
    x_{i+1} = x0_y + sigma_{i+1} z                  z ~ N(0, I)

and the last level returns ``x0_y``. The Euler step of the ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``
is the deterministic DDIM step (:func:`~invdiff.samplers.ddim.ddim_update` with ``eta = 0``); the path
from ``sigma_i`` is Karras-spaced down to ``0.01 c`` (``c`` the prior's scale), one network evaluation
per Euler step. The draw of ``x0_y`` is, as in the paper, ``langevin_steps`` unadjusted Langevin steps
from ``x0_hat``::

    x0 <- x0 - h (grad ||y - A x0||^2 / (2 tau^2) + (x0 - x0_hat) / sigma_i^2) + sqrt(2 h) z

with ``h = lr_i / (||A||^2 / tau^2 + 1 / sigma_i^2)``: the paper's step ``lr`` made unit-free by the
curvature of the target (its ``lr = 1e-4`` with ``tau = 0.01`` and ``||A|| = 1`` is ``lr_i ≈ 1``),
decayed linearly over the levels to ``lr_min_ratio`` of itself as in the reference code. ``tau``
defaults to the measurement's own noise level. ``mcmc = "exact"`` replaces the Langevin chain by an
exact draw of that Gaussian (:func:`~invdiff.samplers.splitting.gaussian_likelihood_sample`; linear
operators only). ``num_steps`` is the network-evaluation budget: ``num_steps // ode_steps`` levels.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor

from invdiff.linalg import batch_view
from invdiff.measurement import Measurement
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import Sampler, SamplerState, check_num_steps, extend_state, prior_scale, start_from_noise
from invdiff.samplers.ddim import ddim_update
from invdiff.samplers.splitting import (denoising_levels, gaussian_likelihood_sample, per_item_norm_sq,
                                        prior_sigma_range)
from invdiff.schedule import karras_sigmas


@dataclasses.dataclass(frozen=True)
class DAPSState(SamplerState):
    """``x``: the noisy iterate at the current level; ``measurement`` expanded to the particles;
    ``sigmas``: annealing levels in data units; ``curvature``: ``||A||^2 / tau^2`` per particle;
    ``tau``: per particle; ``denoised``: the last ``x0_y``."""

    sigmas: Tensor | None = None
    curvature: Tensor | None = None
    tau: Tensor | None = None
    floor: float = 0.0
    denoised: Tensor | None = None


class DAPS(Sampler):
    """DAPS with a budget of ``num_steps`` network evaluations.

    Args:
        num_steps: network evaluations: ``num_steps // ode_steps`` annealing levels (the paper's DAPS-1K:
            200 levels x 5 Euler steps; DAPS-100: 50 x 2).
        ode_steps: Euler steps of the probability-flow ODE per level.
        langevin_steps: Langevin steps per level (the paper: 100).
        lr: Langevin step at the first level, in units of the inverse curvature (module docstring).
        lr_min_ratio: the step at the last level, as a fraction of ``lr`` (the paper: 0.01).
        tau: the noise level the Langevin chain assumes, in units of ``y``; ``None``: the measurement's.
        sigma_max, sigma_min: the annealing range in the prior's model space (the paper: 100 and 0.1),
            clipped to the noise levels the prior was trained at.
        mcmc: ``"langevin"`` (the paper) or ``"exact"`` (linear operators).
    """

    def __init__(self, num_steps: int = 100, ode_steps: int = 2, langevin_steps: int = 100, lr: float = 1.0,
                 lr_min_ratio: float = 0.01, tau: float | None = None, sigma_max: float = 100.0,
                 sigma_min: float = 0.1, mcmc: Literal["langevin", "exact"] = "langevin"):
        num_steps = check_num_steps(num_steps)
        ode_steps = check_num_steps(ode_steps)
        if num_steps < ode_steps:
            raise ValueError(f"num_steps ({num_steps}) must be at least ode_steps ({ode_steps}): one level at least")
        if isinstance(langevin_steps, bool) or not isinstance(langevin_steps, int) or langevin_steps < 0:
            raise ValueError(f"langevin_steps must be an integer >= 0, got {langevin_steps!r}")
        if not 0 < lr < 2:
            raise ValueError(f"lr must be in (0, 2) (the Langevin chain diverges beyond 2), got {lr}")
        if not 0 < lr_min_ratio <= 1:
            raise ValueError(f"lr_min_ratio must be in (0, 1], got {lr_min_ratio}")
        if tau is not None and not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if mcmc not in ("langevin", "exact"):
            raise ValueError(f"mcmc must be 'langevin' or 'exact', got {mcmc!r}")
        if mcmc == "exact" and tau is not None:
            raise ValueError("mcmc='exact' draws with the measurement's own noise level; tau is for 'langevin'")
        self.num_steps, self.ode_steps, self.langevin_steps = num_steps, ode_steps, langevin_steps
        self.lr, self.lr_min_ratio, self.tau = float(lr), float(lr_min_ratio), tau
        self.sigma_max, self.sigma_min, self.mcmc = float(sigma_max), float(sigma_min), mcmc

    @property
    def levels(self) -> int:
        return self.num_steps // self.ode_steps

    def sigmas_for(self, prior: Denoiser) -> Tensor:
        """The annealing levels in data units, decreasing, with a final 0."""
        scale = prior_scale(prior)
        low, high = prior_sigma_range(prior)
        top = min(self.sigma_max * scale, high)
        bottom = min(max(self.sigma_min * scale, low), 0.5 * top)
        return karras_sigmas(self.levels, bottom, top)

    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        if measurement is None:
            raise ValueError("DAPS needs a measurement")
        if self.mcmc == "exact" and not measurement.is_linear:
            raise ValueError("DAPS with mcmc='exact' needs a linear measurement; use mcmc='langevin'")
        sigmas = self.sigmas_for(prior)
        x_init = start_from_noise(prior, float(sigmas[0]), n_particles)

        state = self.initial_state(measurement, prior, n_particles, generator, num_steps=self.levels, x_init=x_init)
        m = measurement.expand(n_particles)
        tau = m.sigma if self.tau is None else torch.full_like(m.sigma, self.tau)
        curvature = None
        if self.mcmc == "langevin" and self.langevin_steps:
            norm_sq = (per_item_norm_sq(measurement, n_particles).to(m.sigma) if measurement.is_linear
                       else torch.ones_like(m.sigma))  # nonlinear: the step is relative to 1 / tau^2 alone
            curvature = norm_sq / tau**2
        return extend_state(state, DAPSState, measurement=m, sigmas=sigmas, curvature=curvature, tau=tau,
                            floor=0.01 * prior_scale(prior))

    def ode_denoise(self, state: DAPSState, sigma: float) -> Tensor:
        """``x0_hat``: ``ode_steps`` Euler steps of the probability-flow ODE from ``state.x`` at ``sigma``."""
        path = denoising_levels(sigma, self.ode_steps, state.floor)
        x = state.x
        for a, b in zip(path[:-1].tolist(), path[1:].tolist()):
            x = ddim_update(x, state.prior.denoise(x, a), a, b, 0.0, None)
        return x

    def langevin(self, state: DAPSState, x0_hat: Tensor, sigma: float) -> Tensor:
        """``langevin_steps`` unadjusted Langevin steps on ``p(x0 | x_i, y)`` from ``x0_hat``."""
        m = state.measurement
        frac = state.step / max(self.levels, 1)
        lr = self.lr * (1.0 + frac * (self.lr_min_ratio - 1.0))
        h = batch_view((lr / (state.curvature + 1.0 / sigma**2)).to(x0_hat.dtype), x0_hat)
        rescale = batch_view((m.sigma**2 / state.tau**2).to(x0_hat.dtype), x0_hat)
        x = x0_hat
        if m.is_linear:  # A^T y / s^2 once; each step one A^T A pass (fused for MRI) instead of A then A^T
            aty, inv_s2 = m.residual_gradient(m.y), batch_view((1.0 / m.sigma**2).to(x0_hat.dtype), x0_hat)

            def grad_ll(v: Tensor) -> Tensor:
                return aty - inv_s2 * m.normal(v)
        else:
            grad_ll = m.grad_log_likelihood
        for _ in range(self.langevin_steps):
            grad = -rescale * grad_ll(x) + (x - x0_hat) / sigma**2
            x = x - h * grad + (2 * h).sqrt() * state.rng.randn_like(x, state.n_particles)
        return x

    def step(self, state: DAPSState) -> DAPSState:
        i = state.step
        sigma, sigma_next = float(state.sigmas[i]), float(state.sigmas[i + 1])
        x0_hat = self.ode_denoise(state, sigma)
        if self.mcmc == "exact":
            x0_y = gaussian_likelihood_sample(state.measurement, x0_hat, sigma**2, state.rng, state.n_particles)
        elif self.langevin_steps:
            x0_y = self.langevin(state, x0_hat, sigma)
        else:
            x0_y = x0_hat
        x_next = x0_y
        if sigma_next > 0:
            x_next = x0_y + sigma_next * state.rng.randn_like(x0_y, state.n_particles)
        return dataclasses.replace(state, x=x_next, step=i + 1, denoised=x0_y)
