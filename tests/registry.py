"""The registry of invdiff operators that every generic property test runs over.

Each entry builds a small instance in a requested dtype from a seeded generator; sizes are small so
that dense reference matrices (``operator_matrix``) stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from invdiff.operators import (Blur, CircularBlur, Downsampling, FanBeamCT, Inpainting, MaskFunc, MultiCoilMRI,
                               ParallelBeamCT, SingleCoilMRI, box_mask, gaussian_kernel, gaussian_mask,
                               limited_angle_angles, motion_kernels, random_pixel_mask, sparse_view_angles)

B = 3
N = 16


@dataclass
class Case:
    physics: object
    x_shape: tuple[int, ...]
    norm: float | None = None  # known ||A||_2, where one exists


@dataclass
class Entry:
    build: Callable[[torch.dtype, torch.Generator], Case]
    # (operator with one parameter per sample, the per-sample operators) for operators that batch parameters
    per_sample: Callable[[torch.dtype, torch.Generator], tuple[object, list]] | None = None
    # relative tolerance of pinv on elements of range(A^T) in float64. Closed forms drop singular values
    # below 1e-6 of the largest and CG stops at a normal-equation residual of 1e-10, so 1e-6 in general;
    # looser where the non-zero spectrum is badly conditioned (CG needs thousands of iterations).
    pinv_tol: float = 1e-6


def _columns(g: torch.Generator, seed: int) -> torch.Tensor:
    return MaskFunc("random", (0.25,), (3,))(N, seed).columns


def _coil_maps(g: torch.Generator, dtype: torch.dtype, batch: int | None = None, coils: int = 4,
               shape: tuple[int, int] = (N, N)) -> torch.Tensor:
    shape = (coils, *shape) if batch is None else (batch, coils, *shape)
    real = torch.float64 if dtype == torch.float64 else torch.float32
    s = torch.complex(torch.randn(shape, generator=g, dtype=real), torch.randn(shape, generator=g, dtype=real))
    return s / (s.abs() ** 2).sum(dim=-3, keepdim=True).sqrt()  # sum_c |S_c|^2 = 1


def _spectral_norm(op: CircularBlur) -> float:
    return float(op.mask.abs().max())


def _ct(dtype, views, kind="parallel", projector="matrix"):
    # the matrix-free projector with small chunks, so that several chunks make up every product
    extra = dict(projector=projector, chunk_bytes=1 << 18) if projector == "matrix-free" else {}
    if kind == "fan":
        return FanBeamCT(N, views, source_distance=2.0 * N, source_detector_distance=3.0 * N, dtype=dtype, **extra)
    return ParallelBeamCT(N, views, dtype=dtype, **extra)


def _circular(dt, g):
    op = CircularBlur(gaussian_kernel(1.0, 7, dtype=dt), (N, N))  # min |K| 3e-5: no dropped frequency
    return Case(op, (B, 1, N, N), _spectral_norm(op))


# Per-sample builders: (operator with one parameter per sample, the B single-parameter operators).
def _mri_per_sample(dt, g):
    cols = torch.stack([_columns(g, s) for s in range(B)]).to(dt)
    return SingleCoilMRI(cols.unsqueeze(1), (N, N)), [SingleCoilMRI(c, (N, N)) for c in cols]


def _multicoil_per_sample(dt, g):
    cols, maps = torch.stack([_columns(g, s) for s in range(B)]).to(dt), _coil_maps(g, dt, batch=B)
    return MultiCoilMRI(cols.unsqueeze(1), maps), [MultiCoilMRI(c, s) for c, s in zip(cols, maps)]


def _circular_per_sample(dt, g):
    k = motion_kernels(B, 7, g, dtype=dt)
    return CircularBlur(k, (N, N)), [CircularBlur(ki, (N, N)) for ki in k]


def _blur_per_sample(dt, g):
    k = motion_kernels(B, 5, g, dtype=dt)
    return Blur(k, (N, N)), [Blur(ki, (N, N)) for ki in k]


def _inpainting_per_sample(dt, g):
    m = torch.stack([random_pixel_mask((N, N), 0.4, g) for _ in range(B)]).to(dt)
    return Inpainting(m.unsqueeze(1)), [Inpainting(mi) for mi in m]


def _downsampling_per_sample(dt, g):
    k = gaussian_kernel(torch.tensor([0.6, 0.9, 1.3]), 5, dtype=dt)
    return Downsampling(2, (N, N), k), [Downsampling(2, (N, N), ki) for ki in k]


REGISTRY: dict[str, Entry] = {
    "single_coil_mri": Entry(
        lambda dt, g: Case(SingleCoilMRI(_columns(g, 1).to(dt), (N, N)), (B, 2, N, N), 1.0), _mri_per_sample),
    "single_coil_mri_2d": Entry(
        lambda dt, g: Case(SingleCoilMRI(gaussian_mask((N, N), 3.0, 4, g).to(dt)), (B, 2, N, N), 1.0)),
    "multicoil_mri": Entry(
        lambda dt, g: Case(MultiCoilMRI(_columns(g, 2).to(dt), _coil_maps(g, dt)), (B, 2, N, N)),
        _multicoil_per_sample),
    "multicoil_mri_oversampled": Entry(  # 2x readout oversampling: the image is the central half
        lambda dt, g: Case(MultiCoilMRI(_columns(g, 4).to(dt), _coil_maps(g, dt, coils=3, shape=(2 * N, N)),
                                        image_size=(N, N)), (B, 2, N, N))),
    "multicoil_mri_full": Entry(
        lambda dt, g: Case(MultiCoilMRI(torch.ones(N, dtype=dt), _coil_maps(g, dt)), (B, 2, N, N), 1.0)),
    "parallel_ct": Entry(lambda dt, g: Case(_ct(dt, sparse_view_angles(24)), (B, 1, N, N))),
    "fan_ct": Entry(lambda dt, g: Case(_ct(dt, sparse_view_angles(36, 360.0), "fan"), (B, 1, N, N))),
    "parallel_ct_matrix_free": Entry(lambda dt, g: Case(_ct(dt, sparse_view_angles(24), projector="matrix-free"),
                                                        (B, 1, N, N))),
    "fan_ct_matrix_free": Entry(lambda dt, g: Case(_ct(dt, sparse_view_angles(36, 360.0), "fan", "matrix-free"),
                                                   (B, 1, N, N))),
    "sparse_view_ct": Entry(lambda dt, g: Case(_ct(dt, sparse_view_angles(6)), (B, 1, N, N)), pinv_tol=1e-4),
    "limited_angle_ct": Entry(lambda dt, g: Case(_ct(dt, limited_angle_angles(90.0, 12)), (B, 1, N, N)),
                              pinv_tol=1e-4),
    "circular_blur": Entry(_circular, _circular_per_sample),
    "blur_valid": Entry(
        lambda dt, g: Case(Blur(motion_kernels(1, 5, g, dtype=dt), (N, N), "valid"), (B, 1, N, N)),
        _blur_per_sample),
    "blur_zeros": Entry(lambda dt, g: Case(Blur(gaussian_kernel(0.8, 5, dtype=dt), (N, N), "zeros"), (B, 3, N, N))),
    "inpainting_random": Entry(
        lambda dt, g: Case(Inpainting(random_pixel_mask((N, N), 0.4, g).to(dt)), (B, 1, N, N), 1.0),
        _inpainting_per_sample),
    "inpainting_box": Entry(lambda dt, g: Case(Inpainting(box_mask((N, N), 4, 5, 6, 7).to(dt)), (B, 3, N, N), 1.0)),
    "downsampling_box": Entry(lambda dt, g: Case(Downsampling(2, (N, N)), (B, 1, N, N), 0.5)),
    "downsampling_gaussian": Entry(
        lambda dt, g: Case(Downsampling(2, (N, N), gaussian_kernel(0.8, 5, dtype=dt)), (B, 2, N, N)),
        _downsampling_per_sample),
}
