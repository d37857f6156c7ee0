"""Pixel-wise uncertainty of weighted posterior samples: weighted quantiles, credible intervals, coverage.

A calibrated posterior puts the truth inside its central ``alpha`` credible interval for a fraction
``alpha`` of the pixels; :func:`interval_coverage` measures that fraction, level by level.
"""

from __future__ import annotations

import torch
from torch import Tensor

from invdiff.posterior import Posterior

__all__ = ["interval_coverage", "weighted_quantiles", "weighted_std"]


def weighted_quantiles(values: Tensor, weights: Tensor, levels: Tensor) -> Tensor:
    """Per-pixel weighted quantiles.

    Args:
        values: ``(B, N, ...)`` particle values.
        weights: ``(B, N)`` normalised weights.
        levels: ``(L,)`` probabilities in [0, 1].

    Returns ``(L, B, ...)``: the smallest particle value whose cumulative weight reaches each level
    (the inverse of the weighted empirical distribution function).
    """
    b, n = weights.shape
    flat = values.reshape(b, n, -1).transpose(1, 2)  # (B, P, N)
    order = torch.argsort(flat, dim=-1)
    sorted_vals = torch.gather(flat, -1, order)
    w = weights.to(torch.float64)[:, None, :].expand(b, flat.shape[1], n)
    cdf = torch.cumsum(torch.gather(w, -1, order), dim=-1)
    cdf[..., -1] = 1.0
    q = levels.to(torch.float64).reshape(-1, 1, 1, 1).expand(-1, b, flat.shape[1], 1).contiguous()
    idx = torch.searchsorted(cdf.unsqueeze(0).expand(q.shape[0], -1, -1, -1).contiguous(), q).clamp_max(n - 1)
    out = torch.gather(sorted_vals.unsqueeze(0).expand(q.shape[0], -1, -1, -1), -1, idx)[..., 0]
    return out.reshape(q.shape[0], b, *values.shape[2:])


def weighted_std(values: Tensor, weights: Tensor) -> Tensor:
    """Per-pixel weighted standard deviation ``(B, ...)`` of ``values`` ``(B, N, ...)`` (``weights`` normalised):
    :attr:`Posterior.std <invdiff.samplers.Posterior.std>` of the values."""
    return Posterior(values, weights.to(torch.float64).log()).std


def interval_coverage(values: Tensor, weights: Tensor, truth: Tensor, levels: list[float],
                      region: Tensor | None = None) -> dict[float, float]:
    """Fraction of pixels (in ``region``, a ``(B, ...)`` bool mask; all by default) whose truth ``(B, ...)``
    lies inside the central weighted credible interval of each level (``[(1-a)/2, (1+a)/2]`` quantiles)."""
    lv = torch.tensor(levels, dtype=torch.float64)
    lo = weighted_quantiles(values, weights, (1 - lv) / 2)
    hi = weighted_quantiles(values, weights, (1 + lv) / 2)
    inside = (truth.unsqueeze(0) >= lo) & (truth.unsqueeze(0) <= hi)
    if region is None:
        region = torch.ones_like(truth, dtype=torch.bool)
    return {a: float(inside[k][region].double().mean()) for k, a in enumerate(levels)}
