"""RED-Diff (Mardani et al., ICLR 2024, "A Variational Perspective on Solving Inverse Problems with
Diffusion Models"): a variational mean ``mu`` optimised with Adam, the diffusion prior acting as a
regulariser at decreasing noise levels; no back-propagation through the network.

At step ``i`` with noise level ``sigma_i`` (data units, decreasing) and fresh ``eps ~ N(0, I)``::

    D    = denoise(mu + sigma_i eps, sigma_i)
    loss = ||y - A mu||^2 / (2 s^2)  +  lam * w(sigma_i) * <sg((mu - D) / sigma_i), mu>

with ``s`` the measurement noise level and ``sg`` stop-gradient. In the VP notation of the paper
``(mu - D) / sigma = eps_hat - eps`` and its SNR weighting ``sigma_t / alpha_t`` is exactly the EDM
``sigma``, so ``weighting="linear"`` is ``w = sigma``, ``"sqrt"`` is ``w = sqrt(sigma)`` and
``"constant"`` is ``w = 1``. Both terms are sums over all entries with the explicit noise level, so
the data/prior balance does not change with the image size. The gradient is ``A^T (A mu - y) / s^2
+ lam w (mu - D) / sigma`` (closed form for linear operators, autograd otherwise), and ``mu`` takes
an Adam step (``lr``, betas (0.9, 0.99) as in the reference implementation). Adam's moments are per
particle, so results do not depend on the batch.

The "samples" are the final ``mu`` of each particle (``N`` particles differ only through their
``eps`` draws); RED-Diff is a mode-seeking variational method, not a posterior sampler.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor

from invdiff.measurement import Measurement
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import Sampler, SamplerState, check_num_steps, extend_state, prior_sigmas
from invdiff.schedule import VPSchedule

Weighting = Literal["linear", "sqrt", "constant"]


@dataclasses.dataclass(frozen=True)
class REDDiffState(SamplerState):
    """``x`` is ``mu``; ``m``, ``v``: Adam's moments; ``measurement`` expanded to the particles."""

    sigmas: Tensor | None = None
    m: Tensor | None = None
    v: Tensor | None = None


class REDDiff(Sampler):
    """RED-Diff with ``num_steps`` denoiser evaluations.

    Args:
        num_steps: Adam steps, one denoiser call each (the paper uses 1000).
        lam: regularisation weight ``lam`` (module docstring).
        lr: Adam learning rate, in data units.
        weighting: ``"linear"`` (the paper's default), ``"sqrt"`` or ``"constant"``.
        init: ``"pinv"`` (``A^+ y``: zero-filled / CG least squares) or ``"zeros"``.
        pinv_rtol: for operators with an SVD, singular values below ``pinv_rtol * max|s|`` are dropped
            from the starting pseudo-inverse (a truncated SVD, as the reference code's ``H_pinv`` for
            deblurring, which zeroes those below 3e-2); without it a noisy deblurring start is
            amplified by up to ``1 / min|s|``. Operators without an SVD start from 50 CG iterations.
        schedule: VP schedule (model space) whose noise levels are visited from large to small
            (default: the prior's own, else DDPM linear); ``sigma_max`` caps them, in data units.
    """

    def __init__(self, num_steps: int = 1000, lam: float = 0.25, lr: float = 0.1, weighting: Weighting = "linear",
                 init: Literal["pinv", "zeros"] = "pinv", schedule: VPSchedule | None = None,
                 sigma_max: float | None = None, pinv_rtol: float = 3e-2):
        if weighting not in ("linear", "sqrt", "constant"):
            raise ValueError(f"weighting must be 'linear', 'sqrt' or 'constant', got {weighting!r}")
        if init not in ("pinv", "zeros"):
            raise ValueError(f"init must be 'pinv' or 'zeros', got {init!r}")
        if lam < 0 or lr <= 0:
            raise ValueError(f"need lam >= 0 and lr > 0, got {lam}, {lr}")
        self.num_steps, self.lam, self.lr, self.weighting, self.init_kind = check_num_steps(num_steps), lam, lr, weighting, init
        self.schedule, self.sigma_max, self.pinv_rtol = schedule, sigma_max, float(pinv_rtol)

    def sigmas_for(self, prior: Denoiser) -> Tensor:
        s = prior_sigmas(prior, self.num_steps, self.schedule)[:-1]
        return s.clamp(max=self.sigma_max) if self.sigma_max is not None else s

    def _weight(self, sigma: float) -> float:
        return {"linear": sigma, "sqrt": math.sqrt(sigma), "constant": 1.0}[self.weighting]

    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        if measurement is None:
            raise ValueError("RED-Diff needs a measurement")
        expanded = measurement.expand(n_particles)

        def x_init(rng, dtype):
            shape = (measurement.batch_size, n_particles, *prior.event_shape)
            if self.init_kind == "zeros":
                return torch.zeros(shape, dtype=dtype, device=measurement.y.device)
            return measurement.pinv(max_iter=50, rtol=self.pinv_rtol).reshape(measurement.batch_size, 1, *prior.event_shape).expand(shape)

        state = self.initial_state(measurement, prior, n_particles, generator,
                                   num_steps=self.num_steps, x_init=x_init)
        zeros = torch.zeros_like(state.x)
        return extend_state(state, REDDiffState, measurement=expanded, sigmas=self.sigmas_for(prior), m=zeros,
                            v=zeros.clone())

    def step(self, state: REDDiffState) -> REDDiffState:
        i = state.step
        sigma = float(state.sigmas[i])
        mu = state.x
        eps = state.rng.randn_like(mu, state.n_particles)
        denoised = state.prior.denoise(mu + sigma * eps, sigma)
        m = state.measurement
        data_grad = -m.grad_log_likelihood(mu)
        grad = data_grad + (self.lam * self._weight(sigma) / sigma) * (mu - denoised)
        b1, b2, t = 0.9, 0.99, i + 1
        m1 = b1 * state.m + (1 - b1) * grad
        v1 = b2 * state.v + (1 - b2) * grad * grad
        step = (m1 / (1 - b1**t)) / ((v1 / (1 - b2**t)).sqrt() + 1e-8)
        return dataclasses.replace(state, x=mu - self.lr * step, m=m1, v=v1, step=t)

