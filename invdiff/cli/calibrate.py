"""``invdiff calibrate``: fit calibrated pixel intervals (conformal risk control) on reconstructed slices
with known targets, for ``invdiff reconstruct --calibration``."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  invdiff reconstruct calibration_val/ --sampler dps --particles 8 --out outputs/calib
  invdiff calibrate calibration_val/ outputs/calib/reconstructions --out calibration.json
  invdiff reconstruct test_file.h5 --sampler dps --particles 8 --calibration calibration.json

Every solved slice of the prediction files (reconstruction and reconstruction_std, as invdiff
reconstruct writes them) is a calibration slice, scored against its target. For each level the
interval mean +- lam (std + floor) is fitted so that, on new slices like these (same sampler, settings,
operator and intensity scale), the expected fraction of pixels covered is at least the level
(invdiff.metrics.conformal). Needs at least 1/(1 - level) - 1 slices (9 for 0.9, 19 for 0.95)."""


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="fit calibrated pixel intervals on reconstructed slices with targets "
                       "(conformal risk control)", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Fit the interval scales of the predictions in PREDICTIONS against the targets "
                       "in TARGETS and write a calibration file.", epilog=EPILOG)
    p.add_argument("targets", help="a folder (or file) of fastMRI files holding the targets")
    p.add_argument("predictions", help="the reconstructions folder of invdiff reconstruct runs on them")
    p.add_argument("--out", required=True, help="the calibration file to write (.json)")
    p.add_argument("--levels", type=float, nargs="+", default=[0.5, 0.9, 0.95], help="coverage levels in (0, 1)")
    p.add_argument("--method", choices=["std", "residual"], default="std",
                   help="std: half-width lam (std + floor); residual: lam floor everywhere (default std)")
    p.add_argument("--region", choices=["object", "all"], default="object",
                   help="pixels the guarantee is about: the object (target > 5%% of its slice maximum) or all")
    p.add_argument("--floor", type=float, default=None,
                   help="scale floor in image units (default 1%% of the targets' mean maximum)")
    p.add_argument("--challenge", choices=["multicoil", "singlecoil"], default="multicoil")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from invdiff.metrics.conformal import conformal_report, fit_conformal, paired_slices

    if not all(0 < a < 1 for a in args.levels):
        raise ValueError(f"--levels must lie in (0, 1), got {args.levels}")
    if Path(args.out).suffix != ".json":
        raise ValueError(f"--out must name a .json file, got {args.out}")
    means, stds, targets, names = paired_slices(args.targets, args.predictions, args.challenge)
    cal = fit_conformal(means, stds, targets, tuple(args.levels), args.method, args.region, args.floor,
                        provenance={"targets": str(args.targets), "predictions": str(args.predictions),
                                    "challenge": args.challenge, "slices": names})
    report = conformal_report(cal, means, stds, targets)
    print(f"{cal.slices} calibration slices, method {cal.method}, region {cal.region}, floor {cal.floor:.4g}")
    print(f"{'level':>6} {'lam':>9} {'half-width':>11} {'coverage here':>14} {'uncalibrated':>13}")
    for key, lam in cal.lams.items():
        r = report[key]
        print(f"{key:>6} {lam:>9.4g} {r['half_width']:>11.4g} {r['coverage']:>14.3f} {r['uncalibrated_coverage']:>13.3f}")
    print(f"written: {cal.save(args.out)}")
    return 0
