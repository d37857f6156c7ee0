"""Shared fixtures: a registry of deepinv operators in float64, each with an image shape."""

from __future__ import annotations

import deepinv as dinv
import pytest
import torch

from invdiff.operators import MatrixOperator

B = 3  # batch size of the operator tests


def _gaussian_filter(std: float, size: int = 7) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * std**2))
    return (k / k.sum()).reshape(1, 1, size, size)


def _column_mask(g: torch.Generator, n: int = 16) -> torch.Tensor:
    cols = torch.rand(n, generator=g, dtype=torch.float64) < 0.4
    cols[n // 2 - 1 : n // 2 + 1] = True
    return cols.to(torch.float64).expand(n, n).clone()


def _deepinv_operators():
    """name -> factory(generator) -> (physics, x_shape). Every operator is shared across the batch."""
    return {
        "mri": lambda g: (dinv.physics.MRI(mask=_column_mask(g), img_size=(2, 16, 16)), (B, 2, 16, 16)),
        "multicoil_mri": lambda g: (
            dinv.physics.MultiCoilMRI(
                mask=_column_mask(g),
                coil_maps=torch.randn(1, 4, 16, 16, dtype=torch.complex128, generator=g),
                img_size=(2, 16, 16)),
            (B, 2, 16, 16)),
        "inpainting": lambda g: (
            dinv.physics.Inpainting(img_size=(1, 16, 16),
                                    mask=(torch.rand(1, 16, 16, generator=g, dtype=torch.float64) < 0.5).double()),
            (B, 1, 16, 16)),
        "blur_fft": lambda g: (dinv.physics.BlurFFT(img_size=(1, 16, 16), filter=_gaussian_filter(1.0)), (B, 1, 16, 16)),
        # 24 views at 16x16: full rank, condition number 210. With 12 views the same operator has
        # singular values down to 1e-9 (condition 8e9) and a least-squares solution is meaningless.
        "tomography": lambda g: (
            dinv.physics.Tomography(angles=24, img_width=16, adjoint_via_backprop=True, normalize=False,
                                    dtype=torch.float64),
            (B, 1, 16, 16)),
        "matrix": lambda g: (MatrixOperator.random(3, 8, g), (B, 8)),
    }


OPERATORS = _deepinv_operators()


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(params=sorted(OPERATORS))
def operator_case(request, generator):
    """(name, physics, x, y, sigma) with y = A x + noise, per-sample sigma."""
    physics, shape = OPERATORS[request.param](generator)
    x = torch.randn(shape, dtype=torch.float64, generator=generator)
    ax = physics.A(x)
    sigma = torch.tensor([0.05, 0.1, 0.2], dtype=torch.float64)
    y = ax + sigma.view(-1, *[1] * (ax.dim() - 1)) * torch.randn(ax.shape, dtype=torch.float64, generator=generator)
    if request.param == "mri" or request.param == "multicoil_mri":
        y = physics.A(physics.A_adjoint(y))  # keep y zero where k-space is not sampled
    return request.param, physics, x, y, sigma
