"""fastMRI's centred orthonormal 2-D FFT, the 2-channel <-> complex layout of deepinv, and fastMRI's centre crop.

``fft2c(z) = fftshift(fft2(ifftshift(z), norm="ortho"))`` over the last two dimensions, so that the
k-space centre (DC) sits at index ``(H // 2, W // 2)`` and the transform is unitary. Complex images
are real tensors with (re, im) on dim 1: ``(B, 2, ...)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

_DIMS = (-2, -1)


def fft2c(z: Tensor) -> Tensor:
    """Centred unitary 2-D FFT of a complex tensor over its last two dimensions."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(z, dim=_DIMS), norm="ortho"), dim=_DIMS)


def ifft2c(k: Tensor) -> Tensor:
    """Inverse of :func:`fft2c`."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=_DIMS), norm="ortho"), dim=_DIMS)


def to_complex(x: Tensor) -> Tensor:
    """``(B, 2, ...)`` real -> ``(B, ...)`` complex."""
    if x.is_complex() or x.dim() < 2 or x.shape[1] != 2:
        raise ValueError(f"expected a real tensor (B, 2, ...) with (re, im) on dim 1, got {x.dtype} {tuple(x.shape)}")
    return torch.complex(x[:, 0], x[:, 1])


def from_complex(z: Tensor) -> Tensor:
    """``(B, ...)`` complex -> ``(B, 2, ...)`` real."""
    return torch.stack([z.real, z.imag], dim=1)


def rss(coil_images: Tensor, dim: int = 1) -> Tensor:
    """Root-sum-of-squares over coils of complex coil images (fastMRI's ``reconstruction_rss``)."""
    return torch.sqrt((coil_images.real**2 + coil_images.imag**2).sum(dim=dim))


def center_crop(x: Tensor, shape: tuple[int, int]) -> Tensor:
    """fastMRI's centre crop of the last two dimensions (offset ``(size - crop) // 2``)."""
    h, w = shape
    if not (0 < h <= x.shape[-2] and 0 < w <= x.shape[-1]):
        raise ValueError(f"cannot crop {tuple(x.shape[-2:])} to {shape}")
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]
