"""Joseph's ray-driven projector as a sparse matrix, and its exact transpose.

Joseph (IEEE TMI 1982): a ray is sampled once per image row (or column, whichever it crosses more
steeply); at each sample the image is linearly interpolated between the two nearest pixels of that
row, and the samples are weighted by the path length per row, ``1 / |d_y|``. Pixels outside the
image are zero. The system matrix has at most ``2 n`` entries per ray and is stored twice in CSR
(rows = rays, and its transpose), so that ``A`` and ``A^T`` are both a sparse-times-dense product —
the transpose is exact by construction, not an approximate back-projector.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

_ENTRIES_PER_CHUNK = 1 << 22


def _row_entries(origins: Tensor, dirs: Tensor, n: int, steep: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Entries for rays stepping over rows (``steep``) or over columns; local ray index, pixel, weight."""
    half = (n - 1) / 2
    grid = torch.arange(n, dtype=torch.float64, device=origins.device)
    major, minor = (1, 0) if steep else (0, 1)
    # Position along the major axis of every row (steep: y of row r) or column (x of column c).
    along = (half - grid) if steep else (grid - half)
    t = (along[None, :] - origins[:, major : major + 1]) / dirs[:, major : major + 1]
    cross = origins[:, minor : minor + 1] + t * dirs[:, minor : minor + 1]
    cross = cross + half if steep else half - cross  # fractional column (steep) or row index
    lower = torch.floor(cross)
    frac = cross - lower
    lower = lower.long()
    step = 1.0 / dirs[:, major].abs()
    ray = torch.arange(origins.shape[0], device=origins.device)[:, None].expand(-1, n)
    line = torch.arange(n, device=origins.device)[None, :].expand(origins.shape[0], -1)
    rays, pixels, weights = [], [], []
    for offset, w in ((0, 1.0 - frac), (1, frac)):
        idx = lower + offset
        ok = (idx >= 0) & (idx < n) & (w > 0)
        pixel = line * n + idx if steep else idx * n + line
        rays.append(ray[ok])
        pixels.append(pixel[ok])
        weights.append((w * step[:, None])[ok])
    return torch.cat(rays), torch.cat(pixels), torch.cat(weights)


def joseph_entries(origins: Tensor, dirs: Tensor, n: int, dtype: torch.dtype = torch.float64
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """COO entries ``(ray, pixel, weight)`` of the Joseph projector of an ``n x n`` image, sorted by
    ray and then pixel; indices are int32, weights are computed in float64 and stored in ``dtype``.

    Args:
        origins: a point on each ray, ``(R, 2)`` in the pixel frame of :mod:`ct_geometry`.
        dirs: unit direction of each ray, ``(R, 2)``.
    Pixels are indexed row-major (row 0 at the top). Rays are processed in chunks so that the float64
    intermediates stay near ``2**22`` entries.
    """
    chunk = max(1, _ENTRIES_PER_CHUNK // (2 * n))
    rays, pixels, weights = [], [], []
    steep_all = dirs[:, 1].abs() >= dirs[:, 0].abs()
    for start in range(0, origins.shape[0], chunk):
        o, d = origins[start : start + chunk], dirs[start : start + chunk]
        steep = steep_all[start : start + chunk]
        parts = []
        for flag in (True, False):
            sel = torch.nonzero(steep == flag).flatten()
            if sel.numel():
                r, p, w = _row_entries(o[sel], d[sel], n, flag)
                parts.append((sel[r], p, w))
        r, p, w = (torch.cat(t) for t in zip(*parts))
        order = torch.argsort(r * (n * n) + p)  # local rays < chunk, so the key fits easily
        rays.append((r[order] + start).to(torch.int32))
        pixels.append(p[order].to(torch.int32))
        weights.append(w[order].to(dtype))
    return torch.cat(rays), torch.cat(pixels), torch.cat(weights)


def csr_pair(rows: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The CSR matrix of row-sorted COO entries and the CSR matrix of its transpose, with int32 indices
    (half the memory traffic of int64, and faster products)."""

    def csr(r: Tensor, c: Tensor, v: Tensor, size: tuple[int, int]) -> Tensor:
        crow = torch.zeros(size[0] + 1, dtype=torch.int64, device=r.device)
        crow[1:] = torch.cumsum(torch.bincount(r, minlength=size[0]), 0)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow.to(torch.int32), c, v, size, check_invariants=False)

    matrix = csr(rows, cols, values, shape)
    # A stable sort by pixel keeps rays ascending within each pixel: the transpose's CSR order.
    order = torch.sort(cols, stable=True).indices
    transpose = csr(cols[order], rows[order], values[order], (shape[1], shape[0]))
    return matrix, transpose


class SparseApply(torch.autograd.Function):
    """``matrix @ x`` whose gradient is ``transpose @ grad``: exact, and as fast as the forward."""

    @staticmethod
    def forward(ctx, x: Tensor, matrix: Tensor, transpose: Tensor) -> Tensor:
        ctx.transpose, ctx.matrix = transpose, matrix
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return SparseApply.apply(grad.contiguous(), ctx.transpose, ctx.matrix), None, None


def csr_nbytes(matrix: Tensor) -> int:
    """Bytes held by a CSR matrix (values, column indices and row pointers)."""
    parts = (matrix.values(), matrix.col_indices(), matrix.crow_indices())
    return sum(t.numel() * t.element_size() for t in parts)
