"""Native geometry: single-coil simulation in fastMRI's layout, resampling to a pixel size, and priors
served by pixel size rather than image size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invdiff.datasets import FastMRIFile, FastMRISliceDataset, shepp_logan
from invdiff.datasets.anatomy import resample_to_pixel
from invdiff.datasets.simulate import SimulationSettings, simulate_singlecoil, write_fastmri_file
from invdiff.operators.fft import center_crop, ifft2c
from invdiff.priors import shipped_prior
from invdiff.priors.serving import fit_prior, serves_pixel


def test_singlecoil_simulation_follows_fastmris_single_coil_layout(tmp_path):
    """k-space (S, 2h, w + 2 pad) with zero padding columns, the header's limits naming the acquired ones,
    reconstruction_esc = |crop(F^-1 k)|, and deepinv's reader sees what ours does."""
    from deepinv.datasets import FastMRISliceDataset as DeepinvSlices

    phantom = np.clip(shepp_logan(32).numpy(), 0.0, None)
    magnitude = np.stack([phantom, 0.5 * phantom]).astype(np.float32)
    sim = simulate_singlecoil(magnitude, SimulationSettings(num_coils=1, snr_db=20.0, seed=3), pad_columns=4)
    assert sim.kspace.shape == (2, 1, 64, 40) and sim.singlecoil
    assert torch.all(sim.kspace[..., :4] == 0) and torch.all(sim.kspace[..., -4:] == 0)
    path = write_fastmri_file(tmp_path / "file_sc.h5", sim, fov_mm=22.0)
    f = FastMRIFile.open(path)
    assert not f.multicoil and f.kspace_shape == (2, 64, 40) and f.target_key == "reconstruction_esc"
    assert f.acquired_columns == (4, 36) and f.recon_size == (32, 32)
    assert f.encoding.recon_fov_mm[0] == pytest.approx(22.0)
    for s in range(2):
        expected = center_crop(ifft2c(f.kspace(s)), (32, 32)).abs()
        torch.testing.assert_close(f.target(s), expected, rtol=1e-5, atol=1e-6)
    theirs, ours = DeepinvSlices(tmp_path), FastMRISliceDataset(tmp_path)
    assert len(theirs) == len(ours) == 2
    for i in range(2):
        target, kspace = theirs[i]
        torch.testing.assert_close(kspace, ours[i]["kspace"])
        torch.testing.assert_close(target[0], ours[i]["target"])
    with pytest.raises(ValueError, match="num_coils=1"):
        simulate_singlecoil(magnitude, SimulationSettings(num_coils=4))


def test_resampling_to_a_pixel_size_keeps_physical_extent():
    """A 40-pixel-wide box at 0.5 mm is 20 mm; at 1 mm pixels it spans 20 pixels, centred in the output."""
    image = np.zeros((1, 100, 100), dtype=np.float32)
    image[0, 30:70, 30:70] = 1.0
    out = resample_to_pixel(image, 0.5, 1.0, 64)
    assert out.shape == (1, 64, 64)
    width = (out[0, 32] > 0.5).sum()
    assert width == 20 and out[0].sum() == pytest.approx(400, rel=0.02)
    up = resample_to_pixel(image, 0.5, 0.25, 128)  # 200 px, centre-cropped to 128: the box spans 80
    assert (up[0, 64] > 0.5).sum() == 80
    with pytest.raises(ValueError, match="> 0 mm"):
        resample_to_pixel(image, 0.0, 1.0, 64)


def test_a_prior_is_served_by_pixel_size_not_image_size():
    prior = shipped_prior("mri_brain_128")
    assert prior.pixel_size_mm == (1.40, 2.14) and serves_pixel(prior, 1.7) and not serves_pixel(prior, 0.6875)
    big, warnings = fit_prior(prior, (256, 192), 1.7, name="mri_brain_128", data="x")
    assert big.event_shape == (2, 256, 192) and big.net is prior.net and warnings == []
    x = torch.randn(1, 2, 256, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert big.denoise(x, 0.3).shape == x.shape
    with pytest.raises(ValueError, match="trained for 1.4-2.14 mm pixels; x's are 0.688 mm"):
        fit_prior(prior, (320, 320), 0.6875, name="mri_brain_128", data="x")
    with pytest.raises(ValueError, match="multiples of 8; got 100 x 128"):
        fit_prior(prior, (100, 128), 1.7)
    undeclared = big.at_size(128, 128)
    undeclared.pixel_size_mm = None
    _, warnings = fit_prior(undeclared, (256, 256), 0.7, name="p", data="x")
    assert warnings and "declares no pixel size" in warnings[0]


def test_a_default_prior_off_its_pixel_range_is_a_warning_a_named_one_an_error():
    from invdiff.priors.shipped import default_mri_prior

    assert default_mri_prior(1.7) == "mri_brain_128" and default_mri_prior(0.6875) == "mri_brain_128"
    prior = shipped_prior("mri_brain_128")
    fitted, warnings = fit_prior(prior, (320, 320), 0.6875, name="mri_brain_128", data="x", strict=False)
    assert fitted.event_shape == (2, 320, 320)
    assert len(warnings) == 1 and "trained for 1.4-2.14 mm pixels; x's are 0.688 mm" in warnings[0]


def test_training_at_a_pixel_size_declares_the_range_it_serves_and_init_starts_from_a_prior(tmp_path):
    """--pixel-size resamples by each source's voxel size; the prior declares pixel_mm / zoom; --init copies
    a prior's weights (a different architecture is refused)."""
    from invdiff.priors.unet import UNetConfig, save_prior
    from invdiff.training.data import Augmentation, load_training_images
    from invdiff.training.unet import PriorTrainer, TrainingConfig

    data = load_training_images(["anatomy:nibabel_anatomical"], "MR", 32, min_foreground=0.1, pixel_mm=3.0)
    assert data.pixel_mm == 3.0 and data.images.shape[-2:] == (32, 32)
    # 2 mm voxels at 3 mm pixels: the 41-voxel (82 mm) axis spans round(41 * 2 / 3) = 27 pixels
    assert int((data.images.amax(0) > 0.05).any(0).sum()) <= 28
    tiny = UNetConfig(in_channels=1, channels=(8, 16), attention_levels=(False, True), norm_num_groups=8,
                      num_head_channels=8)
    config = TrainingConfig(steps=1, batch_size=2, augmentation=Augmentation(zoom=(0.75, 1.5)))
    prior = PriorTrainer(data, config, tiny).prior()
    assert prior.pixel_size_mm == pytest.approx((2.0, 4.0))
    path = save_prior(tmp_path / "p.pt", prior)
    warm = PriorTrainer(data, TrainingConfig(steps=1, batch_size=2, seed=5, init_from=str(path)), tiny)
    for a, b in zip(warm.net.state_dict().values(), prior.net.state_dict().values()):
        torch.testing.assert_close(a, b)
    other = UNetConfig(in_channels=1, channels=(8, 8), attention_levels=(False, True), norm_num_groups=8,
                       num_head_channels=8)
    with pytest.raises(ValueError, match="architecture"):
        PriorTrainer(data, TrainingConfig(steps=1, batch_size=2, init_from=str(path)), other)
    with pytest.raises(ValueError, match="no physical pixel size"):
        load_training_images(["ellipses:4"], "CT", 32, pixel_mm=1.0)


def test_least_squares_on_single_coil_k_space_stays_at_the_datas_scale(tmp_path):
    """float32 CG on the single-coil normal equations (a null space: the padding columns, the crop) used to
    iterate on round-off below its tolerance and blow up (3e8 from data of magnitude 1 at 320 x 320): the
    tolerance is floored at 10 machine epsilons."""
    from invdiff.problems import ProblemSpec, open_source

    magnitude = np.clip(shepp_logan(64).numpy(), 0.0, None)[None].astype(np.float32)
    sim = simulate_singlecoil(magnitude, SimulationSettings(num_coils=1, snr_db=18.0, seed=2), pad_columns=8)
    path = write_fastmri_file(tmp_path / "file_sc.h5", sim, fov_mm=110.0)
    m = open_source(str(path), ProblemSpec(operator="mri", acceleration=4, center_fraction=0.08)).build([0]).measurement
    x = m.pinv(max_iter=50, tol=1e-12)
    assert float(x.abs().max()) < 10 * float(m.adjoint(m.y).abs().max())
