"""Posterior-fidelity metrics for samples against an exact posterior: sliced Wasserstein distance,
moment errors, mode weights. Weighted samples (SMC) are supported throughout.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Seed of the projection directions of :func:`sliced_wasserstein`: fixed, so that two calls on
#: the same samples give the same number and figures in reports can be reproduced.
PROJECTION_SEED = 20230607


def _probabilities(weights: Tensor | None, n: int) -> Tensor:
    """Float64 weights summing to one: uniform over ``n`` samples when ``weights`` is None."""
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    w = weights.to(torch.float64)
    return w / w.sum()


def _weighted_quantiles(values: Tensor, weights: Tensor, q: Tensor) -> Tensor:
    """Quantile function of the discrete distributions ``sum_i w_i delta(values_i)``.

    ``values`` ``(P, n)`` sorted along the last dim, ``weights`` ``(P, n)`` in the same order,
    ``q`` ``(P, L)`` in (0, 1).
    """
    cdf = torch.cumsum(weights, dim=-1)
    idx = torch.searchsorted(cdf, q.contiguous()).clamp_max(values.shape[-1] - 1)
    return torch.gather(values, -1, idx)


def wasserstein_1d_squared(u: Tensor, v: Tensor, u_weights: Tensor | None = None,
                           v_weights: Tensor | None = None) -> Tensor:
    """Exact squared 2-Wasserstein distance between 1-D empirical distributions, row-wise.

    ``u`` ``(P, n)``, ``v`` ``(P, m)``; optional weights ``(n,)`` / ``(m,)`` (normalised here).
    Integrates ``(F_u^-1(q) - F_v^-1(q))^2`` exactly over the merged breakpoints of both CDFs.
    """
    p, n = u.shape
    m = v.shape[-1]
    uw, vw = _probabilities(u_weights, n), _probabilities(v_weights, m)
    u_sorted, ui = torch.sort(u.to(torch.float64), dim=-1)
    v_sorted, vi = torch.sort(v.to(torch.float64), dim=-1)
    uw_sorted = uw.to(u_sorted.device)[ui]
    vw_sorted = vw.to(v_sorted.device)[vi]
    breaks, _ = torch.sort(torch.cat([torch.cumsum(uw_sorted, -1), torch.cumsum(vw_sorted, -1)], -1), -1)
    breaks = breaks.clamp(0.0, 1.0)
    widths = torch.diff(breaks, dim=-1, prepend=torch.zeros(p, 1, dtype=torch.float64, device=breaks.device))
    mids = (breaks - 0.5 * widths).clamp(1e-15, 1 - 1e-15)
    diff = _weighted_quantiles(u_sorted, uw_sorted, mids) - _weighted_quantiles(v_sorted, vw_sorted, mids)
    return (widths * diff**2).sum(-1)


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 256, x_weights: Tensor | None = None,
                       y_weights: Tensor | None = None, seed: int = PROJECTION_SEED) -> Tensor:
    """Sliced 2-Wasserstein distance between point clouds ``x`` ``(n, d)`` and ``y`` ``(m, d)``.

    ``SW_2 = (E_theta W_2^2(theta^T x, theta^T y))^(1/2)`` over directions uniform on the sphere,
    estimated with ``n_projections`` directions from a generator seeded with ``seed``; each 1-D
    distance is exact (:func:`wasserstein_1d_squared`). Weighted samples (SMC) are supported.
    A translation by ``v`` gives ``||v|| / sqrt(d)`` in expectation over directions.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (n, d) and (m, d) point clouds, got {tuple(x.shape)} and {tuple(y.shape)}")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n_projections, x.shape[1], dtype=torch.float64, generator=g)
    theta = (theta / theta.norm(dim=1, keepdim=True)).to(x.device)
    xp = theta @ x.to(torch.float64).T
    yp = theta @ y.to(torch.float64).T
    return wasserstein_1d_squared(xp, yp, x_weights, y_weights).mean().sqrt()


def sliced_wasserstein_draws(draws: list[Tensor], y: Tensor, n_projections: int = 256,
                             seed: int = PROJECTION_SEED) -> Tensor:
    """:func:`sliced_wasserstein` from each equally weighted point cloud in ``draws`` (each ``(n, d)``, one
    ``n`` for all) to ``y`` ``(m, d)``: ``(len(draws),)``, float64, equal to separate calls to round-off.

    For the distribution of an exact-vs-exact distance (the floor of a test): the projections, the sorted
    projections of ``y`` and the merged quantile grid of two uniform distributions are computed once.
    """
    if not draws:
        raise ValueError("draws is empty")
    n, m = draws[0].shape[0], y.shape[0]
    if any(x.dim() != 2 or x.shape != draws[0].shape or x.shape[1] != y.shape[1] for x in draws) or y.dim() != 2:
        raise ValueError(f"expected (n, d) draws of one shape and an (m, d) reference, got "
                         f"{[tuple(x.shape) for x in draws[:3]]} and {tuple(y.shape)}")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n_projections, y.shape[1], dtype=torch.float64, generator=g)
    theta = (theta / theta.norm(dim=1, keepdim=True)).to(y.device)
    y_sorted, _ = torch.sort(theta @ y.to(torch.float64).T, dim=-1)
    steps = [torch.arange(1, k + 1, dtype=torch.float64) / k for k in (n, m)]
    breaks, _ = torch.sort(torch.cat(steps).clamp(0.0, 1.0))
    widths = torch.diff(breaks, prepend=torch.zeros(1, dtype=torch.float64))
    mids = (breaks - 0.5 * widths).clamp(1e-15, 1 - 1e-15)
    iu, iv = (torch.searchsorted(s, mids).clamp_max(s.numel() - 1).to(y.device) for s in steps)
    y_q, widths = y_sorted[:, iv], widths.to(y.device)
    out = []
    for x in draws:
        x_sorted, _ = torch.sort(theta @ x.to(torch.float64).T, dim=-1)
        out.append((widths * (x_sorted[:, iu] - y_q) ** 2).sum(-1).mean().sqrt())
    return torch.stack(out)


def weighted_moments(samples: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Weighted mean ``(d,)`` and covariance ``(d, d)`` of ``samples`` ``(n, d)``, float64."""
    s = samples.to(torch.float64)
    w = _probabilities(weights, s.shape[0]).to(s.device)
    mean = (w[:, None] * s).sum(0)
    c = s - mean
    return mean, (w[:, None] * c).T @ c


def moment_errors(samples: Tensor, mean: Tensor, cov: Tensor, weights: Tensor | None = None) -> dict[str, float]:
    """Errors of sample moments against exact ones.

    Returns ``mean_l2`` (Euclidean error of the mean), ``mean_rel`` (the same divided by
    ``sqrt(trace(cov))``, the posterior's own spread) and ``cov_rel`` (relative Frobenius error).
    """
    m_hat, c_hat = weighted_moments(samples, weights)
    mean, cov = mean.to(torch.float64), cov.to(torch.float64)
    mean_l2 = float((m_hat - mean).norm())
    return {
        "mean_l2": mean_l2,
        "mean_rel": mean_l2 / float(torch.trace(cov).clamp_min(1e-300).sqrt()),
        "cov_rel": float((c_hat - cov).norm() / cov.norm().clamp_min(1e-300)),
    }


def mode_weights(responsibilities: Tensor, weights: Tensor | None = None) -> Tensor:
    """Fraction of (weighted) samples assigned to each mixture component by maximum responsibility.

    ``responsibilities`` ``(n, K)``; returns ``(K,)`` summing to one.
    """
    n, k = responsibilities.shape
    w = _probabilities(weights, n)
    return torch.zeros(k, dtype=torch.float64).index_add_(0, responsibilities.argmax(-1).cpu(), w.cpu())
