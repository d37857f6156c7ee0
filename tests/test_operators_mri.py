"""MRI operators: fastMRI's FFT convention, SENSE identities, RSS, masks, ESPIRiT, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import sigpy.mri
import skimage.data
import skimage.transform
import torch

from invdiff.operators import (MaskFunc, MultiCoilMRI, SingleCoilMRI, espirit_maps, fft2c, from_complex, gaussian_mask,
                               ifft2c, poisson_disc_mask, to_complex)
from invdiff.operators.variable_density import acceleration_of, calibration_square


def _image(n=64):
    img = torch.from_numpy(skimage.transform.resize(skimage.data.shepp_logan_phantom(), (n, n)))
    phase = torch.exp(1j * torch.linspace(0, 2, n, dtype=torch.float64))[None, :]
    return img, from_complex((img * phase)[None])


def _birdcage(coils=6, n=64):
    maps = torch.from_numpy(sigpy.mri.birdcage_maps((coils, n, n)))
    return maps / (maps.abs() ** 2).sum(0).sqrt()


@pytest.mark.parametrize("shape", [(10, 12), (12, 12), (6, 8), (9, 12), (10, 7), (5, 5)])
def test_fft2c_is_fastmri_convention(shape):
    """fastMRI: ``fftshift(fft2(ifftshift(x), norm='ortho'))``, computed here by numpy — at even sizes (the
    modulated form, both signs of ``(-1)^(H/2 + W/2)``) and odd ones (the shifts)."""
    z = torch.randn(3, *shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(z.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    iref = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(z.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    assert np.abs(fft2c(z).numpy() - ref).max() < 1e-12
    assert np.abs(ifft2c(z).numpy() - iref).max() < 1e-12
    assert torch.allclose(ifft2c(fft2c(z)), z, atol=1e-12)
    single = fft2c(z.to(torch.complex64)).numpy()
    assert single.dtype == np.complex64 and np.abs(single - ref).max() < 1e-5


def test_fft2c_puts_dc_at_the_centre():
    const = fft2c(torch.ones(1, 8, 8, dtype=torch.complex128))  # DC at (H // 2, W // 2)
    assert abs(const[0, 4, 4] - 8.0) < 1e-12 and const.abs().sum() - 8.0 < 1e-10


def test_zero_filled_pinv_and_column_mask():
    mask = MaskFunc("equispaced", (0.08,), (4,))(64, seed=(1, 2, 3))
    op = SingleCoilMRI(mask, (64, 64))
    _, x = _image()
    k = op.A(x)
    assert torch.all(k[..., mask.columns == 0] == 0)
    expected = from_complex(ifft2c(to_complex(k)))
    assert torch.allclose(op.A_dagger(k), expected, atol=1e-12)


def test_sense_with_unit_coil_energy_is_an_isometry_and_rss_is_the_magnitude():
    img, x = _image()
    op = MultiCoilMRI(torch.ones(64), _birdcage())
    y = op.A(x)
    assert torch.allclose(op.A_adjoint(y), x, atol=1e-12)
    assert torch.allclose(op.rss(y)[0, 0], img.abs(), atol=1e-12)


def test_with_mask_is_a_new_operator():
    op = MultiCoilMRI(torch.ones(16), _birdcage(n=16))
    other = op.with_mask(torch.zeros(16))
    assert torch.all(op.mask == 1) and torch.all(other.mask == 0) and other.coil_maps is op.coil_maps


def test_bad_input_names_the_problem():
    maps = _birdcage(n=16)
    with pytest.raises(ValueError, match="complex"):
        MultiCoilMRI(torch.ones(16), maps.real)
    with pytest.raises(ValueError, match="mask has 15 columns but the image is 16 wide"):
        MultiCoilMRI(torch.ones(15), maps)
    with pytest.raises(ValueError, match=r"column mask \(16,\) needs the image size"):
        SingleCoilMRI(torch.ones(16))
    op = MultiCoilMRI(torch.ones(16), maps)
    with pytest.raises(ValueError, match=r"image must have shape \(B, 2, 16, 16\).*got \(1, 1, 16, 16\)"):
        op.A(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"k-space must have shape \(B, 2, 6, 16, 16\)"):
        op.A_adjoint(torch.zeros(1, 2, 5, 16, 16))


def test_gaussian_mask_exact_count_and_calibration():
    g = torch.Generator().manual_seed(0)
    m = gaussian_mask((48, 40), 4.0, 8, g)
    assert int(m.sum()) == round(48 * 40 / 4) and m.dtype == torch.float32
    assert torch.all(m[calibration_square((48, 40), 8)] == 1)
    assert torch.equal(m, gaussian_mask((48, 40), 4.0, 8, torch.Generator().manual_seed(0)))
    centre, edge = m[18:30, 14:26].mean(), torch.cat([m[:6].flatten(), m[-6:].flatten()]).mean()
    assert centre > 2 * edge  # variable density
    with pytest.raises(ValueError, match="calibration square"):
        gaussian_mask((16, 16), 8.0, 12, g)


def test_poisson_disc_mask():
    m = poisson_disc_mask((64, 64), 4.0, calib=12, seed=3)
    assert abs(acceleration_of(m) - 4.0) <= 0.4 and torch.all(m[calibration_square((64, 64), 12)] == 1)
    assert torch.equal(m, poisson_disc_mask((64, 64), 4.0, calib=12, seed=3))
    assert not torch.equal(m, poisson_disc_mask((64, 64), 4.0, calib=12, seed=4))


@pytest.mark.parametrize("undersampled", [False, True])
def test_espirit_recovers_the_coil_subspace(undersampled):
    """ESPIRiT maps span the true coil sensitivities inside the object: projecting the true coil
    images onto the estimated maps loses < 2 % of them, from full or auto-calibrated k-space."""
    img, x = _image()
    maps = _birdcage()
    mask = torch.ones(64)
    if undersampled:
        mask = MaskFunc("equispaced", (24 / 64,), (3,))(64, seed=0).columns
    y = MultiCoilMRI(mask, maps).A(x)
    est = espirit_maps(y, calib_width=24)
    assert est.shape == (1, 6, 64, 64) and est.is_complex()
    coil = maps * to_complex(x)[0]
    projected = est[0] * (est[0].conj() * coil).sum(0)
    inside = img > 0
    assert float((projected - coil)[:, inside].norm() / coil[:, inside].norm()) < 0.02
    with pytest.raises(ValueError, match="calib_width"):
        espirit_maps(y, calib_width=8)


def test_rectangular_espirit_is_sigpys_on_a_square():
    """The rectangular calibration (own code) given a square block is sigpy's EspiritCalib to rounding."""
    from invdiff.operators.espirit import espirit_calibration

    _, x = _image()
    y = to_complex(MultiCoilMRI(torch.ones(64), _birdcage()).A(x))[0]
    app = sigpy.mri.app.EspiritCalib(y.numpy(), calib_width=20, thresh=0.02, kernel_width=5, crop=0.0,
                                     max_iter=50, output_eigenvalue=True, show_pbar=False)
    ref_maps, ref_eig = (torch.from_numpy(np.asarray(a)) for a in app.run())
    maps, eig = espirit_calibration(y, (20, 20), (5, 5), 0.02, 50)
    assert float((maps - ref_maps).abs().max()) < 1e-10 and float((eig - ref_eig).abs().max()) < 1e-10


def test_a_rectangular_calibration_block_recovers_the_coils_from_ten_centre_lines():
    """An 8x-like mask (10 centre columns of 128): the square 10 x 10 block loses 5 % of the true coil
    images, the centre columns over 48 readout rows 1.2 % (noise-free; 1.4 % at 0.2 % noise)."""
    img, x = _image(128)
    maps = _birdcage(8, 128)
    mask = torch.zeros(128)
    mask[59:69] = 1
    mask[::16] = 1
    y = MultiCoilMRI(mask, maps).A(x)
    coil, inside = maps * to_complex(x)[0], img > 0

    def lost(est):
        projected = est[0] * (est[0].conj() * coil).sum(0)
        return float((projected - coil)[:, inside].norm() / coil[:, inside].norm())

    square, rectangle = espirit_maps(y, calib_width=10, kernel_width=5), espirit_maps(y, (48, 10), kernel_width=(5, 5))
    assert lost(square) > 0.04 and lost(rectangle) < 0.015
    for calib, kernel in (((8, 10), (5, 5)), ((48, 10), (5, 6)), ((48, 10, 2), 5), ((48.0, 10), 5)):
        with pytest.raises(ValueError, match="calib_width|kernel_width"):
            espirit_maps(y, calib, kernel_width=kernel)


def test_oversampled_multicoil_matches_fastmri_crop_convention():
    """A on a 2x-oversampled grid is the full-size operator on the zero-padded image, and A^T of
    fully sampled data is fastMRI's centre crop of the coil-combined image."""
    g = torch.Generator().manual_seed(11)
    maps = _birdcage(n=16).repeat_interleave(2, dim=-2)[..., :32, :]  # (C, 32, 16)
    maps = maps / (maps.abs() ** 2).sum(0, keepdim=True).sqrt()
    small = MultiCoilMRI(torch.ones(16), maps, image_size=(16, 16))
    big = MultiCoilMRI(torch.ones(16), maps)
    x = torch.randn(2, 2, 16, 16, generator=g, dtype=torch.float32)
    padded = torch.zeros(2, 2, 32, 16)
    padded[:, :, 8:24] = x  # fastMRI's centre crop offset: (32 - 16) // 2
    torch.testing.assert_close(small.A(x), big.A(padded))
    torch.testing.assert_close(small.A_adjoint(small.A(x)), x, atol=1e-5, rtol=0)
    assert small.with_mask(torch.ones(16)).image_size == (16, 16)
    with pytest.raises(ValueError, match="must fit inside"):
        MultiCoilMRI(torch.ones(16), maps, image_size=(40, 16))


def test_support_is_where_coils_see_and_its_complement_is_the_null_space():
    g = torch.Generator().manual_seed(4)
    maps = torch.randn(1, 4, 32, 16, generator=g, dtype=torch.complex128)
    maps[..., :10, :] = 0  # no coil sees the top 10 rows of the k-space grid (3 of them inside the 16-row image)
    op = MultiCoilMRI(torch.ones(16, dtype=torch.float64), maps, image_size=(16, 16))
    support = op.support()
    assert support.shape == (1, 16, 16)
    assert not bool(support[:, :2].any()) and bool(support[:, 2:].all())  # image rows 0-1 = grid rows 8-9
    outside = torch.randn(1, 2, 16, 16, generator=g, dtype=torch.float64) * (~support).unsqueeze(1)
    assert float(op.A(outside).abs().max()) == 0.0
