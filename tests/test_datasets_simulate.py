"""The k-space simulator, coil maps, phantoms and the embedded demo scan."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from invdiff.datasets import (FastMRIFile, SimulationSettings, birdcage_maps, demo_scan, random_ellipses, shepp_logan,
                              simulate_multicoil)
from invdiff.datasets.simulate import smooth_phase
from invdiff.metrics import center_crop
from invdiff.operators import MultiCoilMRI
from invdiff.operators.fft import fft2c, from_complex, ifft2c, rss


def _disc(h=32, w=24):
    yy, xx = np.mgrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j]
    return ((xx**2 + yy**2) < 0.7).astype(np.float32) * (1 + 0.5 * xx)


def test_noiseless_simulation_is_the_sense_model_and_rss_gives_the_magnitude():
    mag = np.stack([_disc(), 0.5 * _disc()]).astype(np.float32)
    vol = simulate_multicoil(mag, SimulationSettings(num_coils=6, snr_db=math.inf, seed=1))
    assert vol.kspace.shape == (2, 6, 64, 24) and vol.noise_std == 0
    # normalised maps: RSS of noiseless coil images is |x|
    torch.testing.assert_close(vol.target, torch.from_numpy(mag), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vol.image.abs(), torch.from_numpy(mag), atol=1e-5, rtol=1e-5)
    # k-space equals our SENSE operator applied to the zero-padded complex image
    padded = torch.zeros(2, 64, 24, dtype=torch.complex64)
    padded[:, 16:48] = vol.image
    op = MultiCoilMRI(torch.ones(24), vol.coil_maps)
    torch.testing.assert_close(op.A(from_complex(padded)), from_complex(vol.kspace), atol=1e-5, rtol=1e-5)


def test_noise_has_the_stated_snr_and_is_seeded():
    mag = np.stack([_disc(64, 48)] * 2)
    settings = SimulationSettings(num_coils=4, snr_db=20.0, seed=7)
    clean = simulate_multicoil(mag, SimulationSettings(num_coils=4, snr_db=math.inf, seed=7)).kspace
    noisy = simulate_multicoil(mag, settings)
    noise = noisy.kspace - clean
    measured = 10 * math.log10(clean.abs().square().sum() / noise.abs().square().sum())
    assert measured == pytest.approx(20.0, abs=0.1)
    assert noise.real.std().item() == pytest.approx(noisy.noise_std / math.sqrt(2), rel=0.02)
    assert noise.imag.std().item() == pytest.approx(noisy.noise_std / math.sqrt(2), rel=0.02)
    again = simulate_multicoil(mag, settings)
    assert torch.equal(again.kspace, noisy.kspace)
    other = simulate_multicoil(mag, SimulationSettings(num_coils=4, snr_db=20.0, seed=8))
    assert not torch.equal(other.kspace, noisy.kspace)
    # fastMRI's target: RSS of the noisy coil images, centre-cropped
    torch.testing.assert_close(noisy.target, center_crop(rss(ifft2c(noisy.kspace), dim=1), (64, 48)))


def test_smooth_phase_is_bounded_and_band_limited():
    phase = smooth_phase(3, (64, 64), torch.Generator().manual_seed(0), max_phase=1.0, max_frequency=2)
    assert phase.abs().amax(dim=(-2, -1)).tolist() == pytest.approx([1.0] * 3, abs=1e-6)
    # phase is a sum of modes up to 2 cycles per FOV: FFT energy beyond frequency 3 is negligible
    spectrum = fft2c(phase.to(torch.complex128)).abs().square()
    low = spectrum[:, 32 - 3 : 32 + 4, 32 - 3 : 32 + 4].sum()
    assert low / spectrum.sum() > 0.995


def test_simulator_rejects_bad_images():
    with pytest.raises(ValueError, match="non-negative"):
        simulate_multicoil(-np.ones((8, 8)))
    with pytest.raises(ValueError, match=r"\(S, h, w\)"):
        simulate_multicoil(np.ones((1, 1, 8, 8)))


def test_birdcage_maps_are_normalised():
    maps = birdcage_maps(8, (32, 48))
    assert maps.shape == (8, 32, 48) and maps.dtype == torch.complex64
    torch.testing.assert_close(maps.abs().square().sum(0), torch.ones(32, 48))
    # localised coils: each is strongest near its own edge of the field of view
    assert (maps.abs().amax(dim=(-2, -1)) / maps.abs().amin(dim=(-2, -1)) > 3).all()


# --- phantoms --------------------------------------------------------------------------------------------

def _pixel(n, x, y):
    """Pixel (row, col) whose centre is nearest to (x, y) on [-1, 1]^2 with y up."""
    return int(round((1 - y) * n / 2 - 0.5)), int(round((x + 1) * n / 2 - 0.5))


@pytest.mark.parametrize("x, y, modified, original", [
    (0.0, 0.0, 0.2, 1.02),     # skull and brain: 1 - 0.8 | 2 - 0.98
    (0.22, 0.0, 0.0, 1.0),     # right ventricle: + (-0.2) | + (-0.02)
    (0.0, 0.35, 0.3, 1.03),    # ellipse e: + 0.1 | + 0.01
    (0.0, 0.9, 1.0, 2.0),      # skull
    (0.0, -0.95, 0.0, 0.0),    # outside
])
def test_shepp_logan_region_values(x, y, modified, original):
    n = 256
    r, c = _pixel(n, x, y)
    assert shepp_logan(n)[r, c].item() == pytest.approx(modified, abs=1e-6)
    assert shepp_logan(n, modified=False)[r, c].item() == pytest.approx(original, abs=1e-6)


def test_shepp_logan_outline_matches_scikit_image():
    from skimage.data import shepp_logan_phantom

    theirs = shepp_logan_phantom() > 0
    ours = shepp_logan(400).numpy() > 0
    assert (theirs != ours).mean() < 0.005


def test_random_ellipses_are_seeded_bounded_and_leave_global_state_alone():
    state = torch.get_rng_state()
    a = random_ellipses(5, 48, torch.Generator().manual_seed(1))
    b = random_ellipses(5, 48, torch.Generator().manual_seed(1))
    c = random_ellipses(5, 48, torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (5, 48, 48) and a.min() >= 0 and a.max() <= 1
    assert all(len(torch.unique(im)) > 3 for im in a)  # body plus inner structures
    assert (a[:, 0, :] == 0).all() and (a[:, :, 0] == 0).all()  # the body stays inside the field of view


# --- the embedded demo scan -----------------------------------------------------------------------------

def test_demo_scan_is_a_valid_multicoil_fastmri_file():
    f = FastMRIFile.open(demo_scan())
    assert f.multicoil and f.num_coils >= 8 and min(f.recon_size) >= 128 and 3 <= f.num_slices <= 8
    assert f.kspace_shape[-2] == 2 * f.recon_size[0]  # fastMRI's 2x readout oversampling
    meta = json.loads(f.attrs["invdiff_simulation"])
    assert meta["provenance"]["source"] == "colin27_t1" and len(meta["provenance"]["sha256"]) == 64
    assert meta["settings"]["snr_db"] == 30.0
    k = f.kspace(2)
    torch.testing.assert_close(f.target(2), center_crop(rss(ifft2c(k), dim=0), f.recon_size), rtol=1e-5, atol=1e-6)
    target = f.target_volume()
    assert f.attrs["max"] == pytest.approx(float(target.max()))
    # real anatomy: a head filling a good part of the field of view, with dark ventricles inside it
    head = target[2] > 0.1 * target.max()
    assert 0.3 < head.mean() < 0.8
