"""Calibrated pixel-wise intervals from any sampler: conformal risk control on calibration slices.

A sampler's particles give each pixel a centre ``m`` (the weighted mean) and a spread ``s`` (the
weighted std, in image units). Uncalibrated, ``m ± z s`` covers whatever the sampler's spread happens
to cover (measured: 15 % to 51 % for nominal 50 %). This module scales the spread so that a chosen
fraction of pixels is covered, with a finite-sample guarantee, whatever the sampler:

    C_p(lam) = [m_p - lam (s_p + floor),  m_p + lam (s_p + floor)]

``lam`` is fitted per level by *conformal risk control* (Angelopoulos, Bates, Fisch, Lei and Schuster,
ICLR 2024, "Conformal Risk Control"), the finite-sample form of the risk-controlling intervals that
Angelopoulos et al. (ICML 2022, "Image-to-Image Regression with Distribution-Free Uncertainty
Quantification") and K-RCPS (Teneggi et al., ICML 2023) build for image-to-image and diffusion models.
The loss of a slice is the fraction of its pixels (in the region scored) outside ``C(lam)``, which is
bounded by 1 and does not increase with ``lam``. With ``n`` calibration slices,

    lam_hat = min { lam : n / (n + 1) * mean_i L_i(lam) + 1 / (n + 1) <= alpha },    alpha = 1 - level

and for a new slice exchangeable with them ``E[L_{n+1}(lam_hat)] <= alpha``: its expected pixel
coverage is at least ``level``. The guarantee is on the expected fraction of pixels covered per slice
(not on every pixel, not on every slice), and only for data like the calibration slices: the same
sampler, settings, operator, acceleration and intensity scale. It needs ``n >= 1 / alpha - 1``
slices (9 for 90 %, 19 for 95 %); fewer is refused. ``floor`` (default 1 % of the calibration targets'
mean maximum) keeps the interval from collapsing where the particles agree, and makes the method work
for deterministic samplers (``s = 0``: a constant half-width ``lam * floor``).

``method="residual"`` ignores ``s`` (half-width ``lam * floor``, one width for every pixel): the
baseline that shows what the sampler's spread adds. :func:`conformal_report` scores intervals
against held-out targets: coverage and mean half-width, before and after calibration.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from invdiff.io import atomic_write_text

__all__ = ["CALIBRATION_FORMAT", "ConformalCalibration", "conformal_report", "fit_conformal", "load_calibration",
           "paired_slices", "region_mask", "risk_control_threshold"]

CALIBRATION_FORMAT = "invdiff-conformal-1"
Method = Literal["std", "residual"]
Region = Literal["object", "all"]


def _scale(std: np.ndarray, floor: float, method: Method) -> np.ndarray:
    """The interval's unit half-width per pixel: ``std + floor`` (``"std"``) or ``floor`` (``"residual"``)."""
    std = np.asarray(std)
    return (std if method == "std" else np.zeros_like(std)) + floor


def region_mask(target: np.ndarray, region: Region, fraction: float = 0.05) -> np.ndarray:
    """``(S, h, w)`` bool: every pixel (``"all"``) or the object, the pixels whose target exceeds
    ``fraction`` of its slice's maximum (``"object"``; outside it the target is noise)."""
    if region == "all":
        return np.ones(target.shape, dtype=bool)
    return target > fraction * target.reshape(target.shape[0], -1).max(axis=1).reshape(-1, 1, 1)


def risk_control_threshold(scores: list[np.ndarray], alpha: float) -> float:
    """The smallest ``lam`` with ``n/(n+1) mean_i L_i(lam) + 1/(n+1) <= alpha``, where ``L_i(lam)`` is the
    fraction of slice ``i``'s ``scores`` above ``lam`` (module docstring).

    ``ValueError`` when ``n < 1/alpha - 1`` (no finite ``lam`` exists) or a slice has no pixel.
    """
    n = len(scores)
    budget = ((n + 1) * alpha - 1) / n if n else -1.0
    if budget < -1e-12:  # alpha = 1 - 0.9 is 0.09999999999999998: n = 9 is enough for 90 %
        raise ValueError(f"conformal risk control at level {1 - alpha:g} needs at least {math.ceil(1 / alpha - 1 - 1e-9)} "
                         f"calibration slices, got {n}")
    if any(s.size == 0 for s in scores):
        raise ValueError("a calibration slice has no pixel in the scored region")
    values = np.concatenate([s.ravel() for s in scores])
    weights = np.concatenate([np.full(s.size, 1.0 / (n * s.size)) for s in scores])
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    # risk at lam = values[k]: the weight of the scores strictly above it (ties included at the last copy)
    above = weights.sum() - np.cumsum(weights)
    last_of_tie = np.r_[values[1:] != values[:-1], True]
    ok = np.flatnonzero(last_of_tie & (above <= max(budget, 0.0) + 1e-12))
    return float(values[ok[0]]) if ok.size else float(values[-1])


@dataclass(frozen=True)
class ConformalCalibration:
    """Fitted interval scales (module docstring), saved as a small JSON file.

    Attributes:
        lams: ``{level: lam}``, levels as strings (``"0.9"``).
        floor: the scale floor, in image units.
        method: ``"std"`` or ``"residual"``.
        region: the pixels the guarantee is about (``"object"`` or ``"all"``).
        slices: calibration slices used; ``provenance``: where they came from (free-form).
    """

    lams: dict[str, float]
    floor: float
    method: Method = "std"
    region: Region = "object"
    slices: int = 0
    provenance: dict = field(default_factory=dict)

    def half_width(self, std: np.ndarray, level: float | str) -> np.ndarray:
        """The calibrated half-width at ``level`` for spreads ``std`` (image units)."""
        key = _level_key(level)
        if key not in self.lams:
            raise KeyError(f"this calibration has levels {sorted(self.lams)}, not {key}")
        return self.lams[key] * _scale(std, self.floor, self.method)

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, json.dumps({"format": CALIBRATION_FORMAT, **asdict(self)}, indent=2) + "\n")


def _level_key(level: float | str) -> str:
    return f"{float(level):g}"


def fit_conformal(means: np.ndarray, stds: np.ndarray, targets: np.ndarray, levels: tuple[float, ...] = (0.5, 0.9, 0.95),
                  method: Method = "std", region: Region = "object", floor: float | None = None,
                  provenance: dict | None = None) -> ConformalCalibration:
    """Fit ``lam`` per level on calibration slices ``(S, h, w)`` (posterior means, stds, targets; image units)."""
    means, stds, targets = (np.asarray(a, dtype=np.float64) for a in (means, stds, targets))
    if not means.shape == stds.shape == targets.shape or means.ndim != 3:
        raise ValueError(f"means, stds and targets must share one (slices, h, w) shape, got {means.shape}, "
                         f"{stds.shape}, {targets.shape}")
    if method not in ("std", "residual"):
        raise ValueError(f"method must be 'std' or 'residual', got {method!r}")
    if region not in ("object", "all"):
        raise ValueError(f"region must be 'object' or 'all', got {region!r}")
    if floor is None:
        floor = 0.01 * float(targets.reshape(targets.shape[0], -1).max(axis=1).mean())
    if not floor > 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    mask = region_mask(targets, region)
    scores = np.abs(targets - means) / _scale(stds, floor, method)
    per_slice = [scores[i][mask[i]] for i in range(scores.shape[0])]
    lams = {_level_key(a): risk_control_threshold(per_slice, 1.0 - float(a)) for a in levels}
    return ConformalCalibration(lams, float(floor), method, region, int(means.shape[0]), dict(provenance or {}))


def load_calibration(path: str | os.PathLike) -> ConformalCalibration:
    """Read a calibration file; ``ValueError`` naming the file and the key when it is not one."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable calibration file: {err}") from None
    if not isinstance(raw, dict) or raw.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"{path}: 'format' must be {CALIBRATION_FORMAT!r} (written by invdiff calibrate)")
    try:
        lams = {_level_key(k): float(v) for k, v in raw["lams"].items()}
        cal = ConformalCalibration(lams, float(raw["floor"]), raw.get("method", "std"), raw.get("region", "object"),
                                   int(raw.get("slices", 0)), dict(raw.get("provenance", {})))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: bad calibration entry: {err!r}") from None
    if cal.method not in ("std", "residual") or cal.region not in ("object", "all"):
        raise ValueError(f"{path}: unknown method {cal.method!r} or region {cal.region!r}")
    if not lams or not all(math.isfinite(v) and v >= 0 for v in lams.values()) or not cal.floor > 0:
        raise ValueError(f"{path}: 'lams' must be finite and >= 0 and 'floor' > 0")
    return cal


def conformal_report(calibration: ConformalCalibration, means: np.ndarray, stds: np.ndarray,
                     targets: np.ndarray) -> dict[str, dict[str, float]]:
    """Per level, on held-out slices: the calibrated intervals' coverage (fraction of pixels in the
    calibration's region inside them, averaged over slices as the guarantee is stated), their mean
    half-width, and the uncalibrated ``m ± z s`` (Gaussian quantile ``z``) coverage beside them."""
    from statistics import NormalDist

    means, stds, targets = (np.asarray(a, dtype=np.float64) for a in (means, stds, targets))
    mask = region_mask(targets, calibration.region)
    out = {}
    for key in calibration.lams:
        half = calibration.half_width(stds, key)
        z = NormalDist().inv_cdf(0.5 + float(key) / 2)
        inside = np.abs(targets - means) <= half
        raw = np.abs(targets - means) <= z * stds
        out[key] = {"coverage": float(np.mean([inside[i][mask[i]].mean() for i in range(len(mask))])),
                    "half_width": float(np.mean([half[i][mask[i]].mean() for i in range(len(mask))])),
                    "uncalibrated_coverage": float(np.mean([raw[i][mask[i]].mean() for i in range(len(mask))]))}
    return out


def paired_slices(targets: str | os.PathLike, predictions: str | os.PathLike, challenge: str = "multicoil"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(means, stds, targets, names)`` of every solved slice in a folder of prediction files written by
    ``invdiff reconstruct`` (``reconstruction`` and ``reconstruction_std``) and their fastMRI targets
    (``reconstruction_rss``, or ``reconstruction_esc`` for ``"singlecoil"``), paired by file name as
    :func:`~invdiff.metrics.evaluate_predictions` pairs them; only the slices a run solved (its
    ``slices`` attribute) count. Errors name the file and the key."""
    from invdiff.datasets.errors import DataFormatError
    from invdiff.datasets.fastmri import prediction_slices, read_prediction
    from invdiff.metrics.evaluate import paired_files, target_key

    key = target_key(challenge)
    means, stds, truths, names = [], [], [], []
    for path, _, target, pred_path in paired_files(targets, predictions, key):
        mean, std = read_prediction(pred_path), read_prediction(pred_path, "reconstruction_std")
        solved = prediction_slices(pred_path) or list(range(target.shape[0]))
        if max(solved) >= target.shape[0] or mean.shape[0] not in (len(solved), target.shape[0]) \
                or mean.shape[1:] != target.shape[1:] or std.shape != mean.shape:
            raise DataFormatError(f"{pred_path}: reconstruction {mean.shape} (slices {solved}) does not match the "
                                  f"target {key} {target.shape} of {path}")
        rows = solved if mean.shape[0] == target.shape[0] else list(range(len(solved)))  # a full stack or the solved ones
        means.append(mean[rows])
        stds.append(std[rows])
        truths.append(target[solved])
        names += [f"{path.name}:{s}" for s in solved]
    if not names:
        raise DataFormatError(f"{targets}: no target file found")
    return np.concatenate(means), np.concatenate(stds), np.concatenate(truths), names
