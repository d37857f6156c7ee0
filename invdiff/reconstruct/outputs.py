"""What ``invdiff reconstruct`` writes, every file atomically.

=================================  ===========================================================
``reconstructions/NAME.h5``        fastMRI prediction file (``reconstruction``: the posterior
                                   mean's magnitude, ``(S, h, w)``; ``reconstruction_std``: the
                                   pixel-wise posterior std, for ``invdiff calibrate``), named like
                                   the input so fastMRI's ``evaluate.py`` and
                                   :func:`evaluate_predictions` pair it
``NAME_interval{L}.nii.gz``        with ``--calibration``: the calibrated interval's half-width at
                                   level ``L`` % (:mod:`invdiff.metrics.conformal`), beside the mean
``NAME_mean.nii.gz``               the mean as a NIfTI volume, and the pixel-wise posterior std: for
``NAME_std.nii.gz``                NIfTI and DICOM inputs on the input's own grid and affine (resampled
                                   back from the prior's size; slices not solved are 0), so they
                                   overlay the input; otherwise axial RAS+ on the solved grid
``figures/NAME_slice_K.png``       target (when known), baseline, mean, std (several particles),
                                   |error|, with colour bars on the std and error panels; with
                                   ``--calibration``, the calibrated 90 % half-width (or the
                                   calibration's highest level) and, with a target, the pixels
                                   whose error exceeds it
``figures/NAME_calibration.png``   with a target and several particles: the volume's coverage
                                   against the nominal level, the particles' credible intervals
                                   and, with ``--calibration``, the calibrated intervals
``NAME.json``                      metrics (fastMRI definitions) of the mean and the baseline,
                                   coverage, settings, costs, timings and ``warnings``: a mean that
                                   scores below the baseline, a budget outside the range the
                                   sampler's defaults were tuned at, a magnitude far above the
                                   data's scale
=================================  ===========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from invdiff.io import atomic_write_json
from invdiff.plots import calibration_figure, slice_figure
from invdiff.problems import ProblemSource, default_entry
from invdiff.reconstruct.job import SliceResults
from invdiff.samplers.registry import SAMPLERS

__all__ = ["format_summary", "run_warnings", "scale_warnings", "write_outputs"]


def _volume_metrics(target: np.ndarray | None, recon: np.ndarray) -> dict[str, float] | None:
    from invdiff.metrics import fastmri_volume_metrics

    return None if target is None else fastmri_volume_metrics(target, recon)


def write_outputs(results: SliceResults, inp: ProblemSource, settings: dict[str, Any], out_dir: str | Path,
                  timings: dict[str, float], calibration=None) -> dict[str, Any]:
    """Write the files of the module table; return the JSON summary. ``calibration``: a
    :class:`~invdiff.metrics.conformal.ConformalCalibration` whose intervals are written and, with a
    target, scored (``metrics.calibrated_intervals``)."""
    from invdiff.datasets import save_nifti, slices_to_volume, write_prediction

    out = Path(out_dir)
    name, sampler = inp.name, settings["sampler"]
    write_prediction(out / "reconstructions" / f"{name}.h5", results.mean,
                     attrs={"method": f"invdiff {sampler}", "slices": np.asarray(results.slices)}, std=results.std)
    affine = np.diag([*inp.voxel_mm, 1.0])
    volumes = [("mean", results.mean), ("std", results.std)]
    calibrated = None
    if calibration is not None:
        volumes += [(f"interval{round(100 * float(level))}", calibration.half_width(results.std, level).astype(np.float32))
                    for level in calibration.lams]
        calibrated = _calibrated(calibration, results)
    for key, arr in volumes:
        path = out / f"{name}_{key}.nii.gz"
        if inp.grid is not None:
            stack = np.zeros((inp.num_slices, *inp.grid.slice_shape), dtype=np.float32)
            stack[results.slices] = inp.grid.from_resampled(arr)
            inp.grid.write(path, stack)
        else:
            save_nifti(path, slices_to_volume(arr, "axial"), affine=affine)
    shown_level = None if calibration is None else ("0.9" if "0.9" in calibration.lams
                                                     else max(calibration.lams, key=float))
    for i, s in enumerate(results.slices):
        panels = [] if results.target is None else [("target", results.target[i], "image")]
        panels += [(results.info["baseline"], results.baseline[i], "image"), (f"{sampler} mean", results.mean[i], "image")]
        if results.particles > 1:
            panels.append((f"posterior std ({results.particles} particles)", results.std[i], "std"))
        if results.target is not None:
            panels.append(("|mean - target|", np.abs(results.mean[i] - results.target[i]), "error"))
        if shown_level is not None:
            half = calibration.half_width(results.std[i:i + 1], shown_level)[0]
            percent = round(100 * float(shown_level))
            panels.append((f"calibrated {percent} % half-width", half, "std"))
            if results.target is not None:
                outside = np.abs(results.mean[i] - results.target[i]) > half
                panels.append((f"error beyond it ({100 * outside.mean():.1f} % of pixels)", outside, "mask"))
        slice_figure(out / "figures" / f"{name}_slice_{s:03d}.png", panels, f"{name} slice {s}: {sampler}")
    if results.target is not None and results.coverage:
        curves = {"particles' credible intervals (all pixels)": {float(a): v for a, v in results.coverage.items()}}
        if calibrated is not None:
            curves[f"calibrated intervals ({calibration.region} pixels)"] = {
                float(a): v["coverage"] for a, v in calibrated["on_these_slices"].items()}
        calibration_figure(out / "figures" / f"{name}_calibration.png", curves,
                           f"{name}: coverage over {len(results.slices)} slice(s)", ylabel="fraction of pixels covered")
    metrics = {"mean": _volume_metrics(results.target, results.mean),
               results.info["baseline"]: _volume_metrics(results.target, results.baseline)}
    summary = {
        "input": {"name": name, "path": None if inp.path is None else str(inp.path), "operator": inp.operator,
                  "slices": results.slices, "voxel_mm": list(inp.voxel_mm), "pixel_mm": inp.pixel_mm,
                  "content_key": inp.content_key,
                  "volumes_on": "the input's grid and affine" if inp.grid is not None else "the solved grid"},
        "measurement": results.info,
        "settings": settings,
        "metrics": {**metrics, "credible_interval_coverage": results.coverage,
                    **({"calibrated_intervals": calibrated} if calibrated is not None else {})},
        "warnings": results.info.get("prior_warnings", [])
                    + run_warnings(metrics, results.info["baseline"], settings, inp.family)
                    + scale_warnings(results, sampler),
        "costs": {"network_evals": results.network_evals, "vjps": results.vjps,
                  "sampler_wall_time_s": round(results.wall_time_s, 2), "ess": results.ess, **timings},
        "outputs": sorted({str(p.relative_to(out)) for p in out.rglob("*")
                           if p.is_file() and not p.name.startswith(".") and p.parent.name != "parts"}
                          | {f"{name}.json"}),
    }
    atomic_write_json(out / f"{name}.json", summary)
    return summary


def _calibrated(calibration, results: SliceResults) -> dict[str, Any]:
    """The calibration applied (levels, lam, its provenance) and, with a target, each level's coverage
    and mean half-width on these slices beside the uncalibrated ``mean ± z std``."""
    from invdiff.metrics.conformal import conformal_report

    out: dict[str, Any] = {"lams": calibration.lams, "floor": calibration.floor, "method": calibration.method,
                           "region": calibration.region, "calibration_slices": calibration.slices,
                           "provenance": calibration.provenance}
    if results.target is not None:
        out["on_these_slices"] = conformal_report(calibration, results.mean, results.std, results.target)
    return out


def run_warnings(metrics: dict[str, Any], baseline: str, settings: dict[str, Any], family: str) -> list[str]:
    """What a person should know before trusting a result: a diffusion sampler's mean that scores below
    the classical baseline (PSNR against the target), and a budget outside half to four times the one the sampler's
    defaults were tuned at (the defaults chosen nearest the run's budget; when the run does not set its own)."""
    warnings = []
    mean, base = metrics.get("mean"), metrics.get(baseline)
    if mean and base and mean["PSNR"] < base["PSNR"] and SAMPLERS[settings["sampler"]].uses_prior:
        warnings.append(f"the {settings['sampler']} mean scores {mean['PSNR']:.2f} dB PSNR, below the {baseline} "
                        f"baseline's {base['PSNR']:.2f} dB: check its settings (--set) and budget (--steps)")
    entry = default_entry(settings["sampler"], family, settings.get("nfe"))
    if entry is not None and entry.nfe and not settings.get("overrides") and not (
            entry.nfe / 2 <= settings["nfe"] <= 4 * entry.nfe):
        warnings.append(f"{settings['sampler']}'s settings for {family} problems were tuned at {entry.nfe} network "
                        f"evaluations; this run used {settings['nfe']}, outside [{entry.nfe // 2}, {4 * entry.nfe}]")
    return warnings


def scale_warnings(results: SliceResults, sampler: str, factor: float = 1.5) -> list[str]:
    """A warning when the mean's magnitude (its 99.9th percentile) exceeds ``factor`` times the data's
    scale: the target's maximum, or without a target the baseline's 99.9th percentile (noise amplified
    by too many iterations, a diverging step size)."""
    top = float(np.percentile(results.mean, 99.9))
    if results.target is not None:
        reference, what = float(np.max(results.target)), "the target's maximum"
    else:
        reference, what = float(np.percentile(results.baseline, 99.9)), f"the {results.info['baseline']} image's"
    if reference > 0 and top > factor * reference:
        return [f"the {sampler} mean reaches {top:.3g} (99.9th percentile), {top / reference:.1f} times {what} "
                f"({reference:.3g}): noise amplified? (fewer iterations, --set discrepancy=1.0 for cg)"]
    return []


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    m, c = summary["metrics"], summary["costs"]
    s = summary["settings"]
    lines = [f"{summary['input']['name']}: {len(summary['input']['slices'])} slice(s), {s['sampler']} "
             f"({s['nfe']} steps, {s['particles']} particle(s)), {c['network_evals']} network evaluations, "
             f"{c['sampler_wall_time_s']} s"]
    for key, value in m.items():
        if key not in ("credible_interval_coverage", "calibrated_intervals") and value is not None:
            lines.append(f"  {key:>18}: NMSE {value['NMSE']:.4f}  PSNR {value['PSNR']:.2f} dB  SSIM {value['SSIM']:.4f}")
    if m["credible_interval_coverage"]:
        cov = ", ".join(f"{float(a):.0%}: {v:.3f}" for a, v in m["credible_interval_coverage"].items())
        lines.append(f"  credible-interval coverage (nominal: observed) {cov}")
    on_slices = m.get("calibrated_intervals", {}).get("on_these_slices")
    if on_slices:
        cov = ", ".join(f"{float(a):.0%}: {r['coverage']:.3f} (half-width {r['half_width']:.3g})" for a, r in on_slices.items())
        lines.append(f"  calibrated-interval coverage (nominal: observed) {cov}")
    lines += [f"  warning: {w}" for w in summary.get("warnings", [])]
    return "\n".join(lines)
