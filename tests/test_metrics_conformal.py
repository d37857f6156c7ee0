"""Conformal risk control of pixel intervals (invdiff.metrics.conformal): the threshold by hand, the
finite-sample coverage guarantee by simulation, the calibration file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from invdiff.metrics.conformal import (ConformalCalibration, conformal_report, fit_conformal, load_calibration,
                                       risk_control_threshold)


def test_threshold_is_the_smallest_lambda_whose_adjusted_risk_meets_alpha():
    # two slices of 4 scores; alpha = 0.5: need 2/3 * mean risk + 1/3 <= 0.5, i.e. mean risk <= 0.25
    scores = [np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.5, 0.6, 0.7, 0.8])]
    # risk at 0.6: slice 1 loses 0, slice 2 loses 2/4 -> mean 0.25 (ok); at 0.5: 3/4 -> 0.375 (not ok)
    assert risk_control_threshold(scores, 0.5) == pytest.approx(0.6)
    # ties: the risk at a tied value counts only the scores strictly above it
    assert risk_control_threshold([np.array([1.0, 1.0, 1.0, 2.0])] * 3, 0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 9 calibration slices"):
        risk_control_threshold([np.ones(4)] * 8, 0.1)
    # exactly 9 slices at level 0.9 (alpha = 1 - 0.9, which is 0.09999999999999998 in floating point): the
    # budget is 0, so lam is the largest score
    nine = [np.array([0.1 * i, 0.1 * i + 0.05]) for i in range(9)]
    assert risk_control_threshold(nine, 1 - 0.9) == pytest.approx(0.85)


def _slices(rng: np.random.Generator, n: int, shrink: float = 3.0):
    """Exchangeable slices: the truth scatters around the mean with a spread ``shrink`` times the reported
    std, and each slice has its own noise level."""
    level = rng.uniform(0.5, 2.0, size=(n, 1, 1))
    std = level * rng.uniform(0.02, 0.1, size=(n, 16, 16))
    mean = rng.uniform(0.2, 1.0, size=(n, 16, 16))
    target = mean + shrink * std * rng.standard_normal((n, 16, 16))
    return mean, std, target


def test_calibrated_intervals_cover_the_nominal_fraction_on_new_slices():
    rng = np.random.default_rng(0)
    coverage, raw, width = [], [], []
    for _ in range(300):
        cal = fit_conformal(*_slices(rng, 19), levels=(0.9,), region="all")
        report = conformal_report(cal, *_slices(rng, 1))["0.9"]
        coverage.append(report["coverage"])
        raw.append(report["uncalibrated_coverage"])
        width.append(report["half_width"])
    # the guarantee: E[coverage] >= 0.9 (300 trials: standard error about 0.004); not trivially wide:
    # below 0.9 + 2 / (n + 1) (the conformal risk control upper bound for continuous scores)
    assert 0.9 - 0.012 <= float(np.mean(coverage)) <= 1.0
    assert float(np.mean(coverage)) < 0.9 + 2 / 20
    assert float(np.mean(raw)) < 0.45  # the std understated three times: m +- 1.645 s covers about 38 %


def test_residual_method_and_deterministic_samplers_use_the_floor():
    rng = np.random.default_rng(1)
    mean, std, target = _slices(rng, 30)
    cal = fit_conformal(mean, np.zeros_like(std), target, levels=(0.9,), method="std", region="all", floor=0.05)
    half = cal.half_width(np.zeros((1, 16, 16)), 0.9)
    assert np.allclose(half, cal.lams["0.9"] * 0.05)
    resid = fit_conformal(mean, std, target, levels=(0.9,), method="residual", region="all", floor=0.05)
    assert resid.lams == cal.lams  # std is ignored by the residual method


def test_calibration_file_round_trip_and_bad_files(tmp_path):
    rng = np.random.default_rng(2)
    cal = fit_conformal(*_slices(rng, 20), provenance={"sampler": "dps"})
    path = cal.save(tmp_path / "cal.json")
    again = load_calibration(path)
    assert again == cal and set(again.lams) == {"0.5", "0.9", "0.95"} and again.slices == 20
    bad = tmp_path / "bad.json"
    for content, match in ((json.dumps({"lams": {"0.9": 1.0}}), "format"),
                           (json.dumps({"format": "invdiff-conformal-1", "lams": {"0.9": -1.0}, "floor": 0.1}), "lams"),
                           (json.dumps({"format": "invdiff-conformal-1", "floor": 0.1}), "bad calibration entry"),
                           ("{not json", "not a readable")):
        bad.write_text(content)
        with pytest.raises(ValueError, match=match):
            load_calibration(bad)
    with pytest.raises(KeyError, match="levels"):
        ConformalCalibration({"0.9": 1.0}, 0.1).half_width(np.ones((1, 2, 2)), 0.5)
    with pytest.raises(ValueError, match="one \\(slices, h, w\\) shape"):
        fit_conformal(np.ones((2, 3, 3)), np.ones((2, 3, 3)), np.ones((2, 3, 4)))
