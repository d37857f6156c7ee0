"""CT: line integrals of an analytic image, FBP against scikit-image, geometries and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import skimage.transform
import torch

from invdiff.operators import FanBeamCT, ParallelBeamCT, limited_angle_angles, ramp_filter, sparse_view_angles

N = 64
CENTRE = (6.0, -4.0)  # (x, y) in pixels: x along columns, y up the rows
WIDTH = 4.0


def _gaussian_image() -> torch.Tensor:
    c = torch.arange(N, dtype=torch.float64) - (N - 1) / 2
    x, y = c[None, :], -c[:, None]  # row 0 is the top
    return torch.exp(-((x - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2) / (2 * WIDTH**2))[None, None]


def _line_integral(distance: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2 * math.pi) * WIDTH * torch.exp(-(distance**2) / (2 * WIDTH**2))


def _frames(angles_deg):
    t = torch.deg2rad(torch.tensor(angles_deg, dtype=torch.float64))
    return torch.stack([t.cos(), t.sin()], -1), torch.stack([-t.sin(), t.cos()], -1)


def test_parallel_beam_line_integrals_of_a_gaussian():
    angles = [0.0, 17.0, 45.0, 90.0, 133.0, 250.0]
    op = ParallelBeamCT(N, angles, dtype=torch.float64)
    d = op.sinogram_shape[0]
    u = torch.arange(d, dtype=torch.float64) - (d - 1) / 2
    e, _ = _frames(angles)
    expected = _line_integral(u[:, None] - (e @ torch.tensor(CENTRE, dtype=torch.float64))[None, :])
    got = op.A(_gaussian_image())[0, 0]
    assert float((got - expected).norm() / expected.norm()) < 5e-3


def test_fan_beam_line_integrals_of_a_gaussian():
    angles, r, sdd = [0.0, 30.0, 100.0, 200.0, 315.0], 80.0, 160.0
    op = FanBeamCT(N, angles, source_distance=r, source_detector_distance=sdd, dtype=torch.float64)
    d = op.sinogram_shape[0]
    u = torch.arange(d, dtype=torch.float64) - (d - 1) / 2
    e, dirs = _frames(angles)
    source = -r * dirs  # (A, 2)
    ray = sdd * dirs[None] + u[:, None, None] * e[None]  # (D, A, 2)
    ray = ray / ray.norm(dim=-1, keepdim=True)
    rel = torch.tensor(CENTRE, dtype=torch.float64) - source  # (A, 2)
    distance = rel[None, :, 0] * ray[..., 1] - rel[None, :, 1] * ray[..., 0]
    expected = _line_integral(distance)
    got = op.A(_gaussian_image())[0, 0]
    assert float((got - expected).norm() / expected.norm()) < 5e-3


@pytest.mark.parametrize("name", ["ramp", "shepp-logan"])
def test_parallel_fbp_matches_scikit_image(name):
    """Same filter definitions as ``skimage.transform.iradon``; each reconstructs from its own projector.
    They agree to 10 % (measured 8.3 % ramp, 6.6 % Shepp-Logan at 64x64; 3.5 % and 2.8 % at 128x128,
    the rest is skimage's half-pixel rotation centre) and are equally close to the phantom."""
    img = skimage.transform.resize(skimage.data.shepp_logan_phantom(), (N, N))
    theta = np.arange(180.0)
    op = ParallelBeamCT(N, theta, dtype=torch.float64)
    ours = op.fbp(op.A(torch.from_numpy(img)[None, None]), name)[0, 0].numpy()
    theirs = skimage.transform.iradon(skimage.transform.radon(img, theta, circle=False), theta,
                                      filter_name=name, circle=False)
    err = np.linalg.norm(ours - img) / np.linalg.norm(img)
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 0.10
    assert err < np.linalg.norm(theirs - img) / np.linalg.norm(img) + 0.01


def test_fan_beam_fbp_reconstructs_the_phantom_at_scale():
    img = torch.from_numpy(skimage.transform.resize(skimage.data.shepp_logan_phantom(), (N, N)))[None, None]
    op = FanBeamCT.sparse_view(N, 360, source_distance=2.0 * N, source_detector_distance=4.0 * N, dtype=torch.float64)
    rec = op.fbp(op.A(img))
    assert float((rec - img).norm() / img.norm()) < 0.15
    inside = img > 0.15  # the mean value inside the skull is right (no scale error)
    assert abs(float(rec[inside].mean() / img[inside].mean()) - 1) < 0.02


def test_ramp_filter_removes_constants_and_keeps_units():
    """A constant projection of width D filtered by the discrete ramp integrates to ~0 in the interior."""
    flat = torch.ones(1, 1, 101, 1, dtype=torch.float64)
    out = ramp_filter(flat, spacing=2.0)
    assert abs(float(out[0, 0, 50, 0])) < 5e-3
    assert torch.allclose(ramp_filter(flat, 2.0), ramp_filter(flat, 1.0) / 2)
    with pytest.raises(ValueError, match="filter must be"):
        ramp_filter(flat, 1.0, "hann")


def test_geometry_helpers():
    assert sparse_view_angles(4) == (0.0, 45.0, 90.0, 135.0)
    assert limited_angle_angles(90.0, 3) == (0.0, 30.0, 60.0)
    op = ParallelBeamCT.limited_angle(16, 120.0, 8)
    assert op.sinogram_shape == (math.ceil(16 * math.sqrt(2)), 8) and op.memory_bytes > 0


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match=r"angles must be finite degrees in \[0, 360\).*\[400.0\]"):
        ParallelBeamCT(16, [0.0, 400.0])
    with pytest.raises(ValueError, match="angles must not be empty"):
        ParallelBeamCT(16, [])
    with pytest.raises(ValueError, match="lies inside"):
        FanBeamCT(16, [0.0], source_distance=10.0, source_detector_distance=30.0, num_detectors=40)
    op = ParallelBeamCT(16, [0.0, 90.0])
    with pytest.raises(TypeError, match="float64.*float32"):
        op.A(torch.zeros(1, 1, 16, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"sinogram must have shape \(B, 1, 23, 2\)"):
        op.A_adjoint(torch.zeros(1, 1, 23, 3))
    with pytest.raises(ValueError, match=r"image must have shape \(B, 1, 16, 16\).*got \(16, 16\)"):
        op.A(torch.zeros(16, 16))


@pytest.mark.parametrize("fan", [False, True])
def test_matrix_free_projector_equals_the_stored_matrix(fan):
    """Weights on the fly, in chunks smaller than one view: the same projections and back-projections as
    the stored matrix (to float32 rounding), an exact adjoint, and gradients through both products."""
    kwargs = dict(source_distance=96.0, source_detector_distance=160.0) if fan else {}
    cls, angles = (FanBeamCT, sparse_view_angles(30, 360.0)) if fan else (ParallelBeamCT, sparse_view_angles(30))
    stored = cls(48, angles, projector="matrix", **kwargs)
    free = cls(48, angles, projector="matrix-free", chunk_bytes=1 << 17, **kwargs)
    assert (stored.projector, free.projector) == ("matrix", "matrix-free")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 48, 48, generator=g)
    y = torch.rand(3, 2, *stored.sinogram_shape, generator=g)
    ax, aty = free.A(x), free.A_adjoint(y)
    torch.testing.assert_close(ax, stored.A(x), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(aty, stored.A_adjoint(y), rtol=1e-5, atol=1e-4)
    lhs, rhs = (ax.double() * y.double()).sum(), (x.double() * aty.double()).sum()
    assert abs(float(lhs - rhs)) < 1e-5 * float(lhs)
    xg = x.clone().requires_grad_(True)
    (free.A(xg) * y).sum().backward()
    torch.testing.assert_close(xg.grad, aty)
    assert free.with_dtype(torch.float64).A(x.double()).dtype == torch.float64
    torch.testing.assert_close(free.to(torch.float64).A(x.double()), stored.to(torch.float64).A(x.double()))
    assert free.memory_bytes < stored.memory_bytes / 4


def test_auto_projector_chooses_by_the_build_estimate():
    small = ParallelBeamCT(32, sparse_view_angles(8))
    assert small.projector == "matrix"
    large = ParallelBeamCT(32, sparse_view_angles(8), budget=1000)
    assert large.projector == "matrix-free"
    with pytest.raises(ValueError, match="projector must be 'auto', 'matrix' or 'matrix-free'"):
        ParallelBeamCT(32, sparse_view_angles(8), projector="dense")


@pytest.mark.parametrize("images", [1, 5])
@pytest.mark.parametrize("fan", [False, True])
def test_compiled_and_grid_sample_kernels_agree_with_the_stored_matrix(fan, images):
    """Both matrix-free kernels against the float64 stored matrix, to float64 rounding, with rays along
    the image's edges (0 and 90 degrees, a pixel-aligned detector) and rays that miss the image; one
    image (the compiled adjoint splits the rays over threads) and five (it splits the images)."""
    from invdiff.operators.ct_projector import MatrixFreeJoseph
    angles = [0.0, 30.0, 45.0, 90.0, 135.0, 181.0] if fan else [0.0, 30.0, 45.0, 90.0, 135.0, 179.0]
    kwargs = dict(source_distance=40.0, source_detector_distance=80.0, num_detectors=80) if fan else \
        dict(num_detectors=40)  # beyond the image's diagonal (23 bins): some rays miss it
    cls = FanBeamCT if fan else ParallelBeamCT
    stored = cls(16, angles, dtype=torch.float64, projector="matrix", **kwargs)
    origins, dirs = stored.geometry.rays()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(images, 16 * 16, generator=g, dtype=torch.float64)
    y = torch.rand(images, origins.shape[0], generator=g, dtype=torch.float64)
    ax, aty = (stored.matrix @ x.T).T, (stored.transpose @ y.T).T
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for kernel in ("compiled", "grid_sample"):
            free = MatrixFreeJoseph(origins, dirs, 16, torch.float64, chunk_bytes=1 << 12, kernel=kernel)
            torch.testing.assert_close(free.forward(x), ax, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(free.adjoint(y), aty, rtol=1e-12, atol=1e-12)
    finally:
        torch.set_num_threads(threads)
    assert float(ax.abs().sum()) > 0 and bool((ax == 0).any())  # some rays miss the image
    with pytest.raises(ValueError, match="kernel must be"):
        MatrixFreeJoseph(origins, dirs, 16, kernel="numba")
