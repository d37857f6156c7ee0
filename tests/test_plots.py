"""Figure helpers: styles that keep a sampler's curves together."""

from __future__ import annotations

from invdiff.plots import calibration_figure, curve_styles


def test_curve_styles_pair_a_samplers_curves():
    labels = ["dps, uncalibrated", "dps, calibrated", "fps, uncalibrated", "fps, calibrated"]
    assert curve_styles(labels, ", ") == [("o-", 0), ("s--", 0), ("o-", 1), ("s--", 1)]
    assert curve_styles(labels) == [("o-", 0), ("o-", 1), ("o-", 2), ("o-", 3)]
    assert curve_styles(["AFE (SDE), 4 particles, no resampling", "AFE (SDE), 4 particles"], ", ") == [
        ("o-", 0), ("s--", 1)]  # split at the last separator


def test_calibration_figure_with_more_samplers_than_colours(tmp_path):
    curves = {f"s{i}, {kind}": {0.5: 0.1 * (i % 5), 0.9: 0.2} for i in range(12) for kind in ("a", "b")}
    path = calibration_figure(tmp_path / "c.png", curves, "twelve samplers", group_sep=", ")
    assert path.is_file() and path.stat().st_size > 1000
