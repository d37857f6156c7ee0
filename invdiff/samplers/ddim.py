"""Unconditional DDIM / ancestral sampling from a denoiser prior, in EDM noise levels.

With ``x = x0 + sigma n`` (data units) and ``D = denoise(x, sigma)``, one step from ``sigma`` to
``sigma' < sigma`` is ::

    x' = D + sqrt(sigma'^2 - c^2) (x - D) / sigma + c z,     c = eta sigma' sqrt(1 - sigma'^2 / sigma^2)

which is DDIM (Song et al. 2021) rewritten in EDM variables: ``eta = 0`` is the deterministic
probability-flow step, ``eta = 1`` the ancestral DDPM step (the exact Gaussian bridge of the VE
diffusion). It ignores any measurement except for its batch size, device and dtype: it is the
"prior sample" baseline and the proposal of importance sampling.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from invdiff.measurement import Measurement
from invdiff.priors.base import Denoiser
from invdiff.posterior import Posterior
from invdiff.samplers.base import Sampler, SamplerState, check_num_steps
from invdiff.schedule import VPSchedule


def ddim_update(x: Tensor, denoised: Tensor, sigma: float, sigma_next: float, eta: float,
                noise: Tensor | None) -> Tensor:
    """One DDIM step in EDM variables from ``sigma`` to ``sigma_next`` (see module docstring)."""
    if sigma_next <= 0:
        return denoised
    c = eta * sigma_next * math.sqrt(max(0.0, 1.0 - (sigma_next / sigma) ** 2))
    x_next = denoised + (math.sqrt(max(0.0, sigma_next**2 - c**2)) / sigma) * (x - denoised)
    if c > 0:
        if noise is None:
            raise ValueError("a stochastic step (eta > 0) needs noise")
        x_next = x_next + c * noise
    return x_next


class DDIM(Sampler):
    """DDIM (``eta = 0``) or ancestral (``eta = 1``) sampling of the prior.

    Args:
        num_steps: number of denoiser evaluations.
        schedule: VP schedule whose (trailing-spaced) noise levels are used; DDPM linear by default.
        eta: stochasticity in [0, 1].
        sigmas: explicit decreasing noise levels ending in 0 (overrides ``num_steps``/``schedule``),
            e.g. :func:`invdiff.schedule.karras_sigmas`.
    """

    def __init__(self, num_steps: int = 50, schedule: VPSchedule | None = None, eta: float = 0.0,
                 sigmas: Tensor | None = None):
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if sigmas is None:
            sigmas = (schedule or VPSchedule.linear()).sampling_sigmas(check_num_steps(num_steps))
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        if sigmas.dim() != 1 or sigmas.numel() < 2 or sigmas[-1] != 0 or bool((sigmas[:-1] <= sigmas[1:]).any()):
            raise ValueError("sigmas must be strictly decreasing and end with 0")
        self.sigmas = sigmas
        self.eta = float(eta)

    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        sigma_max = float(self.sigmas[0])

        def x_init(rng, dtype):
            return sigma_max * rng.randn(n_particles, *prior.event_shape, dtype=dtype)

        return self.initial_state(measurement, prior, n_particles, generator,
                                  num_steps=self.sigmas.numel() - 1, x_init=x_init)

    def step(self, state: SamplerState) -> SamplerState:
        i = state.step
        sigma, sigma_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        denoised = state.prior.denoise(state.x, sigma)
        noise = None
        if self.eta > 0 and sigma_next > 0:
            n = state.n_particles
            noise = state.rng.randn_like(state.x, n)
        x = ddim_update(state.x, denoised, sigma, sigma_next, self.eta, noise)
        return dataclasses.replace(state, x=x, step=i + 1)


class ImportanceSampling(DDIM):
    """Prior samples (DDIM / ancestral, as :class:`DDIM`) importance-weighted by the likelihood.

    The result's log-weights are ``log p(y | x)`` of each sample: self-normalised importance sampling
    of the posterior with the (discretised) prior as proposal, exact as the particle count grows and
    hopeless when the likelihood is sharp (its effective sample size is reported).
    """

    def __init__(self, num_steps: int = 50, schedule: VPSchedule | None = None, eta: float = 1.0,
                 sigmas: Tensor | None = None):
        super().__init__(num_steps, schedule, eta, sigmas)

    def result(self, state: SamplerState) -> Posterior:
        post = super().result(state)
        if state.measurement is None:
            raise ValueError("ImportanceSampling needs a measurement to weight by")
        b, n = state.log_weights.shape
        log_likelihood = state.measurement.expand(n).log_likelihood(state.x.to(state.measurement.y.real.dtype))
        return post.reweighted(log_likelihood.reshape(b, n))
