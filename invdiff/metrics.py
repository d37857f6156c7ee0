"""Image metrics with the fastMRI definitions, and posterior-fidelity metrics.

fastMRI (``fastmri/evaluate.py``): per volume ``(slices, H, W)``, both volumes centre-cropped to
``W x W`` (``W`` = the target's width);
``NMSE = ||gt - pred||^2 / ||gt||^2`` over the volume; ``PSNR = 10 log10(max(gt)^2 / MSE)`` over the
volume; ``SSIM`` = mean over slices of scikit-image's ``structural_similarity`` with data range
``max(gt)`` of the volume, a 7x7 uniform window, ``K1 = 0.01``, ``K2 = 0.03``, sample covariances, and
the mean over windows that lie inside the slice. A data set's figure is the mean over volumes.

Posterior fidelity: sliced Wasserstein distance, moment errors, mode weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


# ----- fastMRI image metrics ----------------------------------------------------------------------
def center_crop(x: Tensor, shape: tuple[int, int]) -> Tensor:
    """fastMRI's centre crop of the last two dimensions (offset ``(size - crop) // 2``)."""
    h, w = shape
    if not (0 < h <= x.shape[-2] and 0 < w <= x.shape[-1]):
        raise ValueError(f"cannot crop {tuple(x.shape[-2:])} to {shape}")
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


def _volumes(gt, pred) -> tuple[Tensor, Tensor]:
    gt, pred = torch.as_tensor(gt).to(torch.float64), torch.as_tensor(pred).to(torch.float64)
    if gt.dim() != 3 or pred.shape != gt.shape:
        raise ValueError(f"expected a target volume (slices, H, W) and a prediction of the same shape, got "
                         f"{tuple(gt.shape)} and {tuple(pred.shape)}")
    return gt, pred


def nmse(gt, pred) -> float:
    """fastMRI NMSE of a volume ``(slices, H, W)``."""
    gt, pred = _volumes(gt, pred)
    return float(((gt - pred) ** 2).sum() / (gt**2).sum())


def psnr(gt, pred) -> float:
    """fastMRI PSNR (dB) of a volume, data range ``max(gt)``."""
    gt, pred = _volumes(gt, pred)
    mse = float(((gt - pred) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(float(gt.max()) ** 2 / mse)


def ssim(gt, pred, maxval: float | None = None, win_size: int = 7) -> float:
    """fastMRI SSIM of a volume: mean over slices, data range ``max(gt)`` unless ``maxval`` is given."""
    gt, pred = _volumes(gt, pred)
    if min(gt.shape[-2:]) < win_size:
        raise ValueError(f"slices {tuple(gt.shape[-2:])} are smaller than the {win_size}x{win_size} window")
    data_range = float(gt.max()) if maxval is None else float(maxval)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    x, y = gt.unsqueeze(1), pred.unsqueeze(1)

    def mean(t: Tensor) -> Tensor:  # window means over windows inside the slice
        return F.avg_pool2d(t, win_size, stride=1)

    ux, uy = mean(x), mean(y)
    n = win_size**2
    cov_norm = n / (n - 1)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s.mean(dim=(1, 2, 3)).mean())


def fastmri_volume_metrics(target, reconstruction) -> dict[str, float]:
    """NMSE, PSNR and SSIM of one volume after fastMRI's crop of both to ``W x W``."""
    target, reconstruction = _volumes(target, reconstruction)
    w = target.shape[-1]
    target, reconstruction = center_crop(target, (w, w)), center_crop(reconstruction, (w, w))
    return {"NMSE": nmse(target, reconstruction), "PSNR": psnr(target, reconstruction),
            "SSIM": ssim(target, reconstruction)}
