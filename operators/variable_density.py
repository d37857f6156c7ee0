"""2-D variable-density k-space masks: Poisson-disc (sigpy) and Gaussian-density random sampling.

Both return a float32 ``(H, W)`` 0/1 mask over the centred k-space with a fully sampled
``calib x calib`` auto-calibration square at ``(H // 2, W // 2)`` (the DC entry of
:func:`~invdiff.operators.fft.fft2c`), ready for :class:`~invdiff.operators.SingleCoilMRI` and
:class:`~invdiff.operators.MultiCoilMRI`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def _check(shape: tuple[int, int], acceleration: float, calib: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (int(s) for s in shape)
    if h < 2 or w < 2:
        raise ValueError(f"shape must be (H, W) with H, W >= 2, got {shape}")
    if not acceleration > 1:
        raise ValueError(f"acceleration must exceed 1, got {acceleration}")
    ch, cw = (calib, calib) if isinstance(calib, int) else (int(calib[0]), int(calib[1]))
    if not (0 <= ch <= h and 0 <= cw <= w):
        raise ValueError(f"calib {calib} must fit in shape {shape}")
    if ch * cw > h * w / acceleration:
        raise ValueError(f"a {ch}x{cw} calibration square (or rectangle) alone exceeds 1/{acceleration} of "
                         f"{h}x{w} samples")
    return h, w


def calibration_square(shape: tuple[int, int], calib: int) -> Tensor:
    """Boolean ``(H, W)`` with a ``calib x calib`` square centred on the DC entry ``(H // 2, W // 2)``."""
    h, w = shape
    mask = torch.zeros(h, w, dtype=torch.bool)
    r0, c0 = h // 2 - calib // 2, w // 2 - calib // 2
    mask[r0 : r0 + calib, c0 : c0 + calib] = True
    return mask


def poisson_disc_mask(shape: tuple[int, int], acceleration: float, calib: int | tuple[int, int] = 0,
                      seed: int = 0) -> Tensor:
    """Variable-density Poisson-disc sampling by :func:`sigpy.mri.poisson` (corners cropped); ``calib``: the
    side of the fully sampled centre square, or ``(rows, columns)`` of a centre rectangle.

    sigpy seeds numpy's global generator with ``seed`` and restores its previous state afterwards.
    The achieved acceleration is within sigpy's tolerance (10 %) of the requested one.
    """
    import sigpy.mri

    h, w = _check(shape, acceleration, calib)
    calib = (calib, calib) if isinstance(calib, int) else (int(calib[0]), int(calib[1]))
    try:
        mask = sigpy.mri.poisson((h, w), acceleration, calib=calib, dtype=np.float32, seed=int(seed))
    except ValueError as err:
        raise ValueError(f"no Poisson-disc mask of shape {(h, w)} with a {calib} calibration region reaches "
                         f"acceleration {acceleration} (sigpy: {err})") from None
    return torch.from_numpy(np.ascontiguousarray(mask.real)).to(torch.float32)


def gaussian_mask(shape: tuple[int, int], acceleration: float, calib: int, generator: torch.Generator,
                  std: float = 0.25) -> Tensor:
    """Exactly ``round(H W / acceleration)`` samples: the calibration square plus entries drawn without
    replacement with probability proportional to a Gaussian density of standard deviation
    ``std * (H, W)`` around the k-space centre."""
    h, w = _check(shape, acceleration, calib)
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    total = int(round(h * w / acceleration))
    mask = calibration_square((h, w), calib)
    ky = (torch.arange(h, dtype=torch.float64) - h // 2) / (std * h)
    kx = (torch.arange(w, dtype=torch.float64) - w // 2) / (std * w)
    density = torch.exp(-0.5 * (ky[:, None] ** 2 + kx[None, :] ** 2)).flatten()
    density[mask.flatten()] = 0.0
    extra = total - int(mask.sum())
    if extra > 0:
        picks = torch.multinomial(density, extra, replacement=False, generator=generator)
        mask.view(-1)[picks] = True
    return mask.to(torch.float32)


def acceleration_of(mask: Tensor) -> float:
    """Achieved acceleration ``numel / number of samples`` of a 0/1 mask."""
    n = float((mask != 0).sum())
    return math.inf if n == 0 else mask.numel() / n
