"""Procedural phantoms: Shepp-Logan and random ellipses, rasterised on ``[-1, 1]^2``.

Coordinates: ``x`` grows to the right along columns and ``y`` grows upwards, so row 0 is ``y = 1``
(the convention of Shepp & Logan 1974 and of MATLAB's and scikit-image's phantoms). Pixel ``(i, j)`` of
an ``n x n`` image covers the square centred at ``x = (2j + 1)/n - 1``, ``y = 1 - (2i + 1)/n``; a
pixel takes an ellipse's value when its centre lies inside (no anti-aliasing unless ``supersample``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["SHEPP_LOGAN", "SHEPP_LOGAN_MODIFIED", "ellipses_image", "random_ellipses", "shepp_logan"]

# (value, semi-axis a along x, semi-axis b along y, centre x0, centre y0, rotation in degrees)
SHEPP_LOGAN = (
    (2.00, 0.6900, 0.920, 0.00, 0.0000, 0.0),
    (-0.98, 0.6624, 0.874, 0.00, -0.0184, 0.0),
    (-0.02, 0.1100, 0.310, 0.22, 0.0000, -18.0),
    (-0.02, 0.1600, 0.410, -0.22, 0.0000, 18.0),
    (0.01, 0.2100, 0.250, 0.00, 0.3500, 0.0),
    (0.01, 0.0460, 0.046, 0.00, 0.1000, 0.0),
    (0.01, 0.0460, 0.046, 0.00, -0.1000, 0.0),
    (0.01, 0.0460, 0.023, -0.08, -0.6050, 0.0),
    (0.01, 0.0230, 0.023, 0.00, -0.6060, 0.0),
    (0.01, 0.0230, 0.046, 0.06, -0.6050, 0.0),
)
"""Shepp & Logan (1974), IEEE Trans. Nucl. Sci. 21(3), table 1."""

SHEPP_LOGAN_MODIFIED = tuple((v, *rest) for v, (_, *rest) in zip(
    (1.0, -0.8, -0.2, -0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1), SHEPP_LOGAN))
"""Toft's higher-contrast intensities (P. Toft, PhD thesis, 1996), as in MATLAB's ``phantom``."""


def _grid(n: int, supersample: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    m = n * supersample
    centres = (2 * torch.arange(m, dtype=dtype) + 1) / m - 1
    return centres.reshape(1, 1, 1, m), -centres.reshape(1, 1, m, 1)  # x (cols), y (rows, top = +1)


def ellipses_image(params: Tensor, n: int, supersample: int = 1) -> Tensor:
    """Sum of ellipses rasterised on an ``n x n`` grid.

    Args:
        params: ``(B, E, 6)`` or ``(E, 6)`` rows of (value, a, b, x0, y0, angle in degrees).
        n: image size in pixels.
        supersample: average ``supersample^2`` points per pixel (anti-aliasing).

    Returns:
        ``(B, n, n)`` or ``(n, n)`` in ``params``' floating dtype.
    """
    p = torch.as_tensor(params)
    p = p if p.is_floating_point() else p.to(torch.float64)
    unbatched = p.dim() == 2
    p = p.unsqueeze(0) if unbatched else p
    if p.dim() != 3 or p.shape[-1] != 6:
        raise ValueError(f"params must be (E, 6) or (B, E, 6), got {tuple(p.shape)}")
    x, y = _grid(n, supersample, p.dtype)
    value, a, b, x0, y0, angle = (p[..., k, None, None] for k in range(6))
    theta = torch.deg2rad(angle)
    dx, dy = x - x0, y - y0
    u = dx * torch.cos(theta) + dy * torch.sin(theta)
    v = -dx * torch.sin(theta) + dy * torch.cos(theta)
    inside = (u / a) ** 2 + (v / b) ** 2 <= 1
    img = (inside * value).sum(dim=1)  # (B, m, m)
    if supersample > 1:
        img = torch.nn.functional.avg_pool2d(img.unsqueeze(1), supersample).squeeze(1)
    return img[0] if unbatched else img


def shepp_logan(n: int, modified: bool = True, supersample: int = 1, dtype: torch.dtype = torch.float32) -> Tensor:
    """The ``(n, n)`` Shepp-Logan head phantom (Toft's modified intensities by default)."""
    table = SHEPP_LOGAN_MODIFIED if modified else SHEPP_LOGAN
    return ellipses_image(torch.tensor(table, dtype=torch.float64), n, supersample).to(dtype)


def random_ellipses(num_images: int, n: int, generator: torch.Generator, num_ellipses: tuple[int, int] = (4, 10),
                    supersample: int = 2, dtype: torch.dtype = torch.float32) -> Tensor:
    """Random ellipse phantoms ``(num_images, n, n)`` with values in ``[0, 1]``.

    Each image is a body ellipse of value 0.5-0.8 holding ``num_ellipses`` (inclusive range) inner
    ellipses of values in ``[-0.3, 0.4]``, summed and clipped to ``[0, 1]`` — a CT-like head/body
    section. Deterministic for ``generator``'s state; no global random state is touched.
    """
    lo, hi = num_ellipses
    if not 0 <= lo <= hi:
        raise ValueError(f"num_ellipses must be an increasing pair of counts, got {num_ellipses}")
    g = dict(generator=generator, dtype=torch.float64)
    count = torch.randint(lo, hi + 1, (num_images,), generator=generator)
    body = torch.stack([0.5 + 0.3 * torch.rand(num_images, **g),  # value
                        0.6 + 0.3 * torch.rand(num_images, **g), 0.7 + 0.25 * torch.rand(num_images, **g),
                        0.1 * (torch.rand(num_images, **g) - 0.5), 0.1 * (torch.rand(num_images, **g) - 0.5),
                        180 * torch.rand(num_images, **g)], dim=-1)
    e = hi
    radius = torch.sqrt(torch.rand(num_images, e, **g)) * 0.5
    phi = 2 * math.pi * torch.rand(num_images, e, **g)
    inner = torch.stack([-0.3 + 0.7 * torch.rand(num_images, e, **g),
                         0.03 + 0.22 * torch.rand(num_images, e, **g), 0.03 + 0.22 * torch.rand(num_images, e, **g),
                         radius * torch.cos(phi) * body[:, None, 1], radius * torch.sin(phi) * body[:, None, 2],
                         180 * torch.rand(num_images, e, **g)], dim=-1)
    inner[..., 0] *= (torch.arange(e) < count[:, None])  # unused slots get value 0
    params = torch.cat([body[:, None], inner], dim=1)
    return ellipses_image(params.to(torch.float32), n, supersample).clamp(0, 1).to(dtype)
