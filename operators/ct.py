"""CT projection of 2-D images with an exact adjoint, and filtered back-projection.

Images are ``(B, C, n, n)``; sinograms are ``(B, C, D, A)`` (detector bins, then views), the layout of
deepinv's ``Tomography`` and scikit-image's ``radon``. The projector is Joseph's method
(:mod:`ct_projector`), either stored as a sparse matrix and its transpose (fast, but its build peaks at
about twice the matrix: 17-19 GiB for 512 x 512 and 720 views) or computed on the fly, chunk by chunk
(matrix-free: memory of the images, the sinograms and one chunk). Both use the same entries, so
``<A x, y> = <x, A^T y>`` holds to rounding either way and their projections agree to rounding;
``projector="auto"`` stores the matrix when its build fits :data:`STORED_MATRIX_BUDGET`. Geometry and
units: :mod:`ct_geometry`.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import deepinv as dinv
import torch
from torch import Tensor

from invdiff.operators.base import check_image, reject_parameter_kwargs
from invdiff.operators.ct_geometry import (FanBeamGeometry, ParallelBeamGeometry, default_num_detectors,
                                           limited_angle_angles, sparse_view_angles)
from invdiff.operators.ct_projector import (MatrixFreeApply, MatrixFreeJoseph, SparseApply, check_kernel, csr_nbytes,
                                            csr_pair, joseph_entries, stored_matrix_bytes)

__all__ = ["CT", "FanBeamCT", "ParallelBeamCT", "STORED_MATRIX_BUDGET", "ramp_filter"]

FilterName = Literal["ramp", "shepp-logan"]
Projector = Literal["auto", "matrix", "matrix-free"]

#: the largest estimated build peak (bytes) for which ``projector="auto"`` stores the matrix
STORED_MATRIX_BUDGET = 2 * 2**30
#: build peak over :func:`~ct_projector.stored_matrix_bytes`, measured: 1.7 GiB at 256 x 256 with 180
#: views and 8.8 GiB at 512 x 512 with 360 (process peaks, less 0.5 GiB of Python and torch)
_BUILD_PEAK_FACTOR = 2.2


def ramp_filter(sinogram: Tensor, spacing: float = 1.0, window: FilterName = "ramp") -> Tensor:
    """Filter ``(..., D, A)`` sinograms along the detector axis with the band-limited ramp.

    The kernel is the discrete Ram-Lak filter of Kak & Slaney (eq. 3.61): ``h[0] = 1/4``,
    ``h[k] = -1 / (pi k)^2`` for odd ``k``, 0 for even ``k``, divided by ``spacing``; it is applied by FFT
    with zero padding to at least twice the detector length, so there is no wrap-around. The
    ``"shepp-logan"`` window multiplies the ramp's frequency response by ``sinc(f)``
    (``sin(pi f) / (pi f)`` with ``f`` in cycles per sample).
    """
    if window not in ("ramp", "shepp-logan"):
        raise ValueError(f"filter must be 'ramp' or 'shepp-logan', got {window!r}")
    d = sinogram.shape[-2]
    size = max(64, 1 << math.ceil(math.log2(2 * d)))
    k = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64, device=sinogram.device).round()
    kernel = torch.where(k.remainder(2) == 1, -1.0 / (math.pi * k) ** 2, torch.zeros_like(k))
    kernel[0] = 0.25
    response = 2 * torch.fft.fft(kernel).real  # x2: the kernel sums both halves of |f|
    if window == "shepp-logan":
        response = response * torch.sinc(torch.fft.fftfreq(size, dtype=torch.float64, device=sinogram.device))
    spectrum = torch.fft.fft(sinogram.transpose(-1, -2).to(torch.float64), n=size, dim=-1)
    filtered = torch.fft.ifft(spectrum * response, dim=-1).real[..., :d] / (2 * spacing)
    return filtered.transpose(-1, -2).to(sinogram.dtype)


class CT(dinv.physics.LinearPhysics):
    """Joseph CT projector for a geometry of :mod:`ct_geometry` and ``n x n`` images.

    Args:
        geometry: :class:`ParallelBeamGeometry` or :class:`FanBeamGeometry`.
        image_size: ``n``.
        dtype: dtype of the weights and of the images it accepts (float32 or float64).
        device: where the projector is built and kept; CUDA works the same (cuSPARSE, or grid_sample).
        projector: ``"matrix"`` (stored sparse matrix and transpose), ``"matrix-free"`` (weights on
            the fly), or ``"auto"``: the matrix when its estimated build peak fits ``budget``.
        budget: bytes for ``"auto"`` (default :data:`STORED_MATRIX_BUDGET`).
        chunk_bytes: the matrix-free ``grid_sample`` kernel's working memory per chunk (16 MiB).
        kernel: the matrix-free projector's kernel: ``"auto"`` (compiled on the CPU, :mod:`ct_kernels`;
            ``grid_sample`` on other devices), ``"compiled"`` or ``"grid_sample"``.

    The matrix for 256x256 and 180 views of 363 bins has 21 M entries; in float32 with int32 indices it
    and its transpose hold 325 MiB (``memory_bytes``), built in about 2 s on 2 CPU cores. The
    matrix-free projector holds the rays (a few MiB); on the CPU its compiled kernel costs 1.0-1.9x the
    stored matrix's time per product at 512x512 (``docs/results/ct-projector``).
    """

    def __init__(self, geometry: ParallelBeamGeometry, image_size: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", projector: Projector = "auto", budget: int | None = None,
                 chunk_bytes: int = 1 << 24, kernel: str = "auto"):
        super().__init__()
        if int(image_size) < 2:
            raise ValueError(f"image_size must be >= 2, got {image_size}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if projector not in ("auto", "matrix", "matrix-free"):
            raise ValueError(f"projector must be 'auto', 'matrix' or 'matrix-free', got {projector!r}")
        geometry.check_covers(int(image_size))
        self.geometry = geometry
        self.image_size = int(image_size)
        n = self.image_size
        rays = geometry.num_detectors * geometry.num_views
        if projector == "auto":
            peak = _BUILD_PEAK_FACTOR * stored_matrix_bytes(rays, n, torch.finfo(dtype).bits // 8)
            projector = "matrix" if peak <= (STORED_MATRIX_BUDGET if budget is None else budget) else "matrix-free"
        self.projector = projector
        self.chunk_bytes, self.kernel = int(chunk_bytes), check_kernel(kernel)
        if projector == "matrix":
            matrix, transpose = csr_pair(*joseph_entries(*geometry.rays(device=device), n, dtype), (rays, n * n))
            self.register_buffer("matrix", matrix, persistent=False)
            self.register_buffer("transpose", transpose, persistent=False)
        else:  # buffers, so that .to(device) moves them; the empty one carries the dtype through .to(dtype)
            origins, dirs = geometry.rays(device=device)
            self.register_buffer("ray_origins", origins, persistent=False)
            self.register_buffer("ray_dirs", dirs, persistent=False)
            self.register_buffer("weights_dtype", torch.zeros(0, dtype=dtype, device=device), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights, and of the images and sinograms the operator accepts."""
        return self.weights_dtype.dtype if self.projector == "matrix-free" else self.matrix.dtype

    @property
    def _free(self) -> MatrixFreeJoseph | None:
        if self.projector != "matrix-free":
            return None
        cached = self.__dict__.get("_free_cache")  # the rays' precomputed lines live as long as the rays
        if cached is None or cached[0] is not self.ray_origins or cached[1].dtype != self.dtype:
            free = MatrixFreeJoseph(self.ray_origins, self.ray_dirs, self.image_size, self.dtype, self.chunk_bytes,
                                    self.kernel)
            self.__dict__["_free_cache"] = cached = (self.ray_origins, free)
        return cached[1]

    def with_dtype(self, dtype: torch.dtype) -> CT:
        """The same projector with its weights in ``dtype`` (this one is left as it is)."""
        twin = copy.copy(self)
        twin._buffers = dict(self._buffers)
        if self.projector == "matrix-free":
            twin._buffers["weights_dtype"] = self.weights_dtype.to(dtype)
            return twin
        twin._buffers["matrix"] = self.matrix.to(dtype)
        twin._buffers["transpose"] = self.transpose.to(dtype)
        return twin

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        """``(D, A)``: detector bins, views."""
        return self.geometry.num_detectors, self.geometry.num_views

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the stored matrix and its transpose, or by the matrix-free projector's rays and
        one working chunk."""
        if self.projector == "matrix-free":
            return 2 * self.ray_origins.numel() * 8 + self.chunk_bytes
        return csr_nbytes(self.matrix) + csr_nbytes(self.transpose)

    @property
    def device(self) -> torch.device:
        return self.ray_origins.device if self.projector == "matrix-free" else self.matrix.device

    def _check_dtype(self, t: Tensor, what: str) -> None:
        if t.dtype != self.dtype or t.device != self.device:
            raise TypeError(f"{what} is {t.dtype} on {t.device} but this CT operator holds {self.dtype} weights on "
                            f"{self.device}; build it with dtype={t.dtype} (or convert the input)")

    def _product(self, t: Tensor, adjoint: bool, out_tail: tuple[int, ...]) -> Tensor:
        b, c = t.shape[:2]
        if self.projector == "matrix-free":  # rows are images: (B C, pixels) or (B C, rays), detector-major
            flat = t.reshape(b * c, -1).contiguous()
            return MatrixFreeApply.apply(flat, self._free, adjoint).reshape(b, c, *out_tail)
        first, second = (self.transpose, self.matrix) if adjoint else (self.matrix, self.transpose)
        flat = t.reshape(b * c, -1).T.contiguous()
        return SparseApply.apply(flat, first, second).T.reshape(b, c, *out_tail)

    def A(self, x: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        check_image(x, (self.image_size, self.image_size), "image", "(B, C, n, n)")
        self._check_dtype(x, "image")
        return self._product(x, False, self.sinogram_shape)

    def A_adjoint(self, y: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        check_image(y, self.sinogram_shape, "sinogram", "(B, C, detectors, views)")
        self._check_dtype(y, "sinogram")
        return self._product(y, True, (self.image_size, self.image_size))

    def fbp(self, y: Tensor, filter: FilterName = "ramp", views_per_chunk: int | None = None) -> Tensor:
        """Filtered back-projection, the classical (analytic) reconstruction.

        Parallel beam: ``f(p) = (pi / A) sum_a (q_a * h)(p . e_a)``. Fan beam (flat detector, Kak & Slaney
        sec. 3.4.2): projections are rescaled to a virtual detector through the axis, weighted by
        ``R / sqrt(R^2 + s^2)``, ramp-filtered, and back-projected with the distance weight ``(R / depth)^2``
        and ``(pi / A)`` (a full 360-degree scan counts every ray twice). Both assume the views cover
        180 (parallel) or 360 (fan) degrees evenly; for sparse or limited-angle views FBP is the
        classical, artefact-laden baseline. Back-projection is pixel-driven with linear interpolation
        along the detector (``grid_sample``), computed in float32 for float32 input, else float64.
        """
        check_image(y, self.sinogram_shape, "sinogram", "(B, C, detectors, views)")
        g = self.geometry
        n, (d, a) = self.image_size, self.sinogram_shape
        work = torch.float64 if y.dtype == torch.float64 else torch.float32
        spacing = g.detector_spacing
        q = y.to(work)
        fan = isinstance(g, FanBeamGeometry)
        if fan:  # rescale to a virtual detector through the rotation axis
            spacing = spacing * g.source_distance / g.source_detector_distance
            s = (torch.arange(d, dtype=work, device=y.device) - (d - 1) / 2) * spacing
            q = q * (g.source_distance / torch.sqrt(g.source_distance**2 + s**2))[:, None]
        # (1, B C, A, D): one "image" row per view, so bilinear sampling at (view a, bin u) is linear
        # interpolation along the detector only; zero outside the detector.
        q = ramp_filter(q, spacing, filter).transpose(-1, -2).reshape(1, -1, a, d)
        coords = torch.arange(n, dtype=work, device=y.device) - (n - 1) / 2
        points = torch.stack(torch.meshgrid(coords, -coords, indexing="xy"), dim=-1).reshape(-1, 2)
        out = torch.zeros(q.shape[1], n * n, dtype=work, device=y.device)
        chunk = views_per_chunk or max(1, (1 << 24) // (n * n * q.shape[1]))
        for start in range(0, a, chunk):
            views = slice(start, min(a, start + chunk))
            u, depth = g.detector_position(points, views)  # (a, P)
            if fan:
                u = u * g.source_distance / g.source_detector_distance
            grid_u = (u / spacing + (d - 1) / 2) * (2.0 / max(d - 1, 1)) - 1.0
            rows = torch.arange(views.start, views.stop, dtype=work, device=y.device)
            grid_v = (rows * (2.0 / max(a - 1, 1)) - 1.0)[:, None].expand_as(grid_u)
            grid = torch.stack([grid_u, grid_v], dim=-1).unsqueeze(0)  # (1, a, P, 2)
            sampled = torch.nn.functional.grid_sample(q, grid, mode="bilinear", padding_mode="zeros",
                                                      align_corners=True)[0]  # (B C, a, P)
            if fan:
                sampled = sampled * (g.source_distance / depth) ** 2
            out += sampled.sum(dim=1)
        out = out * (math.pi / a)
        return out.reshape(*y.shape[:2], n, n).to(y.dtype)


class ParallelBeamCT(CT):
    """Parallel-beam CT. ``angles`` in degrees; ``num_detectors`` defaults to ``ceil(n sqrt 2)``."""

    def __init__(self, image_size: int, angles, num_detectors: int | None = None, detector_spacing: float = 1.0,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", **projector):
        num_detectors = num_detectors or default_num_detectors(image_size, spacing=detector_spacing)
        super().__init__(ParallelBeamGeometry(angles, num_detectors, detector_spacing), image_size, dtype, device,
                         **projector)

    @classmethod
    def sparse_view(cls, image_size: int, num_views: int, **kwargs) -> ParallelBeamCT:
        """``num_views`` evenly spaced views over 180 degrees."""
        return cls(image_size, sparse_view_angles(num_views), **kwargs)

    @classmethod
    def limited_angle(cls, image_size: int, max_angle: float, num_views: int, **kwargs) -> ParallelBeamCT:
        """``num_views`` evenly spaced views over ``[0, max_angle)`` degrees."""
        return cls(image_size, limited_angle_angles(max_angle, num_views), **kwargs)


class FanBeamCT(CT):
    """Fan-beam CT with a flat detector; distances in pixels, ``angles`` in degrees over ``[0, 360)``.

    ``num_detectors`` defaults to the shadow of the image's circumscribed circle on the detector.
    """

    def __init__(self, image_size: int, angles, source_distance: float, source_detector_distance: float,
                 num_detectors: int | None = None, detector_spacing: float = 1.0,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", **projector):
        num_detectors = num_detectors or default_num_detectors(image_size, source_distance, source_detector_distance,
                                                               detector_spacing)
        geometry = FanBeamGeometry(angles, num_detectors, detector_spacing, source_distance, source_detector_distance)
        super().__init__(geometry, image_size, dtype, device, **projector)

    @classmethod
    def sparse_view(cls, image_size: int, num_views: int, source_distance: float, source_detector_distance: float,
                    **kwargs) -> FanBeamCT:
        """``num_views`` evenly spaced views over 360 degrees."""
        return cls(image_size, sparse_view_angles(num_views, 360.0), source_distance, source_detector_distance,
                   **kwargs)
