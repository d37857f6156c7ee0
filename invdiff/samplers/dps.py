"""Diffusion posterior sampling (DPS; Chung et al., ICLR 2023) on DDIM / ancestral steps.

In EDM variables (``x = x0 + sigma n``, data units), one step from ``sigma_i`` to ``sigma_{i+1}``::

    x0_hat = clamp(D(x, sigma_i), data_range)                (gradients flow through the denoiser)
    r      = || y - A(x0_hat) ||_2                           (per sample, over all entries of y)
    x'     = ddim_update(x, x0_hat, sigma_i, sigma_{i+1}, eta, z)  -  zeta_i * grad_x r^2 / r

``grad_x r^2 / r = 2 grad_x r``: the step on the squared residual is normalised by each sample's own
residual norm, as in the paper's ``zeta_i = zeta' / ||y - A(x0_hat)||``. Unlike the reference
code, the norm is per sample, not over the batch, so a sample does not depend on its batch mates.

Step-size convention (the paper's): ``zeta`` (``step_size``) is the step of the VP variable
``x_t = sqrt(abar_t) z`` in the prior's model space ``z = (x - offset) / scale``, as in the reference
code (``zeta = 1`` for its FFHQ experiments). In data-unit EDM variables that step is::

    x' -= zeta * scale^2 / sqrt(abar(sigma_i) abar(sigma_{i+1})) * grad_x r^2 / r,   abar(s) = 1 / (1 + (s / scale)^2)

large at high noise, where ``x`` itself is large. It depends on the problem's size and should be
tuned on data that is not the test data.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from invdiff.measurement import Measurement
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import (Sampler, SamplerState, check_num_steps, extend_state, prior_scale, resolve_sigmas,
                                   start_from_noise)
from invdiff.samplers.ddim import ddim_update
from invdiff.schedule import VPSchedule


@dataclasses.dataclass(frozen=True)
class DPSState(SamplerState):
    """``measurement`` is expanded to the particles (``B * N`` items); ``sigmas`` in data units;
    ``scale``: the prior's model-space scale; ``residual_norm``: ``||y - A(x0_hat)||`` of the last step, per particle;
    ``denoised``: that step's ``x0_hat`` (what an acquisition policy between steps looks at)."""

    sigmas: Tensor | None = None
    scale: float = 1.0
    residual_norm: Tensor | None = None
    denoised: Tensor | None = None


class DPS(Sampler):
    """DPS with ``num_steps`` denoiser evaluations (one VJP each).

    Args:
        num_steps: sampler steps (the paper uses 1000 ancestral steps).
        step_size: ``zeta`` of the module docstring (the paper's convention).
        eta: 1 for ancestral (DDPM) steps as in the paper, 0 for deterministic DDIM steps.
        schedule: VP schedule whose trailing-spaced noise levels are used (DDPM linear by default),
            in the prior's model space; ``sigmas`` (decreasing, ending in 0, data units) overrides it.
        clip: clamp the denoised estimate to the prior's ``data_range`` before the residual, as the
            reference code does (``clip_denoised``: ``x0_hat`` in ``[-1, 1]``); the clamp's zero gradient
            outside the range stops the guidance from chasing values the prior never produces.
            Measured on the MRI validation slices at 4x, 100 steps: 28.8 dB with it, 20.3 dB without.
            A no-op for priors without a data range (the Gaussian mixtures).
    """

    def __init__(self, num_steps: int = 1000, step_size: float = 1.0, eta: float = 1.0,
                 schedule: VPSchedule | None = None, sigmas: Tensor | None = None, clip: bool = True):
        num_steps = check_num_steps(num_steps)
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if not step_size >= 0:
            raise ValueError(f"step_size must be >= 0, got {step_size}")
        self.num_steps, self.step_size, self.eta = num_steps, float(step_size), float(eta)
        self.schedule, self._sigmas, self.clip = schedule, sigmas, clip

    def sigmas_for(self, prior: Denoiser) -> Tensor:
        """The noise levels in data units: the given ``sigmas``, or the schedule's scaled by the prior's
        model-space scale (1 when the prior has none)."""
        return resolve_sigmas(prior, self.num_steps, self.schedule, self._sigmas)

    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        if measurement is None:
            raise ValueError("DPS needs a measurement")
        sigmas = self.sigmas_for(prior)
        x_init = start_from_noise(prior, float(sigmas[0]), n_particles)

        state = self.initial_state(measurement, prior, n_particles, generator,
                                   num_steps=sigmas.numel() - 1, x_init=x_init)
        return extend_state(state, DPSState, measurement=measurement.expand(n_particles), sigmas=sigmas,
                            scale=prior_scale(prior))

    def step(self, state: DPSState) -> DPSState:
        i = state.step
        sigmas = state.sigmas
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        m = state.measurement
        with torch.enable_grad():
            x = state.x.detach().requires_grad_(True)
            x0 = state.prior.denoise(x, sigma)
            if self.clip and state.prior.data_range is not None:
                x0 = x0.clamp(*state.prior.data_range)
            r = m.residual(x0).flatten(1)
            norm = r.norm(dim=1)
            (grad,) = torch.autograd.grad(norm.sum(), x)
        state.diagnostics.vjp_evals += 1
        noise = None
        if self.eta > 0 and sigma_next > 0:
            noise = state.rng.randn_like(x, state.n_particles)
        x_next = ddim_update(x.detach(), x0.detach(), sigma, sigma_next, self.eta, noise)
        if sigma_next > 0:  # the last step returns the denoised estimate unchanged
            scale = state.scale
            abar = 1.0 / ((1.0 + (sigma / scale) ** 2) * (1.0 + (sigma_next / scale) ** 2))
            x_next = x_next - (2 * self.step_size * scale**2 / abar**0.5) * grad
        return dataclasses.replace(state, x=x_next, step=i + 1, residual_norm=norm.detach(), denoised=x0.detach())
