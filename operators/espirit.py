"""Coil sensitivity estimation by ESPIRiT (Uecker et al., MRM 2014) through sigpy's ``EspiritCalib``.

sigpy's centred orthonormal FFT is the one of :mod:`invdiff.operators.fft`, so k-space in invdiff's
layout goes in unchanged. Only the auto-calibration region (the central ``calib_width`` rows and
columns) is used; the rest of k-space may be undersampled.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from invdiff.operators.fft import to_complex


def espirit_maps(kspace: Tensor, calib_width: int = 24, threshold: float = 0.02, kernel_width: int = 6,
                 crop: float = 0.95, max_iter: int = 100, margin: int = 0) -> Tensor:
    """ESPIRiT coil maps from multi-coil k-space.

    Args:
        kspace: ``(B, 2, C, H, W)`` or ``(2, C, H, W)`` real (re, im), or complex ``(B, C, H, W)`` /
            ``(C, H, W)``; centred k-space with a fully sampled calibration region.
        calib_width: width of the central calibration square in k-space samples.
        threshold: singular-value threshold of the calibration matrix, relative to the largest.
        kernel_width: k-space kernel width.
        crop: eigenvalue threshold below which maps are set to zero (outside the object).
        max_iter: power iterations for the per-pixel eigenvectors.
        margin: keep the maps (the eigenvectors, whatever their eigenvalue) within this many pixels of
            the thresholded region too (a square dilation): the eigenvalue falls with the signal at the
            object's edge, so the thresholded support cuts faint anatomy there (scalp, the top of the head).

    Returns:
        complex coil maps of the input's batch shape, ``(B, C, H, W)`` or ``(C, H, W)``, in the complex
        dtype matching the input's precision. Each map set is unit-norm over coils where non-zero,
        with a phase relative to the first coil fixed by sigpy.
    """
    import sigpy.mri

    ksp = torch.as_tensor(kspace)
    if not ksp.is_complex():
        if ksp.dim() == 4 and ksp.shape[0] == 2:
            ksp = ksp.unsqueeze(0)
            unbatched = True
        elif ksp.dim() == 5 and ksp.shape[1] == 2:
            unbatched = False
        else:
            raise ValueError(f"real k-space must be (B, 2, C, H, W) or (2, C, H, W), got {tuple(ksp.shape)}")
        ksp = to_complex(ksp)
    else:
        unbatched = ksp.dim() == 3
        ksp = ksp.unsqueeze(0) if unbatched else ksp
        if ksp.dim() != 4:
            raise ValueError(f"complex k-space must be (B, C, H, W) or (C, H, W), got {tuple(kspace.shape)}")
    h, w = ksp.shape[-2:]
    if not 2 * kernel_width <= calib_width <= min(h, w):
        raise ValueError(f"calib_width must lie in [{2 * kernel_width}, {min(h, w)}] for kernel_width "
                         f"{kernel_width} and k-space {h}x{w}, got {calib_width}")
    maps = []
    for item in ksp.detach().cpu().numpy().astype(np.complex128):
        app = sigpy.mri.app.EspiritCalib(item, calib_width=calib_width, thresh=threshold, kernel_width=kernel_width,
                                         crop=0.0, max_iter=max_iter, output_eigenvalue=True, show_pbar=False)
        vectors, eigenvalue = (torch.from_numpy(np.asarray(a)) for a in app.run())
        keep = (eigenvalue > crop).to(torch.float64).reshape(1, 1, *vectors.shape[-2:])
        if margin > 0:
            keep = torch.nn.functional.max_pool2d(keep, 2 * margin + 1, stride=1, padding=margin)
        maps.append(vectors * keep[0].to(vectors.dtype))
    out = torch.stack(maps).to(device=ksp.device, dtype=ksp.dtype)
    return out[0] if unbatched else out
