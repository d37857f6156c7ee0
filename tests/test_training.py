"""invdiff train-prior: training data, augmentation, determinism, resume, outputs, and errors."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from invdiff.cli import main
from invdiff.priors import load_prior
from invdiff.priors.checkpoint import read_checkpoint
from invdiff.priors.unet import UNetConfig
from invdiff.training.data import Augmentation, draw_batch, load_training_images
from invdiff.training.unet import PriorTrainer, TrainingConfig, train_prior

TINY = UNetConfig(in_channels=1, channels=(8, 16), attention_levels=(False, True), norm_num_groups=8,
                  num_head_channels=8)
QUIET = dict(progress=False, log=lambda s: None, sample_steps=3)


@pytest.fixture(scope="module")
def ellipses():
    return load_training_images(["ellipses:12:3"], "CT", 32)


def test_ct_units_and_provenance():
    data = load_training_images(["anatomy:pydicom_ct_small", "ellipses:4*2"], "CT", 32)
    first = data.sources[0]
    assert first["subject"] == "pydicom-ct-small" and first["licence"] == "MIT" and len(first["sha256"]) == 64
    assert data.sources[1]["weight"] == 2.0
    assert data.weights.tolist() == [1.0] * first["slices"] + [2.0] * 4
    # relative attenuation: air 0, soft tissue ~1, bone up to ~2.2
    assert float(data.images.min()) >= 0.0 and 1.5 < float(data.images.max()) < 3.0


def test_held_out_subject_and_bad_specs_are_errors():
    with pytest.raises(ValueError, match="held out"):
        load_training_images(["anatomy:pydicom_ct_small"], "CT", 32, exclude_subjects=["pydicom-ct-small"])
    with pytest.raises(ValueError, match="is CT, but"):
        load_training_images(["anatomy:pydicom_ct_small"], "MR", 32)
    with pytest.raises(KeyError, match="unknown anatomy source"):
        load_training_images(["anatomy:nope"], "MR", 32)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_training_images(["/no/such/file.nii.gz"], "MR", 32)
    with pytest.raises(ValueError, match="weight"):
        load_training_images(["ellipses:4*x"], "CT", 32)
    with pytest.raises(ValueError, match="ellipses:N"):
        load_training_images(["ellipses:four"], "CT", 32)


def test_batches_are_deterministic_and_leave_the_global_rng_alone(ellipses):
    state = torch.get_rng_state()
    a = draw_batch(ellipses.images, 5, torch.Generator().manual_seed(1), channels=2, crop=16)
    b = draw_batch(ellipses.images, 5, torch.Generator().manual_seed(1), channels=2, crop=16)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (5, 2, 16, 16) and torch.equal(a, b)


def test_identity_augmentation_returns_the_image(ellipses):
    """With every transform switched off, a whole-image batch is the images themselves."""
    off = Augmentation(hflip=False, max_rotation=0.0, zoom=(1.0, 1.0), intensity=(1.0, 1.0))
    g = torch.Generator().manual_seed(0)
    out = draw_batch(ellipses.images, 6, g, augmentation=off)
    idx = torch.randint(0, len(ellipses.images), (6,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[:, 0], ellipses.images[idx], atol=1e-5, rtol=0)


def test_complex_batches_keep_the_magnitude(ellipses):
    off = Augmentation(hflip=False, max_rotation=0.0, zoom=(1.0, 1.0), intensity=(1.0, 1.0), max_phase=math.pi)
    out = draw_batch(ellipses.images, 4, torch.Generator().manual_seed(2), channels=2, augmentation=off)
    idx = torch.randint(0, len(ellipses.images), (4,), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(out.norm(dim=1), ellipses.images[idx], atol=1e-5, rtol=0)
    assert float(out[:, 1].abs().max()) > 0.1  # the phase is not trivial


def test_training_reduces_the_loss_and_leaves_the_global_rng_alone(ellipses):
    state = torch.get_rng_state()
    trainer = PriorTrainer(ellipses, TrainingConfig(steps=60, batch_size=8, warmup=5, lr=2e-3), TINY)
    losses = [trainer.step() for _ in range(60)]
    assert torch.equal(torch.get_rng_state(), state)
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10


def test_interrupted_and_resumed_training_equals_an_uninterrupted_run(tmp_path, ellipses):
    config = TrainingConfig(steps=6, batch_size=4, crop=16, full_image_every=3, warmup=2)
    train_prior(ellipses, config, TINY, tmp_path / "full", checkpoint_every=3, **QUIET)
    train_prior(ellipses, config, TINY, tmp_path / "part", checkpoint_every=3, max_minutes=0, **QUIET)
    assert read_checkpoint(tmp_path / "part" / "checkpoint.pt")["training"]["step"] == 3
    assert not (tmp_path / "part" / "prior.pt").exists()
    train_prior(ellipses, config, TINY, tmp_path / "part", checkpoint_every=3, resume=True, **QUIET)
    full = read_checkpoint(tmp_path / "full" / "prior.pt")
    part = read_checkpoint(tmp_path / "part" / "prior.pt")
    assert all(torch.equal(full["state_dict"][k], part["state_dict"][k]) for k in full["state_dict"])
    assert (tmp_path / "full" / "loss.csv").read_text() == (tmp_path / "part" / "loss.csv").read_text()
    rows = list(csv.DictReader(open(tmp_path / "full" / "loss.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert (tmp_path / "full" / "samples.png").stat().st_size > 1000
    assert "training" not in full  # the shipped prior carries no optimiser state
    assert len(part["provenance"]["commands"]) == 2 and len(full["provenance"]["commands"]) == 1


def test_resume_refuses_a_changed_config_and_a_fresh_run_refuses_to_overwrite(tmp_path, ellipses):
    config = TrainingConfig(steps=2, batch_size=2, warmup=1)
    train_prior(ellipses, config, TINY, tmp_path, checkpoint_every=1, **QUIET)
    with pytest.raises(FileExistsError, match="--resume"):
        train_prior(ellipses, config, TINY, tmp_path, **QUIET)
    with pytest.raises(ValueError, match="cannot resume"):
        train_prior(ellipses, TrainingConfig(steps=2, batch_size=2, warmup=1, lr=1e-3), TINY, tmp_path,
                    resume=True, **QUIET)
    # more steps is allowed
    trainer = train_prior(ellipses, TrainingConfig(steps=3, batch_size=2, warmup=1), TINY, tmp_path,
                          resume=True, **QUIET)
    assert trainer.step_index == 3
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_prior(ellipses, config, TINY, tmp_path / "empty", resume=True, **QUIET)


def test_train_prior_command_writes_a_loadable_prior_with_provenance(tmp_path):
    out = tmp_path / "run"
    argv = ["train-prior", "--modality", "MR", "--complex", "--data", "anatomy:nibabel_anatomical",
            "--size", "32", "--steps", "3", "--batch-size", "2", "--unet-channels", "16,16",
            "--head-channels", "16", "--checkpoint-every", "2", "--out", str(out), "--quiet",
            "--exclude-subject", "colin27", "--threads", "1"]
    assert main(argv) == 0
    prior = load_prior(out / "prior.pt")
    assert prior.event_shape == (2, 32, 32) and prior.data_range == (-1.0, 1.0)
    prov = read_checkpoint(out / "prior.pt")["provenance"]
    assert prov["command"].startswith("invdiff train-prior --modality MR")
    assert prov["data"][0]["subject"] == "nibabel-anatomical" and prov["steps_done"] == 3
    assert prov["training_config"]["channels"] == 2
    x = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(prior.denoise(x, 0.5)).all()


def test_file_specifications_read_nifti_fastmri_and_dicom():
    from invdiff.datasets import ANATOMY_SOURCES, demo_scan

    nifti = str(ANATOMY_SOURCES["nibabel_anatomical"].path())
    mr = load_training_images([nifti, str(demo_scan())], "MR", 32, min_foreground=0.1)
    assert [s["subject"] for s in mr.sources] == ["anatomical", "demo_brain"]
    assert mr.sources[1]["slices"] == 4 and len(mr.sources[1]["sha256"]) == 64
    assert float(mr.images.min()) >= 0.0 and float(mr.images.max()) == pytest.approx(1.0, abs=0.01)
    dicom = str(ANATOMY_SOURCES["pydicom_ct_small"].path())
    ct = load_training_images([dicom], "CT", 32, min_foreground=0.1)
    assert ct.images.shape == (1, 32, 32) and 1.5 < float(ct.images.max()) < 3.0
    with pytest.raises(ValueError, match="read as CT"):
        load_training_images([dicom], "MR", 32)


def test_bf16_mixed_precision_trains_resumes_exactly_and_differs_from_fp32(tmp_path, ellipses):
    """Mixed precision (autocast bf16; float32 weights) learns, resumes bit-exactly like fp32, and is
    really in effect (its weights differ from an fp32 run's); fp16 without CUDA is refused."""
    config = TrainingConfig(steps=4, batch_size=4, warmup=2, precision="bf16")
    train_prior(ellipses, config, TINY, tmp_path / "full", checkpoint_every=2, **QUIET)
    train_prior(ellipses, config, TINY, tmp_path / "part", checkpoint_every=2, max_minutes=0, **QUIET)
    train_prior(ellipses, config, TINY, tmp_path / "part", checkpoint_every=2, resume=True, **QUIET)
    full = read_checkpoint(tmp_path / "full" / "prior.pt")["state_dict"]
    part = read_checkpoint(tmp_path / "part" / "prior.pt")["state_dict"]
    assert all(torch.equal(full[k], part[k]) and full[k].dtype == part[k].dtype for k in full)
    assert all(v.dtype == torch.float32 for v in full.values() if v.is_floating_point())
    fp32 = PriorTrainer(ellipses, TrainingConfig(steps=4, batch_size=4, warmup=2), TINY)
    bf16 = PriorTrainer(ellipses, config, TINY)
    # same batches, same initial weights: only the arithmetic differs (the first step's output layer is zero)
    assert [fp32.step() for _ in range(3)][1:] != [bf16.step() for _ in range(3)][1:]
    trainer = PriorTrainer(ellipses, TrainingConfig(steps=40, batch_size=8, warmup=5, lr=2e-3, precision="bf16"), TINY)
    losses = [trainer.step() for _ in range(40)]
    assert all(math.isfinite(v) for v in losses) and sum(losses[-8:]) < 0.8 * sum(losses[:8])
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        PriorTrainer(ellipses, TrainingConfig(precision="fp16"), TINY)
