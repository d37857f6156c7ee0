"""PnP-DM (Wu, Sun, Chen, Zhang, Yue and Bouman, NeurIPS 2024, "Principled Probabilistic Imaging using
Diffusion Models as Plug-and-Play Priors"): a split Gibbs sampler whose prior step is a diffusion model.

The target is relaxed with an auxiliary ``z`` coupled to ``x`` at strength ``rho``::

    pi(x, z) ∝ p(x) N(z; x, rho^2 I) p(y | z)

and Gibbs sampling alternates, at iteration ``k`` with coupling ``rho_k``::

    z ~ p(z | x, y) ∝ N(z; x, rho_k^2 I) N(y; A z, s^2 I)    likelihood step: exact for linear Gaussian
                                                             data (gaussian_likelihood_sample)
    x ~ p(x | z)    ∝ p(x) N(z; x, rho_k^2 I)                prior step: z is x seen at noise level rho_k,
                                                             so a reverse diffusion started from z at
                                                             sigma = rho_k samples it

The prior step runs ``inner_steps`` ancestral steps (DDPM, :func:`~invdiff.samplers.ddim.ddim_update`
with ``eta = 1``) on Karras-spaced levels from ``rho_k`` down to ``0.01 c`` and then 0 (``c`` the prior's
scale). The coupling anneals geometrically from ``rho_start`` to ``rho_min`` (model space, times ``c``)
over the iterations, as the paper's ``rho_k = max(rho_min, rho_0 a^k)`` with the decay ``a`` fitted to the
budget; as ``rho -> 0`` the ``x``-marginal of ``pi`` tends to the posterior (at ``rho`` it is the
posterior of data with noise covariance ``s^2 I + rho^2 A A^T``). ``num_steps`` is the network-evaluation
budget: ``num_steps // inner_steps`` Gibbs iterations. The samples are the last prior step's ``x``.

``sigma_scale = k`` runs the likelihood step with the noise level ``k s`` (the likelihood tempered to
``p(y | z)^(1 / k^2)``). The exact step trusts the data to ``s``; data that also hold model error the
noise level does not (coil maps estimated by ESPIRiT) has that error amplified along the operator's weak
directions, by ``1 / sqrt(lambda)`` for an eigenvalue ``lambda`` of ``A^T A``, beyond the ``rho`` the prior
step removes. On the 8x MRI validation slices (8 coils; the least-squares fit leaves a residual of 1.64 s
with ESPIRiT's maps, 0.89 s with the simulation's) ``k = 1`` scores 18.3 dB with stripes at the aliasing
period, ``k = 4`` 25.1 dB, and ``k = 1`` with the simulation's maps 24.9 dB; at 4x, where the operator is
well conditioned, ``k = 1`` is best (35.3 dB). docs/guide/samplers.md has the measurements.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor

from invdiff.measurement import Measurement
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import Sampler, SamplerState, check_num_steps, extend_state, prior_scale, start_from_noise
from invdiff.samplers.ddim import ddim_update
from invdiff.samplers.splitting import denoising_levels, gaussian_likelihood_sample, prior_sigma_range


@dataclasses.dataclass(frozen=True)
class PnPDMState(SamplerState):
    """``x``: the prior step's sample; ``measurement`` expanded to the particles; ``rhos``: the coupling
    per iteration, data units; ``z``: the last likelihood step's sample."""

    rhos: Tensor | None = None
    floor: float = 0.0
    z: Tensor | None = None


class PnPDM(Sampler):
    """PnP-DM with a budget of ``num_steps`` network evaluations.

    Args:
        num_steps: network evaluations: ``num_steps // inner_steps`` Gibbs iterations.
        inner_steps: network evaluations per prior step.
        rho_start, rho_min: first and last coupling, in the prior's model space (the paper: 10 and
            0.3-0.1 for images in [-1, 1]); ``rho_start`` is clipped to the prior's highest training level.
        init: ``"pinv"`` (the first likelihood step starts from ``A^+ y``) or ``"prior"`` (from a draw
            at ``rho_start``, as the paper).
        exact_solve: draw the likelihood step with the exact row-block solver where the operator has one
            (:func:`~invdiff.samplers.splitting.with_exact_solver`); ``False``: CG to ``1e-10``.
        sigma_scale: the likelihood step's noise level over the measurement's (module docstring); 1 is
            the paper's sampler, above 1 leaves room for model error.
    """

    exact_solver_setting = "exact_solve"

    def __init__(self, num_steps: int = 100, inner_steps: int = 5, rho_start: float = 10.0,
                 rho_min: float = 0.05, init: Literal["prior", "pinv"] = "prior", exact_solve: bool = True,
                 sigma_scale: float = 1.0):
        num_steps, inner_steps = check_num_steps(num_steps), check_num_steps(inner_steps)
        if num_steps < inner_steps:
            raise ValueError(f"num_steps ({num_steps}) must be at least inner_steps ({inner_steps})")
        if not 0 < rho_min <= rho_start:
            raise ValueError(f"need 0 < rho_min <= rho_start, got {rho_min}, {rho_start}")
        if isinstance(sigma_scale, bool) or not 1.0 <= float(sigma_scale) < math.inf:
            raise ValueError(f"sigma_scale must be a finite number >= 1 (1: the measurement's noise level), got "
                             f"{sigma_scale!r}")
        if init not in ("prior", "pinv"):
            raise ValueError(f"init must be 'prior' or 'pinv', got {init!r}")
        self.num_steps, self.inner_steps = num_steps, inner_steps
        self.rho_start, self.rho_min, self.init_kind = float(rho_start), float(rho_min), init
        self.exact_solve = bool(exact_solve)
        self.sigma_scale = float(sigma_scale)

    @property
    def iterations(self) -> int:
        return self.num_steps // self.inner_steps

    def rhos_for(self, prior: Denoiser) -> Tensor:
        """The coupling of each iteration in data units: geometric from ``rho_start`` to ``rho_min``."""
        scale = prior_scale(prior)
        top = min(self.rho_start * scale, prior_sigma_range(prior)[1])
        bottom = min(self.rho_min * scale, top)
        k = self.iterations
        if k == 1:
            return torch.tensor([bottom], dtype=torch.float64)
        t = torch.arange(k, dtype=torch.float64) / (k - 1)
        return top * (bottom / top) ** t

    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        if measurement is None or not measurement.is_linear:
            raise ValueError("PnP-DM (this form) needs a linear measurement: its likelihood step is an exact "
                             "Gaussian draw")
        measurement = self.likelihood(measurement)
        rhos = self.rhos_for(prior)
        from_noise = start_from_noise(prior, float(rhos[0]), n_particles)

        def x_init(rng, dtype):
            shape = (measurement.batch_size, n_particles, *prior.event_shape)
            if self.init_kind == "pinv":
                return measurement.pinv(max_iter=50).reshape(measurement.batch_size, 1, *prior.event_shape).expand(shape)
            return from_noise(rng, dtype)

        state = self.initial_state(measurement, prior, n_particles, generator, num_steps=self.iterations,
                                   x_init=x_init)
        return extend_state(state, PnPDMState, measurement=measurement.expand(n_particles), rhos=rhos,
                            floor=0.01 * prior_scale(prior))

    def likelihood(self, measurement: Measurement) -> Measurement:
        """The measurement the likelihood step draws from: the exact solver attached, the noise level
        times ``sigma_scale``."""
        measurement = self.with_solver(measurement)
        return measurement if self.sigma_scale == 1.0 else measurement.with_sigma(measurement.sigma * self.sigma_scale)

    def with_measurement(self, state: PnPDMState, measurement: Measurement) -> PnPDMState:
        """New data between steps (an acquisition), drawn from at ``sigma_scale`` times its noise level too."""
        return super().with_measurement(state, self.likelihood(measurement))

    def prior_step(self, state: PnPDMState, z: Tensor, rho: float) -> Tensor:
        """A draw of ``p(x | z)``: ancestral steps of the reverse diffusion from ``z`` at ``rho``."""
        path = denoising_levels(rho, self.inner_steps, state.floor)
        x = z
        for a, b in zip(path[:-1].tolist(), path[1:].tolist()):
            noise = state.rng.randn_like(x, state.n_particles) if b > 0 else None
            x = ddim_update(x, state.prior.denoise(x, a), a, b, 1.0, noise)
        return x

    def step(self, state: PnPDMState) -> PnPDMState:
        rho = float(state.rhos[state.step])
        z = gaussian_likelihood_sample(state.measurement, state.x, rho**2, state.rng, state.n_particles)
        x = self.prior_step(state, z, rho)
        return dataclasses.replace(state, x=x, z=z, step=state.step + 1)
