"""Image metrics with the fastMRI definitions (``fastmri/evaluate.py``).

Per volume ``(slices, H, W)``, both volumes centre-cropped to ``W x W`` (``W`` = the target's width);
``NMSE = ||gt - pred||^2 / ||gt||^2`` over the volume; ``PSNR = 10 log10(max(gt)^2 / MSE)`` over the
volume; ``SSIM`` = mean over slices of scikit-image's ``structural_similarity`` with data range
``max(gt)`` of the volume, a 7x7 uniform window, ``K1 = 0.01``, ``K2 = 0.03``, sample covariances, and
the mean over windows that lie inside the slice. A data set's figure is the mean over volumes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.operators.fft import center_crop


def _volumes(gt, pred) -> tuple[Tensor, Tensor]:
    gt, pred = torch.as_tensor(gt).to(torch.float64), torch.as_tensor(pred).to(torch.float64)
    if gt.dim() != 3 or pred.shape != gt.shape:
        raise ValueError(f"expected a target volume (slices, H, W) and a prediction of the same shape, got "
                         f"{tuple(gt.shape)} and {tuple(pred.shape)}")
    return gt, pred


def mse(gt, pred) -> float:
    """fastMRI MSE of a volume ``(slices, H, W)``: the mean squared difference over every voxel."""
    gt, pred = _volumes(gt, pred)
    return float(((gt - pred) ** 2).mean())


def nmse(gt, pred) -> float:
    """fastMRI NMSE of a volume ``(slices, H, W)``."""
    gt, pred = _volumes(gt, pred)
    return float(((gt - pred) ** 2).sum() / (gt**2).sum())


def psnr(gt, pred, maxval: float | None = None) -> float:
    """fastMRI PSNR (dB) of a volume: ``10 log10(maxval^2 / MSE)``, data range ``maxval`` (default
    ``max(gt)``, as fastMRI's ``evaluate.py``)."""
    gt, pred = _volumes(gt, pred)
    error = float(((gt - pred) ** 2).mean())
    top = float(gt.max()) if maxval is None else float(maxval)
    return math.inf if error == 0 else 10 * math.log10(top**2 / error)


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
