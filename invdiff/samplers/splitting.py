"""Pieces shared by the samplers that split the posterior into a likelihood part and a prior part
(:class:`~invdiff.samplers.PnPDM`, :class:`~invdiff.samplers.DAPS`, :class:`~invdiff.samplers.DDS`), and the
Gaussian likelihood of ΠGDM and TDS's Gaussian twist (:func:`pseudo_inverse_guidance`).

All noise levels are in data units (``x = x0 + sigma n``, the EDM convention of
:class:`~invdiff.priors.base.Denoiser`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from invdiff.linalg import batch_view
from invdiff.measurement import Measurement
from invdiff.priors.base import Denoiser
from invdiff.rng import BatchGenerator
from invdiff.samplers.base import EXACT_SOLVE_BYTES, prior_scale, with_exact_solver  # noqa: F401 (re-exported)
from invdiff.schedule import VPSchedule, karras_sigmas

__all__ = ["EXACT_SOLVE_BYTES", "denoising_levels", "gaussian_likelihood_sample", "per_item_norm_sq",
           "prior_sigma_range", "pseudo_inverse_guidance", "with_exact_solver"]


def prior_sigma_range(prior: Denoiser) -> tuple[float, float]:
    """``(lowest, highest)`` noise level the prior was trained at, in data units: its VP schedule's
    range times its model-space scale (DDPM linear for priors without a schedule)."""
    sigmas = (prior.schedule or VPSchedule.linear()).sigmas
    scale = prior_scale(prior)
    return float(sigmas[0]) * scale, float(sigmas[-1]) * scale


def denoising_levels(sigma_start: float, num_steps: int, sigma_floor: float) -> Tensor:
    """``num_steps`` decreasing noise levels from ``sigma_start`` down to ``sigma_floor`` (Karras et al.'s
    spacing, rho = 7), then 0: the path of a reverse diffusion started at ``sigma_start`` that spends one
    network evaluation per level. A start at or below the floor gives ``[sigma_start, 0]``."""
    if num_steps == 1 or sigma_start <= sigma_floor:
        return torch.tensor([sigma_start, 0.0], dtype=torch.float64)
    return karras_sigmas(num_steps, sigma_floor, sigma_start)


def gaussian_likelihood_sample(m: Measurement, z: Tensor, gamma: float | Tensor, rng: BatchGenerator,
                               n_particles: int) -> Tensor:
    """An exact draw of ``p(x | z, y) ∝ N(x; z, gamma I) N(y; A x, sigma^2 I)`` for linear ``A``.

    Perturb-and-MAP: the proximal point of perturbed data, ``prox`` of ``z + sqrt(gamma) e1`` for the
    observation ``y + sigma e2``, is a sample of that Gaussian (its mean is the proximal point of the
    unperturbed data, its covariance ``(A^T A / sigma^2 + I / gamma)^{-1}``). Exact where
    :meth:`Measurement.prox` is (decomposable operators, normal solvers), CG to ``1e-10`` otherwise.
    ``m`` and ``z`` carry the ``B * N`` particles item-major; ``gamma`` is a scalar or ``(B * N,)``.
    """
    gamma_t = torch.as_tensor(gamma, dtype=z.dtype, device=z.device)
    e_x = rng.randn_like(z, n_particles) * (batch_view(gamma_t, z) if gamma_t.dim() else gamma_t).sqrt()
    y = m.y
    e_y = rng.randn_like(y, n_particles) * batch_view(m.sigma.to(y.real.dtype), y)
    return m.with_y(y + e_y).prox(z + e_x, gamma_t if gamma_t.dim() else float(gamma_t))


def pseudo_inverse_guidance(m: Measurement, x0: Tensor, r2: float | Tensor, max_iter: int = 50,
                            value: bool = False) -> tuple[Tensor, Tensor | None]:
    """For ``y ~ N(A x0, s^2 I + r^2 A A^T)`` (``x0`` known up to ``N(0, r^2 I)``; ``r2`` a float or ``(B,)``):
    the gradient in ``x0`` of its log-likelihood, ``A^T (s^2 I + r^2 A A^T)^{-1} (y - A x0)`` (x-shaped), and
    with ``value=True`` the log-likelihood ``-1/2 r^T (s^2 I + r^2 A A^T)^{-1} r`` per row (``r = y - A x0``,
    without the constant ``-1/2 log det``), else ``None``.

    The inverse is applied in image space by :meth:`Measurement.solve_regularised` (``r^2 A^T u`` for
    ``u = (s^2 I + r^2 A A^T)^{-1} r``, push-through identity; exact for decomposable operators, CG with
    ``max_iter`` iterations otherwise), and ``u = (r - A r^2 A^T u) / s^2`` costs one more product with ``A``.
    """
    res = m.residual(x0)
    r2_t = r2.to(res.real.dtype) if isinstance(r2, Tensor) else r2
    sol = m.solve_regularised(res, r2_t, tol=1e-6, max_iter=max_iter)
    direction = sol / (batch_view(r2_t, sol) if isinstance(r2_t, Tensor) else r2_t)
    if not value:
        return direction, None
    u = (res - m.forward(sol)) / batch_view(m.sigma.to(res.real.dtype) ** 2, res)
    prod = res.conj() * u if res.is_complex() else res * u
    return direction, -0.5 * prod.real.flatten(1).sum(1)


def per_item_norm_sq(m: Measurement, n_particles: int) -> Tensor:
    """``||A||^2`` of each item ``(B,)``, repeated for its ``n_particles`` particles ``(B * N,)``:
    the power iteration runs once per item, not once per particle."""
    return m.operator_norm_sq().repeat_interleave(n_particles).clamp(min=math.ulp(1.0))
