"""`invdiff reconstruct --volume`: all chosen slices as one problem coupled along z, written on the input's
grid (NIfTI with its affine), with the refusals that come before any work."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from invdiff.cli import main
from invdiff.reconstruct import ReconSettings


@pytest.fixture(scope="module")
def ct_volume(tmp_path_factory):
    """A 24 x 20 x 6 NIfTI volume in HU, smooth along z, with an oblique affine."""
    folder = tmp_path_factory.mktemp("volume")
    yy, xx = np.mgrid[-1:1:24j, -1:1:20j]
    slices = [np.where(xx**2 / 0.6 + yy**2 / (0.5 + 0.05 * k) < 1, 40.0, -1000.0) for k in range(6)]
    data = np.stack(slices, axis=-1).transpose(1, 0, 2).astype(np.float32)  # (x, y, z)
    affine = np.array([[0.8, 0.1, 0.0, -10.0], [0.0, 0.8, 0.0, 5.0], [0.0, 0.0, 2.5, 30.0], [0, 0, 0, 1]])
    path = folder / "head_ct.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path, affine


def _run(path, out, *extra):
    return main(["reconstruct", str(path), "--operator", "ct", "--views", "8", "--size", "64", "--out", str(out),
                 "--quiet", "--seed", "1", *extra])


@pytest.mark.parametrize("sampler", ["dds-volume", "diffusion-mbir", "tv-3d"])
def test_a_volume_is_solved_as_one_group_and_written_with_the_input_affine(ct_volume, tmp_path, sampler):
    path, affine = ct_volume
    out = tmp_path / sampler
    assert _run(path, out, "--volume", "--sampler", sampler, "--steps", "3", "--slices", "1:5",
                "--batch-slices", "2") == 0
    assert [p.name for p in (out / "parts").iterdir()] == ["group_0000.pt"]
    mean = nib.load(str(out / "head_ct_mean.nii.gz"))
    np.testing.assert_allclose(mean.affine, affine, atol=1e-5)
    assert mean.shape == (20, 24, 6)
    summary = json.loads((out / "head_ct.json").read_text())
    assert summary["settings"]["volume"] is True and summary["settings"]["slices"] == [1, 2, 3, 4]
    data = np.asarray(mean.dataobj)
    assert np.isfinite(data).all() and np.abs(data[..., 1:5]).max() > 0


def test_volume_runs_refuse_mismatched_samplers_gaps_and_budgets(ct_volume, tmp_path, capsys):
    path, _ = ct_volume
    with pytest.raises(ValueError, match="couples a volume's slices along z: pass --volume"):
        ReconSettings(sampler="dds-volume")
    with pytest.raises(ValueError, match="solves each slice on its own"):
        ReconSettings(sampler="dds", volume=True)
    assert _run(path, tmp_path / "a", "--volume", "--sampler", "dds-volume", "--slices", "0,2,3") == 1
    assert "contiguous slices" in capsys.readouterr().err
    assert _run(path, tmp_path / "b", "--volume", "--sampler", "dds-volume", "--max-memory", "0.03") == 1
    err = capsys.readouterr().err
    assert "estimated memory" in err and "of state" in err and "slices fits" in err
    assert not (tmp_path / "b" / "parts").exists()


def test_an_mri_volume_is_coupled_with_k_space_simulated_per_slice(tmp_path):
    """3-D MRI from a volume: multi-coil k-space simulated slice by slice, all slices one problem."""
    yy, xx = np.mgrid[-1:1:24j, -1:1:20j]
    data = np.stack([np.where(xx**2 / 0.6 + yy**2 / (0.5 + 0.05 * k) < 1, 1.0 + 0.3 * xx, 0.0) for k in range(4)], -1)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    path = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(data.transpose(1, 0, 2).astype(np.float32), affine), str(path))
    out = tmp_path / "out"
    assert main(["reconstruct", str(path), "--operator", "mri", "--volume", "--sampler", "dds-volume", "--steps", "3",
                 "--out", str(out), "--quiet"]) == 0
    assert [p.name for p in (out / "parts").iterdir()] == ["group_0000.pt"]
    summary = json.loads((out / "mr.json").read_text())
    assert summary["settings"]["volume"] is True and summary["metrics"]
    mean = nib.load(str(out / "mr_mean.nii.gz"))
    np.testing.assert_allclose(mean.affine, affine, atol=1e-6)
    assert np.isfinite(np.asarray(mean.dataobj)).all()


def test_a_stopped_volume_run_resumes_at_its_last_saved_step(ct_volume, tmp_path, monkeypatch):
    """The sampler's state is saved between steps; a run killed after step 3 of 6 resumes there (the log
    says so) and ends with the uninterrupted run's volume, bit for bit; the state file is then removed."""
    from invdiff.problems import ProblemSpec
    from invdiff.problems.sources import open_source
    from invdiff.reconstruct import reconstruct
    from invdiff.samplers.checkpoint import StepCheckpoint

    path, _ = ct_volume
    spec = ProblemSpec(operator="ct", views=8, size=64, seed=1)
    settings = ReconSettings(sampler="dds-volume", nfe=6, particles=2, seed=1, slices=[1, 2, 3, 4], volume=True)
    whole = reconstruct(open_source(str(path), spec, tmp_path), settings, tmp_path / "whole", progress=False,
                        log=lambda *_: None)
    save = StepCheckpoint.__call__

    def save_then_stop(self, state):
        save(self, state)
        if state.step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(StepCheckpoint, "__call__", save_then_stop)
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        reconstruct(open_source(str(path), spec, tmp_path), settings, out, progress=False, log=lambda *_: None,
                    checkpoint_seconds=0.0)
    assert (out / "parts" / "state_0000.pt").exists() and not (out / "parts" / "group_0000.pt").exists()
    monkeypatch.setattr(StepCheckpoint, "__call__", save)
    lines = []
    resumed = reconstruct(open_source(str(path), spec, tmp_path), settings, out, progress=False, log=lines.append,
                          checkpoint_seconds=0.0)
    assert any("resumed at step 3" in line for line in lines), lines
    np.testing.assert_array_equal(resumed.mean, whole.mean)
    np.testing.assert_array_equal(resumed.std, whole.std)
    assert not (out / "parts" / "state_0000.pt").exists()
