"""Particle utilities: normalised weights, effective sample size, resampling.

Log-weights are ``(B, N)`` tensors, one row of ``N`` particles per measured item, computed in
float64. Resampling draws its uniforms from a :class:`~invdiff.rng.BatchGenerator`, one stream per
row, so a row's result does not depend on the other rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from invdiff.rng import BatchGenerator


def normalized_weights(log_weights: Tensor) -> Tensor:
    """Weights summing to one per row, float64 ``(B, N)``."""
    return torch.softmax(log_weights.to(torch.float64), dim=-1)


def effective_sample_size(log_weights: Tensor) -> Tensor:
    """Kish's ESS ``(sum w)^2 / sum w^2`` per row, float64 ``(B,)``, in ``[1, N]``."""
    lw = log_weights.to(torch.float64)
    return torch.exp(2 * torch.logsumexp(lw, -1) - torch.logsumexp(2 * lw, -1))


def _inverse_cdf(log_weights: Tensor, u: Tensor) -> Tensor:
    cdf = torch.cumsum(normalized_weights(log_weights), dim=-1)
    cdf[..., -1] = 1.0  # guard against round-off leaving u beyond the last bin
    return torch.searchsorted(cdf, u.contiguous(), right=True).clamp_max(cdf.shape[-1] - 1)


def multinomial_resample(log_weights: Tensor, rng: BatchGenerator) -> Tensor:
    """Indices ``(B, N)`` of ``N`` i.i.d. draws per row from the normalised weights."""
    n = log_weights.shape[-1]
    u, _ = torch.sort(rng.rand(n, dtype=torch.float64).to(log_weights.device), dim=-1)
    return _inverse_cdf(log_weights, u)


def systematic_resample(log_weights: Tensor, rng: BatchGenerator) -> Tensor:
    """Systematic resampling (Kitagawa 1996): one uniform per row, ``u_j = (U + j) / N``.

    Particle ``i`` is copied ``floor(N w_i)`` or ``ceil(N w_i)`` times: lower variance than
    multinomial resampling, and still unbiased.
    """
    n = log_weights.shape[-1]
    u0 = rng.rand(1, dtype=torch.float64).to(log_weights.device)
    u = (u0 + torch.arange(n, dtype=torch.float64, device=log_weights.device)) / n
    return _inverse_cdf(log_weights, u)


RESAMPLERS = {"multinomial": multinomial_resample, "systematic": systematic_resample}


def gather_particles(x: Tensor, indices: Tensor) -> Tensor:
    """Select particles: ``x`` ``(B*N, ...)`` item-major, ``indices`` ``(B, N)`` -> ``(B*N, ...)``."""
    b, n = indices.shape
    offset = (torch.arange(b, device=indices.device) * n).unsqueeze(-1)
    return x[(indices + offset).reshape(-1)]
