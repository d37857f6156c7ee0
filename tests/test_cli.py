"""The invdiff command: the demo job writes its outputs and reports the exact answer beside the sampled one."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from invdiff.cli import main
from invdiff.datasets import demo_scan, load_nifti, read_prediction, volume_slices
from invdiff.metrics import evaluate_predictions


def test_demo_writes_outputs_close_to_the_exact_posterior(tmp_path, capsys):
    before = hashlib.sha256(demo_scan().read_bytes()).hexdigest()
    assert main(["demo", "--out", str(tmp_path), "--particles", "4096", "--steps", "50", "--prior-steps", "30",
                 "--uncertainty-steps", "4", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "exact" in out and "sampled" in out and "gmm_posterior.json" in out
    summary = json.loads((tmp_path / "gmm_posterior.json").read_text())
    assert (tmp_path / "gmm_posterior.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files left
    assert summary["sampler"]["network_evals"] == 50
    # importance sampling with ESS ~100 recovers the mean to a fraction of the posterior's spread
    assert summary["moment_errors"]["mean_rel"] < 0.5
    ew, sw = summary["mode_weights"]["exact"], summary["mode_weights"]["sampled"]
    assert sum(abs(a - b) for a, b in zip(ew, sw)) < 0.2
    # the demo scan, 4x, RED-Diff with the shipped prior (30 steps here; measured 29.27 dB against 19.86 dB
    # zero-filled), written as a prediction file that fastMRI's evaluation scores exactly as reported
    rd = json.loads((tmp_path / "reconstruct" / "demo_brain.json").read_text())
    assert "zero-filled RSS" in out and rd["measurement"]["sampled_columns"] == 32
    assert rd["costs"]["network_evals"] == 30 and rd["settings"]["sampler_settings"] == {"lam": 512, "lr": 0.001}
    assert rd["metrics"]["mean"]["PSNR"] > rd["metrics"]["zero-filled RSS"]["PSNR"] + 5.0
    assert 15 < rd["metrics"]["zero-filled RSS"]["PSNR"] < 30  # 4x equispaced aliasing
    assert hashlib.sha256(demo_scan().read_bytes()).hexdigest() == before  # the input is never modified
    recon = tmp_path / "reconstruct"
    assert rd["input"]["slices"] == [0, 1, 2, 3] and rd["measurement"]["acceleration"] == 4.0
    # the NIfTI mean holds the same slices, in display orientation after reading back; one particle: no spread
    vol = load_nifti(recon / "demo_brain_mean.nii.gz")
    np.testing.assert_allclose(volume_slices(vol.data, "axial"), read_prediction(recon / "reconstructions/demo_brain.h5"))
    assert np.all(load_nifti(recon / "demo_brain_std.nii.gz").data == 0)
    for s in range(4):
        assert (recon / "figures" / f"demo_brain_slice_{s:03d}.png").read_bytes()[:4] == b"\x89PNG"
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "demo_brain.h5").symlink_to(demo_scan())
    scores = evaluate_predictions(targets, tmp_path / "reconstruct" / "reconstructions")["mean"]
    assert scores == {k: pytest.approx(v, rel=1e-9) for k, v in rd["metrics"]["mean"].items()}
    # invdiff evaluate: the same numbers, as a table and as files
    assert main(["evaluate", str(targets), str(tmp_path / "reconstruct" / "reconstructions"),
                 "--out", str(tmp_path / "eval")]) == 0
    table = capsys.readouterr().out
    assert f"{rd['metrics']['mean']['PSNR']:.2f} ± 0.00" in table and "all" in table
    written = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert written["groups"]["all"]["PSNR"]["mean"] == pytest.approx(rd["metrics"]["mean"]["PSNR"], rel=1e-9)
    assert (tmp_path / "eval" / "evaluation.csv").read_text().startswith("file,acquisition,NMSE,PSNR,SSIM")
    # the uncertainty run: 4 DiffPIR particles on one slice give a spread (no black std panel) and coverage
    un = json.loads((tmp_path / "uncertainty" / "demo_brain.json").read_text())
    assert un["settings"]["particles"] == 4 and un["input"]["slices"] == [2]
    assert un["metrics"]["credible_interval_coverage"]["0.9"] > 0
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_options_are_rejected(capsys):
    assert main(["demo", "--particles", "0"]) == 2
    assert "argument --particles: must be >= 1" in capsys.readouterr().err
