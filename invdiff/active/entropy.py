"""The acquisition score of active subsampling: the entropy of the particles' predicted measurements.

For each candidate measurement ``c`` (a k-space column, a pixel), the particles' predictions
``u_i = A_c x_i`` (``i = 1..N``, weights ``w_i``) define a Gaussian mixture
``q_c = sum_i w_i N(u_i, width^2 I)``: the predictive distribution of ``y_c`` when ``x_i`` are
posterior draws and ``width`` is the noise level. Its entropy has no closed form; the pairwise
estimator of Kolchinsky & Tracey (2017, Entropy 19(7):361) with the KL divergence between components,

    H_hat(q_c) = sum_i w_i H(N(0, width^2 I)) - sum_i w_i log sum_j w_j exp(-||u_i - u_j||^2 / (2 width^2)),

is an upper bound that is exact when the components do not overlap or coincide. The first term is the
same for every candidate of the same dimension, so :func:`mixture_entropy_scores` returns the second:
it grows from 0 (all particles agree on ``y_c``) to ``log N`` (all disagree by many widths). Choosing the
candidate of largest entropy is maximum-entropy sampling (Shewry & Wynn 1987), which for additive noise
of fixed level is choosing the largest expected information gain, as in ADS (Nolan et al., TMLR 2025).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["auto_width", "gaussian_gain_scores", "mixture_entropy_scores", "pairwise_sq_distances",
           "predicted_moments"]


def predicted_moments(pred: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """The particles' weighted mean prediction ``(B, K, D)`` and predicted variance ``(B, K)`` (summed over
    a candidate's ``D`` real entries), in float64, from predictions ``(B, N, K, D)`` and weights ``(B, N)``."""
    p = pred.to(torch.float64)
    w = weights.to(torch.float64)
    mean = torch.einsum("bn,bnkd->bkd", w, p)
    return mean, torch.einsum("bn,bnkd->bk", w, (p - mean.unsqueeze(1)) ** 2)


def pairwise_sq_distances(pred: Tensor) -> Tensor:
    """``(B, N, K, D)`` predictions -> ``(B, K, N, N)`` squared distances between particles, per candidate."""
    p = pred.to(torch.float64)
    sq = (p * p).sum(-1).transpose(1, 2)  # (B, K, N)
    gram = torch.einsum("bnkd,bmkd->bknm", p, p)
    return (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * gram).clamp_min(0.0)


def auto_width(d2: Tensor, floor: float = 0.0) -> Tensor:
    """A kernel width per item ``(B,)``: the one that puts the median pair of distinct particles (over
    all candidates) at KL divergence 1, ``width^2 = median(d^2) / 2``, but at least ``floor``.

    With a width at the noise level of well-measured data, every candidate's particles disagree by
    many widths and every score saturates at ``log N``; this width keeps the scores informative.
    """
    b, k, n, _ = d2.shape
    off = ~torch.eye(n, dtype=torch.bool, device=d2.device)
    med = d2[:, :, off].reshape(b, -1).median(dim=1).values
    return torch.maximum((med / 2).sqrt(), torch.as_tensor(floor, dtype=med.dtype, device=med.device))


def mixture_entropy_scores(pred: Tensor, width: float | Tensor, weights: Tensor | None = None) -> Tensor:
    """Entropy scores ``(B, K)`` of the module docstring (the candidate-dependent part of ``H_hat``).

    Args:
        pred: ``(B, N, K, D)`` each particle's predicted measurement for each of ``K`` candidates
            (``D`` real numbers each).
        width: kernel standard deviation per real entry, a float or one per item ``(B,)``.
        weights: ``(B, N)`` normalised particle weights (default uniform).
    """
    b, n = pred.shape[:2]
    d2 = pairwise_sq_distances(pred)
    w = torch.as_tensor(width, dtype=torch.float64, device=pred.device).reshape(-1, 1, 1, 1)
    if weights is None:
        log_w = torch.full((b, n), -math.log(n), dtype=torch.float64, device=pred.device)
    else:
        log_w = weights.to(torch.float64).clamp_min(1e-300).log()
    inner = torch.logsumexp(log_w[:, None, None, :] - d2 / (2 * w**2), dim=-1)  # (B, K, N)
    return -(log_w.exp()[:, None, :] * inner).sum(-1)


def gaussian_gain_scores(pred: Tensor, noise: float | Tensor, weights: Tensor | None = None) -> Tensor:
    """The expected information gain of each candidate if its predictive distribution were Gaussian,
    ``(B, K)``: ``1/2 log det(I + C_c / noise^2)`` with ``C_c`` the particles' weighted covariance of ``y_c``
    (``D x D``, rank below ``N``), computed in the ``N x N`` form
    ``1/2 log det(I_N + W^1/2 U U^T W^1/2 / noise^2)`` (``U`` the centred predictions, ``W`` the weights).

    Unlike :func:`mixture_entropy_scores` it does not saturate at ``log N`` when the particles disagree
    by many noise widths, so it needs no kernel width: ``noise`` is the measurement's own standard
    deviation per real entry. It grows with the logarithm of each predictive variance, so a candidate
    whose spread is large but explained by one direction counts less than one uncertain in many.

    Args:
        pred: ``(B, N, K, D)`` each particle's predicted measurement for each candidate.
        noise: the noise standard deviation per real entry, a float or one per item ``(B,)``.
        weights: ``(B, N)`` normalised particle weights (default uniform).
    """
    b, n = pred.shape[:2]
    p = pred.to(torch.float64)
    if weights is None:
        w = torch.full((b, n), 1.0 / n, dtype=torch.float64, device=pred.device)
    else:
        w = weights.to(torch.float64)
    centred = p - predicted_moments(p, w)[0].unsqueeze(1)
    scaled = centred * w.sqrt()[:, :, None, None]
    gram = torch.einsum("bnkd,bmkd->bknm", scaled, scaled)
    s2 = torch.as_tensor(noise, dtype=torch.float64, device=pred.device).reshape(-1, 1, 1, 1) ** 2
    eye = torch.eye(n, dtype=torch.float64, device=pred.device)
    return 0.5 * torch.linalg.slogdet(eye + gram / s2).logabsdet
