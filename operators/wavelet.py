"""Orthonormal 2-D discrete wavelet transform (Daubechies filters, periodic boundary), in torch.

The transform of PyWavelets' ``mode="periodization"`` (``pywt.wavedec2``), laid out in one image-sized
array (Mallat's layout: after ``levels`` levels the coarse approximation fills the top-left
``H / 2^levels x W / 2^levels`` block, and each level's three detail bands the other quadrants of its
block). With periodic extension the transform is orthonormal, so its inverse is its adjoint:
``inverse(forward(x)) = x`` and ``||forward(x)|| = ||x||`` to float rounding.

One level along an axis of length ``N`` (even), with decomposition filters ``h`` (low) and ``g`` (high)
of length ``L``::

    a[i] = sum_j h[j] x[(2 i + L/2 - j) mod N],     d[i] = sum_j g[j] x[(2 i + L/2 - j) mod N],

``g[j] = (-1)^(j+1) h[L-1-j]``. Filters: Daubechies (1988) with 1, 2 and 4 vanishing moments, the
values PyWavelets tabulates as ``haar``/``db1``, ``db2`` and ``db4``. Applied to every leading axis
(batch, channels) at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["WAVELETS", "WaveletTransform"]

_S2 = 1.0 / math.sqrt(2.0)
#: name -> decomposition low-pass filter
WAVELETS: dict[str, tuple[float, ...]] = {
    "haar": (_S2, _S2),
    "db1": (_S2, _S2),
    "db2": (-0.12940952255126037, 0.2241438680420134, 0.8365163037378079, 0.48296291314453416),
    "db4": (-0.010597401785069032, 0.0328830116668852, 0.030841381835560764, -0.18703481171909309,
            -0.027983769416859854, 0.6308807679298589, 0.7148465705529157, 0.2303778133088965),
}


class WaveletTransform:
    """``levels``-level orthonormal 2-D DWT of the last two axes (module docstring).

    Args:
        wavelet: a key of :data:`WAVELETS`.
        levels: decomposition levels; both image sides must be divisible by ``2**levels``
            (:meth:`max_levels` gives the most a shape allows).
    """

    def __init__(self, wavelet: str = "db4", levels: int = 4):
        if wavelet not in WAVELETS:
            raise ValueError(f"unknown wavelet {wavelet!r}; known: {sorted(WAVELETS)}")
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.wavelet, self.levels = wavelet, int(levels)
        h = torch.tensor(WAVELETS[wavelet], dtype=torch.float64)
        n = h.numel()
        g = torch.tensor([(-1) ** (j + 1) * float(h[n - 1 - j]) for j in range(n)], dtype=torch.float64)
        self._bank = torch.stack([h.flip(0), g.flip(0)])  # correlation weights (2, L)
        self._offset = n // 2

    @staticmethod
    def max_levels(shape: tuple[int, int]) -> int:
        """The most levels ``shape`` allows (the number of times both sides halve evenly)."""
        levels = 0
        h, w = shape
        while h % 2 == 0 and w % 2 == 0 and h > 1 and w > 1:
            h, w, levels = h // 2, w // 2, levels + 1
        return levels

    def coarse_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """``(H, W)`` of the approximation block left after all levels."""
        return shape[0] >> self.levels, shape[1] >> self.levels

    def _check(self, x: Tensor) -> None:
        h, w = x.shape[-2:]
        if x.dim() < 2 or h % 2**self.levels or w % 2**self.levels:
            raise ValueError(f"a {self.levels}-level wavelet transform needs image sides divisible by "
                             f"{2 ** self.levels}, got {tuple(x.shape[-2:])}")

    def _analyse(self, x: Tensor) -> Tensor:
        """One level along the last axis: ``(..., N)`` -> ``(..., N)`` as ``[a, d]``."""
        lead, n = x.shape[:-1], x.shape[-1]
        taps = self._bank.shape[1]
        flat = x.reshape(-1, 1, n)
        idx = (torch.arange(n + taps - 1, device=x.device) - (taps - 1 - self._offset)) % n  # periodic, any n
        padded = flat[..., idx]
        out = F.conv1d(padded, self._bank.to(x).unsqueeze(1), stride=2)  # (M, 2, N/2)
        return out.reshape(*lead, n)

    def _synthesise(self, c: Tensor) -> Tensor:
        """The adjoint (= inverse) of :meth:`_analyse`."""
        lead, n = c.shape[:-1], c.shape[-1]
        taps = self._bank.shape[1]
        flat = c.reshape(-1, 2, n // 2)
        full = F.conv_transpose1d(flat, self._bank.to(c).unsqueeze(1), stride=2)  # (M, 1, N + L - 2)
        idx = (torch.arange(full.shape[-1], device=c.device) - (taps - 1 - self._offset)) % n
        out = torch.zeros(flat.shape[0], n, dtype=c.dtype, device=c.device)
        out.index_add_(1, idx, full[:, 0])
        return out.reshape(*lead, n)

    def forward(self, x: Tensor) -> Tensor:
        """Coefficients of ``x`` (..., H, W) in Mallat's layout, same shape."""
        self._check(x)
        out = x.clone()
        h, w = x.shape[-2:]
        for _ in range(self.levels):
            block = out[..., :h, :w]
            block = self._analyse(block)  # rows of the block: along W
            block = self._analyse(block.transpose(-1, -2)).transpose(-1, -2)  # along H
            out[..., :h, :w] = block
            h, w = h // 2, w // 2
        return out

    def inverse(self, c: Tensor) -> Tensor:
        """``x`` from its coefficients: the inverse and adjoint of :meth:`forward`."""
        self._check(c)
        out = c.clone()
        h, w = c.shape[-2] >> (self.levels - 1), c.shape[-1] >> (self.levels - 1)
        for _ in range(self.levels):
            block = out[..., :h, :w]
            block = self._synthesise(block.transpose(-1, -2)).transpose(-1, -2)
            block = self._synthesise(block)
            out[..., :h, :w] = block
            h, w = h * 2, w * 2
        return out
