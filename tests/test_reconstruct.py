"""invdiff reconstruct: outputs that fastMRI scores as reported, bit-exact resume, simulated inputs, bad input."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from invdiff.cli import main
from invdiff.datasets import load_nifti, shepp_logan
from invdiff.cli.settings import parse_overrides
from invdiff.problems import ProblemSpec, configured_sampler, open_source
from invdiff.reconstruct import ReconSettings, reconstruct
from invdiff.samplers.registry import SAMPLERS


def test_interrupted_run_resumes_bit_for_bit(tmp_path):
    inp = open_source("shepp-logan", ProblemSpec(operator="ct", views=20))
    slices_input = open_source("demo", ProblemSpec(operator="inpaint", box=24))
    settings = ReconSettings(sampler="dps", nfe=4, particles=2, seed=3, slices=(1, 2), batch_slices=1)
    full = reconstruct(slices_input, settings, tmp_path / "a", progress=False, log=lambda m: None)
    reconstruct(slices_input, settings, tmp_path / "b", progress=False, log=lambda m: None)
    (tmp_path / "b" / "parts" / "group_0001.pt").unlink()  # the run stopped after its first group
    messages = []
    resumed = reconstruct(slices_input, settings, tmp_path / "b", progress=False, log=messages.append)
    assert any("earlier run" in m for m in messages) and sum("earlier run" in m for m in messages) == 1
    np.testing.assert_array_equal(resumed.mean, full.mean)
    np.testing.assert_array_equal(resumed.std, full.std)
    assert resumed.coverage == full.coverage and resumed.slices == [1, 2]
    assert 0 <= resumed.coverage["0.5"] <= resumed.coverage["0.9"] <= resumed.coverage["0.95"] <= 1
    # other settings in the same folder are refused, naming what changed
    with pytest.raises(ValueError, match=r"settings.seed"):
        reconstruct(slices_input, ReconSettings(sampler="dps", nfe=4, particles=2, seed=4, slices=(1, 2),
                                                batch_slices=1), tmp_path / "b", progress=False)
    assert inp.num_slices == 1 and inp.family == "ct" and inp.prior_name == "ct_128"


def test_volume_inputs_simulate_their_measurement(tmp_path):
    phantom = shepp_logan(64).numpy()
    data = np.stack([phantom * (1 + 0.1 * k) for k in range(3)], axis=-1).astype(np.float32)  # (x, y, z)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "head.nii.gz")
    mri = open_source(str(tmp_path / "head.nii.gz"), ProblemSpec(operator="auto", acceleration=4), tmp_path / "o")
    assert mri.operator == "mri" and mri.num_slices == 3 and mri.path.parent == tmp_path / "o/simulated" and mri.path.name.startswith("head-") and mri.path.is_file()
    assert mri.voxel_mm == pytest.approx((1.0, 1.0, 3.0))  # 64 x 2 mm resampled to 128 pixels
    problem = mri.build([1])
    assert problem.target.shape == (1, 128, 128) and problem.info["sampled_columns"] == 32
    ct = open_source(str(tmp_path / "head.nii.gz"), ProblemSpec(operator="ct", views=30, angle_range=120))
    p = ct.build([0, 2])
    assert p.measurement.y.shape[0] == 2 and p.baseline_name == "FBP" and p.info["angle_range"] == 120
    # HU -> relative attenuation 1 + HU/1000: the phantom's values 0..1 become 1.000..1.001
    assert 0.99 < float(p.target.max()) < 1.01
    blur = open_source("demo", ProblemSpec(operator="blur", noise_sigma=0.05))
    q = blur.build([0])
    assert q.info["noise_sigma"] == 0.05 and q.target.shape == (1, 128, 128)


def test_mri_particles_give_a_spread_and_coverage(tmp_path):
    """Several particles per slice on multi-coil MRI (per-slice coil-map support): std and coverage."""
    out = tmp_path / "out"
    assert main(["reconstruct", "demo", "--out", str(out), "--sampler", "prior", "--steps", "3", "--particles", "3",
                 "--slices", "0,1", "--quiet"]) == 0
    summary = json.loads((out / "demo_brain.json").read_text())
    coverage = summary["metrics"]["credible_interval_coverage"]
    assert set(coverage) == {"0.5", "0.9", "0.95"} and 0.0 <= coverage["0.5"] <= coverage["0.95"] <= 1.0
    std = load_nifti(out / "demo_brain_std.nii.gz").data
    assert std.max() > 0.0


def test_every_registered_sampler_builds_for_every_family():
    from invdiff.samplers import Sampler

    for name in SAMPLERS:
        for family in ("mri", "ct", "image", "gmm"):
            assert isinstance(configured_sampler(name, 10, family), Sampler), (name, family)
    assert configured_sampler("red-diff", 7, "ct", {"lam": 3.0}).lam == 3.0
    assert parse_overrides(["lam=512", "lr=1e-3", "clip=false", "variant=ode"]) == {
        "lam": 512, "lr": 1e-3, "clip": False, "variant": "ode"}
    with pytest.raises(KeyError, match="unknown problem family"):
        configured_sampler("dps", 10, "audio")
    with pytest.raises(ValueError, match="budget must be >= 1"):
        configured_sampler("dps", 0, "mri")


def test_solve_problem_std_is_the_spread_of_the_particles():
    """With a prior-free sampler the particles coincide: zero std; with DDIM prior samples they differ."""
    from invdiff.measurement import Measurement
    from invdiff.operators import MatrixOperator
    from invdiff.priors import GaussianMixturePrior
    from invdiff.problems import Problem
    from invdiff.reconstruct import solve_problem

    g = torch.Generator().manual_seed(0)
    prior = GaussianMixturePrior.grid(8, g)
    op = MatrixOperator.random(2, 8, g)
    x = prior.sample(1, g)
    m = Measurement(op, op.A(x), 0.5)

    def magnitude(t):
        return t.abs().reshape(t.shape[0], 2, 4).numpy()

    problem = Problem(m, magnitude(x), magnitude, magnitude(x), "x", "gmm", prior, slices=(0,))
    res = solve_problem(problem, configured_sampler("prior", 20, "gmm"), prior, 64, torch.Generator().manual_seed(1))
    assert res["std"].shape == (1, 2, 4) and res["std"].min() > 0.05
    assert res["pixels"] == 8 and set(res["coverage_sums"]) == {"0.5", "0.9", "0.95"}
    # a diverged sampler is named, not written as a NaN reconstruction
    import dataclasses

    from invdiff.samplers.classical import DirectReconstruction

    class Diverging(DirectReconstruction):
        def step(self, state):
            state = super().step(state)
            return dataclasses.replace(state, x=state.x * float("nan"))

    with pytest.raises(ValueError, match=r"Diverging diverged on slices \[0\]"):
        solve_problem(problem, Diverging(), None, 1, torch.Generator().manual_seed(1))


def test_parts_load_without_pickle_and_a_broken_part_is_named(tmp_path):
    slices_input = open_source("demo", ProblemSpec(operator="inpaint", box=24))
    settings = ReconSettings(sampler="zero-filled", slices=(1,))
    reconstruct(slices_input, settings, tmp_path, progress=False, log=lambda m: None)
    part = tmp_path / "parts" / "group_0000.pt"
    loaded = torch.load(part, weights_only=True)  # tensors and plain values only
    assert isinstance(loaded["mean"], torch.Tensor) and loaded["slices"] == [1]
    part.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="group_0000.pt: cannot read.*--force"):
        reconstruct(slices_input, settings, tmp_path, progress=False, log=lambda m: None)


def test_calibrate_then_reconstruct_with_the_calibration(tmp_path):
    """reconstruct writes the std into its prediction file; calibrate fits intervals on those slices against
    the file's target; reconstruct --calibration writes the half-widths and scores their coverage."""
    from invdiff.metrics.conformal import load_calibration

    run = tmp_path / "calib"
    assert main(["reconstruct", "demo", "--out", str(run), "--sampler", "prior", "--steps", "3", "--particles", "3",
                 "--slices", "0,1", "--quiet"]) == 0
    source = json.loads((run / "demo_brain.json").read_text())["input"]["path"]
    cal_file = tmp_path / "cal.json"
    assert main(["calibrate", source, str(run / "reconstructions"), "--levels", "0.5", "--out", str(cal_file)]) == 0
    cal = load_calibration(cal_file)
    assert cal.slices == 2 and cal.lams["0.5"] > 0 and cal.provenance["slices"] == ["demo_brain.h5:0", "demo_brain.h5:1"]
    # on its own calibration slices the conformal threshold covers at least the level (fractions, region: object)
    out = tmp_path / "applied"
    assert main(["reconstruct", "demo", "--out", str(out), "--sampler", "prior", "--steps", "3", "--particles", "3",
                 "--slices", "0,1", "--quiet", "--calibration", str(cal_file)]) == 0
    summary = json.loads((out / "demo_brain.json").read_text())
    report = summary["metrics"]["calibrated_intervals"]["on_these_slices"]["0.5"]
    assert report["coverage"] >= 0.5 and report["half_width"] > 0
    half = load_nifti(out / "demo_brain_interval50.nii.gz").data
    assert half.shape == load_nifti(out / "demo_brain_mean.nii.gz").data.shape and half.max() > 0
    # the figures a person reads: per slice the calibrated half-width and where the error exceeds it, and the
    # volume's coverage against the nominal level
    for name in ("demo_brain_slice_000.png", "demo_brain_slice_001.png", "demo_brain_calibration.png"):
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG", name
    assert "figures/demo_brain_calibration.png" in summary["outputs"]
    assert main(["calibrate", source, str(run / "reconstructions"), "--levels", "0.9", "--out", str(cal_file)]) == 1
    assert load_calibration(cal_file) == cal  # the refused fit left the file as it was
