"""Coil sensitivity estimation by ESPIRiT (Uecker et al., MRM 2014).

A square calibration region and kernel go through sigpy's ``EspiritCalib``; a rectangular one
(``calib_width = (rows, columns)``) through :func:`espirit_calibration`, the same
algorithm (checked against sigpy on square regions) on any ``rows x columns`` block of the centre. The
rectangle is what Cartesian data offer: the readout (rows) is fully sampled, only the phase-encode
columns are undersampled, so at 8x a 10-column centre still gives a calibration block of many rows
(BART's ``ecalib`` likewise takes the fully sampled region per dimension). sigpy's centred orthonormal
FFT is the one of :mod:`invdiff.operators.fft`, so k-space in invdiff's layout goes in unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from invdiff.operators.fft import to_complex


def espirit_maps(kspace: Tensor, calib_width: int | tuple[int, int] = 24, threshold: float = 0.02,
                 kernel_width: int | tuple[int, int] = 6, crop: float = 0.95, max_iter: int = 100,
                 margin: int = 0) -> Tensor:
    """ESPIRiT coil maps from multi-coil k-space.

    Args:
        kspace: ``(B, 2, C, H, W)`` or ``(2, C, H, W)`` real (re, im), or complex ``(B, C, H, W)`` /
            ``(C, H, W)``; centred k-space with a fully sampled calibration region.
        calib_width: the central calibration region in k-space samples: a square's width, or
            ``(rows, columns)`` of a rectangle (rows along the readout, the second-to-last axis).
        threshold: singular-value threshold of the calibration matrix, relative to the largest.
        kernel_width: k-space kernel width, or ``(rows, columns)``.
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
    calib, kernel = _pair("calib_width", calib_width), _pair("kernel_width", kernel_width)
    for axis, size in enumerate((h, w)):
        if not 2 * kernel[axis] <= calib[axis] <= size:
            raise ValueError(f"calib_width must lie in [{2 * kernel[axis]}, {size}] along axis {axis - 2} for "
                             f"kernel_width {kernel_width} and k-space {h}x{w}, got {calib_width}")
    square = calib[0] == calib[1] and kernel[0] == kernel[1]
    maps = []
    for item in ksp.detach().cpu().numpy().astype(np.complex128):
        if square:
            app = sigpy.mri.app.EspiritCalib(item, calib_width=calib[0], thresh=threshold,
                                             kernel_width=kernel[0], crop=0.0, max_iter=max_iter,
                                             output_eigenvalue=True, show_pbar=False)
            vectors, eigenvalue = (torch.from_numpy(np.asarray(a)) for a in app.run())
        else:
            vectors, eigenvalue = espirit_calibration(torch.from_numpy(item), calib, kernel, threshold, max_iter)
        keep = (eigenvalue > crop).to(torch.float64).reshape(1, 1, *vectors.shape[-2:])
        if margin > 0:
            keep = torch.nn.functional.max_pool2d(keep, 2 * margin + 1, stride=1, padding=margin)
        maps.append(vectors * keep[0].to(vectors.dtype))
    out = torch.stack(maps).to(device=ksp.device, dtype=ksp.dtype)
    return out[0] if unbatched else out


def _pair(name: str, value: int | tuple[int, int]) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive integer or (rows, columns) of them, got {value!r}")
    return pair


def espirit_calibration(kspace: Tensor, calib: tuple[int, int], kernel: tuple[int, int], threshold: float = 0.02,
                        max_iter: int = 100, kernel_chunk: int = 16) -> tuple[Tensor, Tensor]:
    """ESPIRiT's first map set and its eigenvalue from the central ``calib = (rows, columns)`` block of one
    complex ``(C, H, W)`` k-space, with ``kernel = (rows, columns)`` kernels.

    Uecker et al.'s steps, as sigpy's ``EspiritCalib`` takes them for a square: the calibration matrix of
    every kernel-sized block (rows: blocks; columns: coil, row, column), the right singular vectors above
    ``threshold`` times the largest singular value, each zero-padded to ``(H, W)`` and inverse transformed
    (centred, orthonormal), their per-pixel Gram matrices summed and scaled by ``H W / (kr kc)``, and
    ``max_iter`` power iterations per pixel from all-ones. Returns the maps ``(C, H, W)`` (unit norm over
    coils, the first coil's phase removed) and the eigenvalue ``(H, W)``, complex128 / float64. Memory: the
    per-pixel Gram matrices, ``16 H W C^2`` bytes (0.7 GiB at 640 x 320 and 15 coils), plus
    ``kernel_chunk`` kernel images.
    """
    ksp = torch.as_tensor(kspace).to(torch.complex128)
    c, h, w = ksp.shape
    (cr, cc), (kr, kc) = calib, kernel
    r0, c0 = h // 2 - cr // 2, w // 2 - cc // 2  # sigpy's centred resize
    block = ksp[:, r0:r0 + cr, c0:c0 + cc]
    rows = block.unfold(1, kr, 1).unfold(2, kc, 1)  # (C, nr, nc, kr, kc)
    matrix = rows.permute(1, 2, 0, 3, 4).reshape(-1, c * kr * kc)
    _, singular, vh = torch.linalg.svd(matrix, full_matrices=False)
    kernels = vh[singular > threshold * singular.max()].reshape(-1, c, kr, kc)
    top, left = h // 2 - kr // 2, w // 2 - kc // 2
    gram = torch.zeros((h, w, c, c), dtype=torch.complex128)
    for start in range(0, len(kernels), kernel_chunk):
        part = kernels[start:start + kernel_chunk]
        padded = torch.zeros((len(part), c, h, w), dtype=torch.complex128)
        padded[..., top:top + kr, left:left + kc] = part
        images = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(padded, dim=(-2, -1)), norm="ortho"),
                                    dim=(-2, -1))
        gram += torch.einsum("kchw,kdhw->hwcd", images, images.conj())
    gram *= h * w / (kr * kc)
    x = torch.ones((h, w, c), dtype=torch.complex128)
    eigenvalue = torch.full((h, w), float("inf"), dtype=torch.float64)
    for _ in range(max_iter):
        y = torch.einsum("hwcd,hwd->hwc", gram, x)
        eigenvalue = y.abs().square().sum(-1).sqrt()
        x = y / eigenvalue[..., None]
    maps = x.permute(2, 0, 1)
    maps = maps * (maps[0] / maps[0].abs()).conj()
    return maps, eigenvalue
