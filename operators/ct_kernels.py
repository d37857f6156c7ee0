"""Compiled CPU kernels of Joseph's projector (numba, which sigpy installs), matrix-free.

A ray is given by the affine line of its samples: sample ``l`` (``0 <= l < n``) sits on image row
``l`` at fractional column ``a + b l`` (a *steep* ray), or on column ``l`` at fractional row
``a + b l``; it is linearly interpolated between the two pixels either side and weighted by the path
length per sample, ``step``. These are :func:`~invdiff.operators.ct_projector.joseph_entries`' weights,
computed on the fly: :func:`forward` sums them along each ray (in float64), :func:`adjoint`
scatters ray values back with the same weights, so it is the exact transpose (to the rounding of its
float32 or float64 accumulation). Only the samples whose interpolation touches the image are visited.

Work is split into ``threads`` contiguous blocks by ``numba.prange`` (the caller passes torch's
thread count; numba's own setting is not changed). The adjoint scatters into one image per thread
unless there are at least as many images as threads (then each thread owns whole images). Steep rays
walk the transposed image, so that every ray reads (or writes) memory nearly contiguously.

numba is imported on first use; :func:`available` says whether it can be.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether numba imports (it comes with sigpy; an environment without it uses ``grid_sample``)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _sample_range(a: float, b: float, n: int) -> tuple[int, int, int, int]:
    """Samples ``l`` whose position ``a + b l`` may touch the image, ``(-1, n)``: ``[lo, hi)``, and
    within it ``[inner_lo, inner_hi)`` whose position lies in ``[0, n - 1)`` (both neighbours inside,
    with a margin of one sample either side for rounding); only the samples outside the inner range
    need their pixel indices checked."""
    if abs(b) < 1e-12:
        if -1.0 < a < n:
            return (0, n, 0, n) if 0.0 <= a < n - 1.0 else (0, n, 0, 0)
        return 0, 0, 0, 0
    l1, l2 = (-1.0 - a) / b, (n - a) / b
    i1, i2 = (0.0 - a) / b, (n - 1.0 - a) / b
    if l1 > l2:
        l1, l2, i1, i2 = l2, l1, i2, i1
    lo, hi = max(0, int(math.floor(l1)) - 1), min(n, int(math.ceil(l2)) + 2)
    inner_lo, inner_hi = max(lo, int(math.ceil(i1)) + 1), min(hi, int(math.floor(i2)) - 1)
    if inner_hi <= inner_lo:
        inner_lo = inner_hi = lo
    return lo, hi, inner_lo, inner_hi


@functools.lru_cache(maxsize=1)
def _kernels():
    import numba

    sample_range = numba.njit(cache=True)(_sample_range)

    # Both kernels walk a ray sample by sample along an image's rows: pixel (i, l) is image[i * n + l].
    # Steep rays walk the transposed image, so memory is read (or written) nearly contiguously.

    @numba.njit(cache=True, inline="always")
    def neighbours(a, b, line, n):
        """Sample ``line``'s lower pixel ``i``, its weight on ``i + 1``, and whether each pixel is inside."""
        pos = a + b * line
        lower = math.floor(pos)
        i = int(lower)
        return i, pos - lower, 0 <= i < n, 0 <= i + 1 < n

    @numba.njit(cache=True, inline="always")
    def ray_sum(image, a, b, step, n):
        lo, hi, inner_lo, inner_hi = sample_range(a, b, n)
        acc = 0.0
        for line in range(inner_lo, inner_hi):  # both neighbours inside: no checks
            pos = a + b * line
            i = int(pos)
            frac = pos - i
            acc += (1.0 - frac) * image[i * n + line] + frac * image[(i + 1) * n + line]
        for line in range(lo, hi):  # the samples near the image's edge
            if not inner_lo <= line < inner_hi:
                i, frac, first, second = neighbours(a, b, line, n)
                acc += (1.0 - frac) * image[i * n + line] if first else 0.0
                acc += frac * image[(i + 1) * n + line] if second else 0.0
        return acc * step

    @numba.njit(cache=True, inline="always")
    def ray_spread(out, value, a, b, step, n):
        lo, hi, inner_lo, inner_hi = sample_range(a, b, n)
        v = value * step
        for line in range(inner_lo, inner_hi):
            pos = a + b * line
            i = int(pos)
            frac = pos - i
            out[i * n + line] += (1.0 - frac) * v
            out[(i + 1) * n + line] += frac * v
        for line in range(lo, hi):
            if not inner_lo <= line < inner_hi:
                i, frac, first, second = neighbours(a, b, line, n)
                if first:
                    out[i * n + line] += (1.0 - frac) * v
                if second:
                    out[(i + 1) * n + line] += frac * v

    @numba.njit(parallel=True, cache=True)
    def forward(x, xt, a, b, step, steep, n, out, threads):
        m, rays = x.shape[0], a.shape[0]
        total = m * rays
        for t in numba.prange(threads):
            for k in range(t * total // threads, (t + 1) * total // threads):
                j, r = k // rays, k % rays
                image = xt[j] if steep[r] else x[j]
                out[j, r] = ray_sum(image, a[r], b[r], step[r], n)

    @numba.njit(parallel=True, cache=True)
    def adjoint(y, a, b, step, steep, n, out, out_t, threads, by_image):
        # by_image: thread t owns images t, t + threads, ... of out[0]; otherwise it owns a block of
        # rays and its own images out[t], out_t[t] (summed by the caller).
        m, rays = y.shape[0], a.shape[0]
        for t in numba.prange(threads):
            if by_image:
                for j in range(t, m, threads):
                    for r in range(rays):
                        ray_spread(out_t[0, j] if steep[r] else out[0, j], y[j, r], a[r], b[r], step[r], n)
            else:
                for j in range(m):
                    for r in range(t * rays // threads, (t + 1) * rays // threads):
                        ray_spread(out_t[t, j] if steep[r] else out[t, j], y[j, r], a[r], b[r], step[r], n)

    return forward, adjoint


def _threads() -> int:
    return max(1, torch.get_num_threads())


def forward(x: Tensor, lines: tuple[Tensor, Tensor, Tensor, Tensor], n: int) -> Tensor:
    """``(M, n*n)`` CPU images -> ``(M, R)`` ray sums; ``lines``: per ray ``(a, b, step, steep)``, float64
    and uint8 (module docstring; :meth:`~invdiff.operators.ct_projector.MatrixFreeJoseph` builds them)."""
    x = x.contiguous()
    xt = x.reshape(-1, n, n).transpose(1, 2).reshape(x.shape[0], -1).contiguous()
    out = torch.empty(x.shape[0], lines[0].shape[0], dtype=x.dtype)
    _kernels()[0](x.numpy(), xt.numpy(), *(t.numpy() for t in lines), n, out.numpy(), _threads())
    return out


def adjoint(y: Tensor, lines: tuple[Tensor, Tensor, Tensor, Tensor], n: int) -> Tensor:
    """``(M, R)`` CPU ray values -> ``(M, n*n)`` back-projections with the weights of :func:`forward`."""
    y = y.contiguous()
    m, threads = y.shape[0], _threads()
    by_image = m >= threads
    shape = (1 if by_image else threads, m, n * n)
    out, out_t = torch.zeros(shape, dtype=y.dtype), torch.zeros(shape, dtype=y.dtype)
    _kernels()[1](y.numpy(), *(t.numpy() for t in lines), n, out.numpy(), out_t.numpy(), threads, by_image)
    out, out_t = out.sum(0), out_t.sum(0)
    return out + out_t.reshape(m, n, n).transpose(1, 2).reshape(m, -1)
