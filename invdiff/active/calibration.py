"""Calibrating the particles' predicted variance per k-space frequency, for the acquisition policy.

An acquisition policy scores a candidate column by how uncertain the particles are about it; measuring
it fixes the *error* of the reconstruction there. With a calibrated posterior the two agree in
expectation (the predicted variance of ``y_c`` is the expected squared error of its mean prediction).
Diffusion samplers with a few particles are not calibrated, and not uniformly: mid-run, DPS particles
disagree most at the k-space edges while their shared error sits at middle frequencies
(docs/results/ads-policies), so the uncalibrated policies spend lines where the error is small.

:func:`fit_column_scale` fits, on validation scans (never the scans a policy is then judged on), one
factor per distance from the k-space centre,

    s(d) = sum over records and unmeasured columns at distance d of err_c
           / sum over the same of var_c,

the ratio of the squared error of the particles' weighted mean prediction to their predicted variance
(the calibration ratio Δcal of :func:`invdiff.benchmark.cells.calibration_ratios`, inverted, per
frequency). Neighbouring distances are pooled (``smooth``) so that a few validation slices give a
stable profile.
:class:`~invdiff.active.policy.ActiveSubsampling` (``variance_scale=``) multiplies each candidate's
predicted variance by it: the score then ranks columns by calibrated predictive variance, the expected
error that measuring the column would remove. The idea is the conformal layer's (calibrate uncertainty on
held-out data with known answers), applied per frequency to the policy rather than to the intervals.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["column_distance", "fit_column_scale", "fit_records"]


def column_distance(count: int) -> Tensor:
    """``(count,)`` distance of each column from the k-space centre (index ``count // 2``, fastMRI's
    convention for centred k-space), in columns."""
    return (torch.arange(count) - count // 2).abs()


def fit_column_scale(variance: Tensor, error: Tensor, measured: Tensor, *, smooth: int = 2,
                     floor: float = 1e-3) -> Tensor:
    """One factor per column ``(K,)`` from records of acquisitions (module docstring).

    Args:
        variance: ``(M, K)`` the particles' predicted variance of each column at ``M`` records
            (acquisitions × items), summed over the column's real entries.
        error: ``(M, K)`` the squared error of their weighted mean prediction, in the same units.
        measured: ``(M, K)`` bool, the columns already measured at each record (left out of the fit).
        smooth: distances within ``± smooth`` of ``d`` are pooled into ``s(d)``.
        floor: the smallest factor returned, relative to the median over distances (a column never
            scores zero however well it was predicted on validation data).

    Columns at a distance no record left unmeasured get the median factor.
    """
    if variance.shape != error.shape or variance.shape != measured.shape or variance.dim() != 2:
        raise ValueError(f"variance, error and measured must be (M, K) alike, got {tuple(variance.shape)}, "
                         f"{tuple(error.shape)}, {tuple(measured.shape)}")
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    k = variance.shape[1]
    dist = column_distance(k)
    free = (~measured.bool()).to(torch.float64)
    n_d = int(dist.max()) + 1
    var_d = torch.zeros(n_d, dtype=torch.float64).index_add_(0, dist, (variance.to(torch.float64) * free).sum(0))
    err_d = torch.zeros(n_d, dtype=torch.float64).index_add_(0, dist, (error.to(torch.float64) * free).sum(0))
    if smooth:
        kernel = torch.ones(1, 1, 2 * smooth + 1, dtype=torch.float64)
        pool = lambda v: torch.nn.functional.conv1d(v[None, None], kernel, padding=smooth)[0, 0]  # noqa: E731
        var_d, err_d = pool(var_d), pool(err_d)
    seen = var_d > 0
    if not bool(seen.any()):
        raise ValueError("no unmeasured column with a positive predicted variance in the records")
    ratio = torch.full((n_d,), float("nan"), dtype=torch.float64)
    ratio[seen] = err_d[seen] / var_d[seen]
    median = ratio[seen].median()
    ratio = torch.where(seen, ratio, median).clamp_min(floor * median)
    return ratio[dist]


def fit_records(records: list[dict], **kwargs) -> Tensor:
    """:func:`fit_column_scale` on the records of :class:`~invdiff.active.policy.ActiveSubsampling` runs
    made with ``record=True`` (``variance``, ``error``, ``measured``: ``(B, K)`` per acquisition); ``kwargs``
    as :func:`fit_column_scale`."""
    if not records:
        raise ValueError("no records: run the policy with record=True and at least one acquisition")
    variance, error, measured = (torch.cat([r[key].reshape(-1, r[key].shape[-1]) for r in records])
                                 for key in ("variance", "error", "measured"))
    return fit_column_scale(variance, error, measured.bool(), **kwargs)
