"""Joseph's ray-driven projector, stored as a sparse matrix or computed on the fly; exact transposes.

Joseph (IEEE TMI 1982): a ray is sampled once per image row (or column, whichever it crosses more
steeply); at each sample the image is linearly interpolated between the two nearest pixels of that
row, and the samples are weighted by the path length per row, ``1 / |d_y|``. Pixels outside the
image are zero. The system matrix has at most ``2 n`` entries per ray and is stored twice in CSR
(rows = rays, and its transpose), so that ``A`` and ``A^T`` are both a sparse-times-dense product —
the transpose is exact by construction, not an approximate back-projector. :class:`MatrixFreeJoseph`
computes the same weights on the fly instead: on the CPU with the compiled kernels of
:mod:`ct_kernels`, elsewhere (or without numba) chunk by chunk with ``grid_sample`` and its input
gradient, in the memory of one chunk.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import Tensor

from invdiff.operators import ct_kernels

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


#: the matrix-free projector's kernels (:class:`MatrixFreeJoseph`)
KERNELS = ("auto", "compiled", "grid_sample")


def check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be 'auto', 'compiled' or 'grid_sample', got {kernel!r}")
    return kernel


def joseph_lines(origins: Tensor, dirs: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Where Joseph's method samples each ray, in ``grid_sample``'s normalised coordinates
    (``align_corners=True``: pixel ``i`` at ``2 i / (n - 1) - 1``).

    A ray steeper than 45 degrees is sampled once per image row ``l`` (row coordinate fixed at ``l``),
    the others once per column; the other coordinate is affine in ``l``: ``P + Q l``. Returns
    ``(P, Q, steep, step)``, each ``(R,)``: ``P`` and ``Q`` in float64 (the arithmetic of
    :func:`joseph_entries`), whether the ray is steep, and the path length per sample ``1 / |d_major|``.
    """
    half = (n - 1) / 2
    scale = 2.0 / max(n - 1, 1)
    steep = dirs[:, 1].abs() >= dirs[:, 0].abs()
    o_major = torch.where(steep, origins[:, 1], origins[:, 0])
    o_minor = torch.where(steep, origins[:, 0], origins[:, 1])
    d_major = torch.where(steep, dirs[:, 1], dirs[:, 0])
    slope = torch.where(steep, dirs[:, 0], dirs[:, 1]) / d_major
    a = o_minor - o_major * slope  # the crossing with the major axis' origin, in pixels from the centre
    # steep: column = a + half + slope (half - l); otherwise: row = half - a - slope (l - half)
    p = torch.where(steep, a + half + slope * half, half - a + slope * half) * scale - 1.0
    q = -slope * scale
    return p, q, steep, 1.0 / d_major.abs()


class MatrixFreeJoseph:
    """Joseph's projector computed on the fly, without storing a matrix.

    On the CPU (with numba) the compiled kernels of :mod:`ct_kernels` visit each ray's samples inside
    the image and accumulate the ray sum in float64 (about the stored matrix's speed). Otherwise each
    chunk's sample positions (:func:`joseph_lines`) go to ``grid_sample`` (bilinear, zero
    padding, ``align_corners=True``): one coordinate of every sample is a whole row or column, so
    bilinear is exactly Joseph's linear interpolation along the other; ``A^T`` is ``grid_sample``'s
    input gradient for the same positions (``grid_sampler_2d_backward``), so the adjoint is exact to
    rounding. Positions are computed in float64 and rounded to the images' dtype, so ``A`` agrees with
    the stored matrix to that dtype's rounding of a position (about ``n`` ulp: 1e-5 relative in float32).
    All images of a batch (slices, particles, channels) share each chunk's positions.

    Memory: the images, the sinograms, and one chunk of at most ``chunk_bytes`` (the compiled adjoint:
    one image per thread when there are fewer images than threads).

    Args:
        origins, dirs: the rays, ``(R, 2)`` each (:mod:`ct_geometry`).
        n: image side.
        dtype: the images' dtype.
        chunk_bytes: working memory of one ``grid_sample`` chunk.
        kernel: ``"auto"`` (compiled on the CPU when numba imports, ``grid_sample`` otherwise),
            ``"compiled"`` or ``"grid_sample"``.
    """

    def __init__(self, origins: Tensor, dirs: Tensor, n: int, dtype: torch.dtype = torch.float32,
                 chunk_bytes: int = 1 << 24, kernel: str = "auto"):
        if check_kernel(kernel) == "compiled" and not ct_kernels.available():
            raise RuntimeError("kernel='compiled' needs numba (installed with sigpy)")
        # positions are computed in float64 whatever a module's .to(dtype) did to the ray buffers
        self.origins, self.dirs, self.n, self.dtype = origins.double(), dirs.double(), int(n), dtype
        self.chunk_bytes, self.kernel = int(chunk_bytes), kernel

    @property
    def num_rays(self) -> int:
        return int(self.origins.shape[0])

    def _compiled(self, t: Tensor) -> bool:
        if self.kernel == "auto":
            return t.device.type == "cpu" and ct_kernels.available()
        if self.kernel == "compiled" and t.device.type != "cpu":
            raise ValueError(f"the compiled kernel runs on the CPU; this tensor is on {t.device}")
        return self.kernel == "compiled"

    @functools.cached_property
    def _lines(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The compiled kernels' rays: :func:`joseph_lines` in pixels (sample ``l`` at ``a + b l`` along
        its row or column), float64, with the step and the steep flag."""
        p, q, steep, step = joseph_lines(self.origins.cpu(), self.dirs.cpu(), self.n)
        scale = 2.0 / max(self.n - 1, 1)
        return ((p + 1.0) / scale).contiguous(), (q / scale).contiguous(), step.contiguous(), steep.to(torch.uint8)

    def _chunks(self, batch: int):
        """``(rays, grid (1, r, n, 2), path lengths (r,))`` over the rays, sized for ``batch`` images;
        ``rays`` is an index tensor (steep and shallow rays go in separate chunks). The grid is one
        buffer, overwritten by the next chunk: use it before asking for the next."""
        item = torch.finfo(self.dtype).bits // 8
        per_ray = self.n * item * (2 + 2 * batch)  # the grid, the samples and their sum
        threads = max(1, torch.get_num_threads())
        rays_per_chunk = max(threads, self.chunk_bytes // per_ray // threads * threads)
        p, q, steep, step = joseph_lines(self.origins, self.dirs, self.n)
        order = torch.argsort(~steep, stable=True)  # steep rays first
        ones = torch.ones_like(p)
        scale = 2.0 / max(self.n - 1, 1)
        # sample l of a ray is at (column, row) = base + slope * l: (p + q l, -1 + scale l) when steep
        base = torch.where(steep[:, None], torch.stack([p, -ones], -1), torch.stack([-ones, p], -1))
        slope = torch.where(steep[:, None], torch.stack([q, scale * ones], -1), torch.stack([scale * ones, q], -1))
        base, slope, step = base[order].to(self.dtype), slope[order].to(self.dtype), step[order].to(self.dtype)
        line = torch.arange(self.n, dtype=self.dtype, device=p.device)[None, :, None]
        buffer = torch.empty(min(rays_per_chunk, self.num_rays), self.n, 2, dtype=self.dtype, device=p.device)
        bounds = [0, int(steep.sum()), self.num_rays]
        for lo, hi in zip(bounds[:-1], bounds[1:]):  # chunks never mix steep and shallow rays
            for start in range(lo, hi, rays_per_chunk):
                stop = min(hi, start + rays_per_chunk)
                grid = torch.addcmul(base[start:stop, None], slope[start:stop, None], line,
                                     out=buffer[: stop - start])
                yield order[start:stop], grid[None], step[start:stop]

    def _groups(self, r: int, device: torch.device) -> int:
        """How many groups a chunk of ``r`` rays is split into: one per thread (``grid_sample`` on the
        CPU runs one thread per batch item)."""
        t = max(1, torch.get_num_threads()) if device.type == "cpu" else 1
        return t if r % t == 0 else 1

    def forward(self, x: Tensor) -> Tensor:
        """``(M, n*n)`` images -> ``(M, R)`` ray sums."""
        if self._compiled(x):
            return ct_kernels.forward(x.detach(), self._lines, self.n)
        m, n = x.shape[0], self.n
        images = x.reshape(1, m, n, n)
        out = torch.empty(m, self.num_rays, dtype=x.dtype, device=x.device)
        for rays, grid, step in self._chunks(m):
            r = grid.shape[1]
            t = self._groups(r, x.device)
            samples = torch.nn.functional.grid_sample(images.expand(t, -1, -1, -1), grid.reshape(t, r // t, n, 2),
                                                      mode="bilinear", padding_mode="zeros", align_corners=True)
            out[:, rays] = samples.sum(-1).transpose(0, 1).reshape(m, r) * step  # (t, M, r/t, n) -> (M, r)
        return out

    def adjoint(self, y: Tensor) -> Tensor:
        """``(M, R)`` ray values -> ``(M, n*n)`` back-projections, with the same weights.

        ``grid_sample``'s input gradient runs one thread per batch item (its scatter would race
        otherwise), so each chunk's rays are split into groups (:meth:`_groups`), each group
        back-projected into its own image, and the images summed.
        """
        if self._compiled(y):
            return ct_kernels.adjoint(y.detach(), self._lines, self.n)
        m, n = y.shape[0], self.n
        out = torch.zeros(m, n * n, dtype=y.dtype, device=y.device)
        for rays, grid, step in self._chunks(m):
            r = grid.shape[1]
            t = self._groups(r, y.device)
            spread = (y[:, rays] * step).reshape(m, t, r // t).transpose(0, 1)[..., None].expand(-1, -1, -1, n)
            shape = torch.zeros((), device=y.device, dtype=y.dtype).expand(t, m, n, n)  # no memory
            grad = torch.ops.aten.grid_sampler_2d_backward(spread, shape, grid.reshape(t, r // t, n, 2), 0, 0, True,
                                                           [True, False])[0]
            out += grad.sum(0).reshape(m, -1)
        return out


class MatrixFreeApply(torch.autograd.Function):
    """``A x`` (or ``A^T y`` with ``adjoint``) by a :class:`MatrixFreeJoseph`, with the other as gradient."""

    @staticmethod
    def forward(ctx, t: Tensor, projector: MatrixFreeJoseph, adjoint: bool) -> Tensor:
        ctx.projector, ctx.adjoint = projector, adjoint
        return projector.adjoint(t) if adjoint else projector.forward(t)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return MatrixFreeApply.apply(grad.contiguous(), ctx.projector, not ctx.adjoint), None, None


def stored_matrix_bytes(num_rays: int, n: int, value_bytes: int = 4) -> int:
    """Upper bound of the stored matrix and its transpose (``2 n`` entries per ray, value and int32
    column index each, twice), not counting the build's transient peak (about 3x this)."""
    return 2 * (2 * n * num_rays * (value_bytes + 4)) + 4 * (num_rays + n * n + 2)
