"""``invdiff acquire``: active subsampling of a fully sampled file writes the lines it chose (spaced as
asked, within the budget), a prediction fastMRI's evaluation reads, and refuses bad input before any work."""

from __future__ import annotations

import hashlib
import json
from itertools import combinations

import pytest

from invdiff.cli import main
from invdiff.datasets import demo_scan, read_prediction


def test_acquire_writes_the_chosen_lines_and_the_prediction(tmp_path, capsys):
    before = hashlib.sha256(demo_scan().read_bytes()).hexdigest()
    assert main(["acquire", "demo", "--slices", "1", "--steps", "4", "--particles", "2", "--spacing", "0.25",
                 "--compare", "low-pass", "--quiet", "--out", str(tmp_path)]) == 0
    assert "active: PSNR" in capsys.readouterr().out
    summary = json.loads((tmp_path / "demo_brain_acquire.json").read_text())
    initial, (chosen,) = summary["lines"]["initial"], summary["lines"]["chosen"]
    assert len(initial) + len(chosen) == summary["lines"]["budget"] == 16  # 8x of 128 columns
    assert summary["spacing"] == {"fraction": 0.25, "columns": 5}  # ceil(0.25 * 118 / 6)
    # 6 lines at spacing 5 fit beside the centre block, so none gave way
    assert all(abs(a - b) >= 5 for a, b in combinations(chosen, 2))
    assert all(abs(a - c) >= 5 for a in chosen for c in initial)
    assert len(summary["lines"]["steps"]) == 6 and summary["metrics"]["active"]["PSNR"] > 0
    # the fixed low-pass mask: the same budget as the centre block 56-71, run with the same sampler
    assert summary["lines"]["fixed low-pass"] == list(range(56, 72)) and set(summary["metrics"]) == {"active",
                                                                                                     "fixed low-pass"}
    assert read_prediction(tmp_path / "reconstructions" / "demo_brain.h5").shape == (1, 128, 128)
    assert (tmp_path / "figures" / "demo_brain_slice_1.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in tmp_path.rglob(".*")]
    assert hashlib.sha256(demo_scan().read_bytes()).hexdigest() == before


@pytest.mark.parametrize("argv,message", [
    (["--calibrate-on", "demo"], "is the file being acquired"),
    (["--policy", "random", "--calibrate-on", "x.h5"], "--calibrate-on scales the gaussian and entropy"),
    (["--slices", "7"], "has 4 slices, asked for slice 7"),
    (["--center-fraction", "1.5"], "--center-fraction must lie in (0, 1)"),
])
def test_bad_input_is_refused_up_front(tmp_path, capsys, argv, message):
    assert main(["acquire", "demo", "--out", str(tmp_path / "o"), *argv]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_file_that_is_not_fastmri_and_a_sampler_without_estimates_are_refused(tmp_path, capsys):
    bad = tmp_path / "notes.h5"
    bad.write_bytes(b"not hdf5")
    assert main(["acquire", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert str(bad) in capsys.readouterr().err
    assert main(["acquire", "demo", "--sampler", "red-diff", "--out", str(tmp_path / "o")]) == 2
