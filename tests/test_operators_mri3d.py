"""3-D Cartesian MRI (two phase-encode axes): adjoint, the z-FFT, particles, and the volume samplers."""

from __future__ import annotations

import torch

import pytest

from invdiff.measurement import Measurement
from invdiff.operators import MultiCoilMRI, poisson_disc_mask, to_complex
from invdiff.operators.mri3d import Cartesian3DMRI, fftc, ifftc


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _maps(slices: int, coils: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = _gen(seed)
    maps = torch.complex(torch.randn(slices, coils, h, w, generator=g), torch.randn(slices, coils, h, w, generator=g))
    return (maps / (maps.abs() ** 2).sum(1, keepdim=True).sqrt()).to(torch.complex64)  # sum_c |S_c|^2 = 1


def test_adjoint_and_the_fft_along_the_slices():
    """<A x, y> = <x, A^T y>; with every line acquired, y is the 3-D FFT of the coil images, and A^T A = I
    (maps normalised); the readout padding of fastMRI (grid 16 rows, image 8) is kept."""
    s, c, h, w = 6, 3, 16, 10
    maps = _maps(s, c, h, w, 0)
    op = Cartesian3DMRI(poisson_disc_mask((s, w), 2.0, calib=2, seed=0), maps, image_size=(8, w))
    g = _gen(1)
    x, y = torch.randn(s, 2, 8, w, generator=g), torch.randn(s, 2, c, h, w, generator=g)
    lhs, rhs = (op.A(x).double() * y.double()).sum(), (x.double() * op.A_adjoint(y).double()).sum()
    assert abs(float(lhs - rhs)) < 1e-5 * abs(float(lhs))
    full = Cartesian3DMRI(torch.ones(s, w), maps)
    x = torch.randn(s, 2, h, w, generator=g)
    coil_images = maps * to_complex(x)[:, None]
    k3 = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(coil_images, dim=(0, 2, 3)), dim=(0, 2, 3),
                                           norm="ortho"), dim=(0, 2, 3))
    torch.testing.assert_close(to_complex(full.A(x)), k3, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(full.A_adjoint(full.A(x)), x, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ifftc(fftc(k3, 0), 0), k3, rtol=1e-5, atol=1e-5)
    # one slice: the 2-D operator under the same columns
    one = Cartesian3DMRI(torch.tensor([[1.0, 0.0] * (w // 2)]), maps[:1])
    two_d = MultiCoilMRI(torch.tensor([1.0, 0.0] * (w // 2)), maps[:1])
    torch.testing.assert_close(one.A(x[:1]), two_d.A(x[:1]))


def test_particles_are_independent_volumes():
    """After expand_batch(3), items b * 3 + n are slice b of volume n: each volume is measured as alone."""
    s, c, h, w = 4, 2, 8, 8
    op = Cartesian3DMRI(poisson_disc_mask((s, w), 2.0, calib=2, seed=1), _maps(s, c, h, w, 2))
    wide = op.expand_batch(3)
    volumes = torch.randn(3, s, 2, h, w, generator=_gen(3))
    batch = volumes.transpose(0, 1).reshape(s * 3, 2, h, w)  # item-major
    out = wide.A(batch).reshape(s, 3, 2, c, h, w)
    for n in range(3):
        torch.testing.assert_close(out[:, n], op.A(volumes[n]))
    back = wide.A_adjoint(wide.A(batch)).reshape(s, 3, 2, h, w)
    torch.testing.assert_close(back[:, 1], op.A_adjoint(op.A(volumes[1])))
    m = Measurement(op, op.A(volumes[0]), 0.01)
    assert m.couples_batch and m.expand(3).physics.particles == 3
    norms = m.operator_norm_sq(50)
    assert norms.shape == (s,) and bool((norms == norms[0]).all()) and 0.5 < float(norms[0]) <= 1.0 + 1e-4


def test_bad_input_names_the_shape():
    maps = _maps(4, 2, 8, 8, 4)
    with pytest.raises(ValueError, match=r"mask must be \(S, W\)"):
        Cartesian3DMRI(torch.ones(4, 8, 8), maps)
    with pytest.raises(ValueError, match="coil_maps has 4 sets for a mask of 3 slices"):
        Cartesian3DMRI(torch.ones(3, 8), maps)
    op = Cartesian3DMRI(torch.ones(4, 8), maps)
    with pytest.raises(ValueError, match="5 items but this 3-D acquisition holds 4 slices"):
        op.A(torch.zeros(5, 2, 8, 8))


@pytest.fixture(scope="module")
def simulated_file(tmp_path_factory):
    """Eight 40 x 40 slices of an ellipse that grows along z, 4 coils, 2x readout oversampling."""
    from invdiff.datasets import SimulationSettings, simulate_multicoil, write_fastmri_file

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 40), torch.linspace(-1, 1, 40), indexing="ij")
    images = torch.stack([((xx**2 / 0.5 + yy**2 / (0.4 + 0.04 * k)) < 1).float() * (1 + 0.3 * xx)
                          for k in range(8)])
    sim = simulate_multicoil(images, SimulationSettings(num_coils=4, snr_db=30.0, seed=0))
    path = tmp_path_factory.mktemp("mri3d") / "volume.h5"
    write_fastmri_file(path, sim, provenance={"source": "test"}, fov_mm=40.0)
    return path, sim


def test_the_3d_problem_keeps_the_acquired_lines_and_estimates_the_noise(simulated_file):
    from invdiff.datasets import FastMRIFile
    from invdiff.problems.mri3d import cartesian_3d_problem

    path, sim = simulated_file
    file = FastMRIFile.open(path)
    problem = cartesian_3d_problem(file, 3.0, 0.3, list(range(1, 7)), seed=2)
    op, info = problem.measurement.physics, problem.info
    assert isinstance(op, Cartesian3DMRI) and problem.measurement.couples_batch
    mask = op.mask.bool()
    assert mask.shape == (6, 40) and info["calibration_block"] == [3, 12] and mask[2:5, 14:26].all()
    assert 2.4 < info["acceleration"] < 3.6
    k3 = fftc(torch.stack([file.kspace(i) for i in range(1, 7)]), 0)
    y = to_complex(problem.measurement.y) * info["scale"]
    kept = mask[:, None, None, :].expand(-1, 4, 80, -1)
    torch.testing.assert_close(y[kept], k3[kept], rtol=1e-4, atol=1e-4 * float(k3.abs().max()))
    assert float(y[~kept].abs().max()) == 0.0
    assert abs(info["noise_std_estimate"] / (sim.noise_std / 2**0.5) - 1) < 0.1  # per real component
    assert problem.baseline.shape == problem.target.shape == (6, 40, 40)
    with pytest.raises(ValueError, match="at least 2 contiguous slices"):
        cartesian_3d_problem(file, 3.0, 0.3, [1, 3], seed=2)


def test_reconstruct_solves_a_3d_acquisition_as_one_volume(simulated_file, tmp_path, capsys):
    import json

    from invdiff.cli import main

    path, _ = simulated_file
    out = tmp_path / "tv"
    args = ["reconstruct", str(path), "--acquisition", "3d", "--acceleration", "3", "--center-fraction", "0.3",
            "--quiet", "--slices", "0:8"]
    assert main([*args, "--sampler", "tv-3d", "--volume", "--out", str(out), "--set", "iterations=60"]) == 0
    summary = json.loads((out / "volume.json").read_text())
    assert summary["measurement"]["operator"].startswith("3-D Cartesian")
    psnr = summary["metrics"]["mean"]["PSNR"]
    assert psnr > summary["metrics"]["zero-filled RSS"]["PSNR"] + 0.5, summary["metrics"]
    assert main([*args, "--sampler", "red-diff", "--out", str(tmp_path / "no")]) == 1
    assert "a 3-D acquisition couples all slices" in capsys.readouterr().err
