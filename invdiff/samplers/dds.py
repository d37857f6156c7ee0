"""Decomposed diffusion sampling (DDS; Chung, Lee and Ye, ICLR 2024, "Decomposed Diffusion Sampler for
Accelerating Large-Scale Inverse Problems").

DDIM steps whose denoised estimate is made consistent with the data by a few conjugate-gradient
iterations in the Krylov subspace around it, with no back-propagation through the network. In EDM
variables (``x = x0 + sigma n``, data units), one step from ``sigma_i`` to ``sigma_{i+1}``::

    x0_hat = D(x, sigma_i),   eps_hat = (x - x0_hat) / sigma_i
    x0'    = M iterations of CG on (I + g A^T A) u = x0_hat + g A^T y, started at u = x0_hat
    x'     = x0' + sigma_{i+1} (eta z + sqrt(1 - eta^2) eps_hat),          z ~ N(0, I)

and the last step returns ``x0'``. ``g = gamma / ||A||^2`` makes ``gamma`` unit-free (the reference
code's ``gamma`` with ``||A|| = 1``, as for SENSE-normalised MRI): ``gamma -> inf`` is the paper's noiseless
form (CG on the normal equations from ``x0_hat``), a finite ``gamma`` its noisy form (a proximal step
whose weight on the data is ``gamma``). ``eta`` is the reference code's: the fraction of the next
noise level drawn afresh (``c1 = eta sqrt(1 - abar)``, ``c2 = sqrt(1 - eta^2) sqrt(1 - abar)`` in its
VP notation), not DDIM's ``eta``. Defaults are the reference code's (``eta`` 0.85, ``gamma`` 1, 5 CG
iterations).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from invdiff.linalg import batch_view, conjugate_gradient
from invdiff.measurement import Measurement
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import Sampler, SamplerState, check_num_steps, extend_state, resolve_sigmas, start_from_noise
from invdiff.samplers.splitting import per_item_norm_sq
from invdiff.schedule import VPSchedule


@dataclasses.dataclass(frozen=True)
class DDSState(SamplerState):
    """``measurement`` expanded to the particles; ``sigmas`` in data units; ``weight``: ``g`` per particle;
    ``aty``: ``A^T y`` per particle; ``denoised``: the last ``x0'`` (what a policy between steps scores)."""

    sigmas: Tensor | None = None
    weight: Tensor | None = None
    aty: Tensor | None = None
    denoised: Tensor | None = None


class DDS(Sampler):
    """DDS with ``num_steps`` denoiser evaluations and ``cg_iterations`` products with ``A^T A`` each.

    Args:
        num_steps: DDIM steps, one network evaluation each (the paper: 49-100 for fastMRI).
        eta: fraction of fresh noise at each step (module docstring), in [0, 1].
        gamma: weight of the data in the CG step, relative to ``1 / ||A||^2``; ``inf`` for hard data
            consistency (noiseless data).
        cg_iterations: CG iterations per step (the paper's ``M``; 5).
        schedule, sigmas: the noise levels, as :class:`~invdiff.samplers.DPS`.
    """

    def __init__(self, num_steps: int = 50, eta: float = 0.85, gamma: float = 1.0, cg_iterations: int = 5,
                 schedule: VPSchedule | None = None, sigmas: Tensor | None = None):
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0 (inf for hard data consistency), got {gamma}")
        if isinstance(cg_iterations, bool) or not isinstance(cg_iterations, int) or cg_iterations < 0:
            raise ValueError(f"cg_iterations must be an integer >= 0, got {cg_iterations!r}")
        self.num_steps, self.eta, self.gamma = check_num_steps(num_steps), float(eta), float(gamma)
        self.cg_iterations, self.schedule, self._sigmas = cg_iterations, schedule, sigmas

    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        if measurement is None or not measurement.is_linear:
            raise ValueError("DDS needs a linear measurement (its data step is conjugate gradients on A^T A)")
        sigmas = resolve_sigmas(prior, self.num_steps, self.schedule, self._sigmas)
        x_init = start_from_noise(prior, float(sigmas[0]), n_particles)

        state = self.initial_state(measurement, prior, n_particles, generator, num_steps=sigmas.numel() - 1,
                                   x_init=x_init)
        m = measurement.expand(n_particles)
        weight = (torch.full_like(m.sigma, math.inf) if math.isinf(self.gamma)
                  else self.gamma / per_item_norm_sq(measurement, n_particles).to(m.sigma))
        return extend_state(state, DDSState, measurement=m, sigmas=sigmas, weight=weight, aty=m.adjoint(m.y))

    def data_step(self, state: DDSState, x0: Tensor) -> Tensor:
        """``x0'``: ``cg_iterations`` CG iterations from ``x0`` (module docstring)."""
        m = state.measurement
        if self.cg_iterations == 0:
            return x0
        if math.isinf(self.gamma):
            u, _ = conjugate_gradient(m.normal, state.aty, x0=x0, tol=0.0, max_iter=self.cg_iterations)
            return u
        g = batch_view(state.weight.to(x0.dtype), x0)
        u, _ = conjugate_gradient(lambda v: v + g * m.normal(v), x0 + g * state.aty, x0=x0, tol=0.0,
                                  max_iter=self.cg_iterations)
        return u

    def refine(self, state: DDSState, x0: Tensor) -> tuple[Tensor, dict]:
        """``x0'`` and the state fields the data step changed (none here; the volume form keeps its ADMM
        variables, :class:`~invdiff.samplers.volume.DDSVolume`)."""
        return self.data_step(state, x0), {}

    def step(self, state: DDSState) -> DDSState:
        i = state.step
        sigma, sigma_next = float(state.sigmas[i]), float(state.sigmas[i + 1])
        x0 = state.prior.denoise(state.x, sigma)
        refined, changed = self.refine(state, x0)
        if sigma_next > 0:
            eps = (state.x - x0) / sigma
            z = state.rng.randn_like(state.x, state.n_particles)
            x_next = refined + sigma_next * (self.eta * z + math.sqrt(1.0 - self.eta**2) * eps)
        else:
            x_next = refined
        return dataclasses.replace(state, x=x_next, step=i + 1, denoised=refined, **changed)
