"""Blur kernels: Gaussian, random motion trajectories, and the transfer function of any kernel.

Kernels are ``(B or 1, C or 1, k, k)`` real tensors with odd ``k``, centred at ``(k // 2, k // 2)``
and summing to one. Blurring is convolution (the kernel is flipped, unlike ``conv2d``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def as_kernel(kernel: Tensor) -> Tensor:
    """Normalise a kernel to ``(B, C, k, k)``; odd square sizes only, real and finite."""
    kernel = torch.as_tensor(kernel)
    if kernel.is_complex() or not kernel.is_floating_point():
        raise ValueError(f"kernel must be a real floating tensor, got {kernel.dtype}")
    if kernel.dim() == 2:
        kernel = kernel[None, None]
    elif kernel.dim() == 3:
        kernel = kernel[:, None]
    if kernel.dim() != 4 or kernel.shape[-1] != kernel.shape[-2] or kernel.shape[-1] % 2 == 0:
        raise ValueError(f"kernel must be (k, k), (B, k, k) or (B, C, k, k) with odd k, got {tuple(kernel.shape)}")
    if not bool(torch.isfinite(kernel).all()):
        raise ValueError("kernel has NaN or Inf entries")
    return kernel


def gaussian_kernel(std: float | Tensor, size: int | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """Isotropic Gaussian kernels ``(B, 1, k, k)`` for one ``std`` (pixels) or one per sample ``(B,)``.

    ``size`` defaults to ``2 ceil(3 max std) + 1``.
    """
    std = torch.as_tensor(std, dtype=torch.float64).reshape(-1)
    if not bool((std > 0).all()):
        raise ValueError(f"std must be > 0, got {std.tolist()}")
    size = size or 2 * math.ceil(3 * float(std.max())) + 1
    if size % 2 == 0:
        raise ValueError(f"size must be odd, got {size}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    sq = r[:, None] ** 2 + r[None, :] ** 2
    k = torch.exp(-sq[None] / (2 * std[:, None, None] ** 2))
    return (k / k.sum(dim=(-2, -1), keepdim=True)).unsqueeze(1).to(dtype)


def motion_kernels(num: int, size: int, generator: torch.Generator, length: float | None = None,
                   curvature: float = 0.3, steps: int = 256, dtype: torch.dtype = torch.float64) -> Tensor:
    """``num`` random camera-shake kernels ``(num, 1, size, size)``.

    Each is the path of a point whose heading performs a Gaussian random walk (step standard deviation
    ``curvature`` radians, from a uniform initial heading) for a total length drawn uniformly in
    ``[length / 2, length]`` pixels (default ``length = 0.6 size``), centred on its mean position and
    rasterised with bilinear weights. All draws come from ``generator``.
    """
    if size % 2 == 0 or size < 3:
        raise ValueError(f"size must be odd and >= 3, got {size}")
    length = 0.6 * size if length is None else float(length)
    if not 0 < length < size:
        raise ValueError(f"length must lie in (0, {size}) pixels for size {size}, got {length}")
    heading0 = 2 * math.pi * torch.rand(num, 1, generator=generator, dtype=torch.float64)
    turns = curvature * torch.randn(num, steps, generator=generator, dtype=torch.float64)
    total = length * (0.5 + 0.5 * torch.rand(num, 1, generator=generator, dtype=torch.float64))
    heading = heading0 + torch.cumsum(turns, dim=1)
    step = total / steps
    path = torch.cumsum(torch.stack([heading.cos(), heading.sin()], dim=-1) * step[..., None], dim=1)
    path = path - path.mean(dim=1, keepdim=True)
    # Shrink paths that do not fit (a curled walk can still reach beyond the frame).
    reach = path.abs().amax(dim=(1, 2), keepdim=True)
    path = path * torch.clamp((size // 2 - 1) / reach.clamp_min(1e-12), max=1.0)
    pos = path + size // 2  # (num, steps, 2): (x, y) in pixel units
    lower = torch.floor(pos)
    frac = pos - lower
    lower = lower.long()
    out = torch.zeros(num, size * size, dtype=torch.float64)
    for dx in (0, 1):
        for dy in (0, 1):
            w = (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
            idx = (lower[..., 1] + dy) * size + (lower[..., 0] + dx)
            out.scatter_add_(1, idx, w)
    out = out / out.sum(dim=1, keepdim=True)
    return out.reshape(num, 1, size, size).to(dtype)


def kernel_spectrum(kernel: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Transfer function ``fft2`` of the kernel embedded circularly with its centre at ``(0, 0)``:
    ``(B, C, H, W)`` complex; ``ifft2(spectrum * fft2(x))`` is circular convolution with the kernel."""
    h, w = image_size
    k = kernel.shape[-1]
    if k > min(h, w):
        raise ValueError(f"a {k}x{k} kernel does not fit a {h}x{w} image")
    padded = torch.nn.functional.pad(kernel, (0, w - k, 0, h - k))
    padded = torch.roll(padded, shifts=(-(k // 2), -(k // 2)), dims=(-2, -1))
    return torch.fft.fft2(padded)
