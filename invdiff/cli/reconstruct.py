"""``invdiff reconstruct``: the parser and the handler."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict

from invdiff.cli.settings import parse_overrides
from invdiff.problems.spec import OPERATORS, ProblemSpec

EPILOG = """examples:
  invdiff reconstruct demo --out outputs/recon                       # the embedded scan, RED-Diff, 4x
  invdiff reconstruct file_brain_AXT2_200_2000019.h5 --sampler dps --particles 8 --acceleration 8
  invdiff reconstruct head.nii.gz --operator mri --slices 90,100 --sampler tds --particles 8
  invdiff reconstruct ct_series/ --operator ct --views 30 --sampler diffpir
  invdiff reconstruct shepp-logan --operator ct --views 60 --angle-range 120   # limited angle

samplers: dps, dps-ddim, red-diff, diffpir, ddrm, tds, afe, afe-ode, prior, prior-is, and the baselines
zero-filled, fbp, cg, tv. Each has default settings per problem family (mri, ct, image), chosen on
validation data and recorded with their provenance in invdiff/problems/defaults.toml; change one with
--set KEY=VALUE (e.g. --set lam=128).
An interrupted run resumes: run the same command again."""

log = logging.getLogger("invdiff.reconstruct")


def slice_list(text: str) -> tuple[int, ...]:
    """``"3"``, ``"0,2,5"`` or ``"2:6"`` (a half-open range)."""
    try:
        if ":" in text:
            a, b = text.split(":")
            return tuple(range(int(a), int(b)))
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"slices: expected 'K', 'K,L,...' or 'A:B', got {text!r}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help="reconstruct a fastMRI file, NIfTI/DICOM volume or phantom with a "
                       "diffusion-prior sampler", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Reconstruct INPUT (a multi-coil fastMRI .h5, 'demo', a NIfTI file, a DICOM CT "
                       "series or 'shepp-logan'; volumes have their measurement simulated). Writes a fastMRI "
                       "prediction file, NIfTI mean and std volumes, a PNG per slice and a JSON of metrics, "
                       "settings and timings.", epilog=EPILOG)
    p.add_argument("input")
    p.add_argument("--out", default="outputs/recon", help="output folder (default outputs/recon)")
    g = p.add_argument_group("sampler")
    g.add_argument("--sampler", default="red-diff", help="sampler name (default red-diff; see below)")
    g.add_argument("--prior", default=None, help="shipped prior name or prior.pt (default: the operator's shipped prior)")
    g.add_argument("--steps", type=int, default=100, help="steps = network evaluations (default 100)")
    g.add_argument("--particles", type=int, default=1, help="particles per slice (default 1)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a sampler setting (repeatable)")
    m = p.add_argument_group("measurement")
    m.add_argument("--operator", choices=OPERATORS, default="auto",
                   help="auto: mri for .h5/NIfTI, ct for DICOM and shepp-logan")
    m.add_argument("--mask", choices=["equispaced_fraction", "equispaced", "random"], default="equispaced_fraction")
    m.add_argument("--acceleration", type=float, default=4.0)
    m.add_argument("--center-fraction", type=float, default=0.08)
    m.add_argument("--views", type=int, default=60, help="CT views (default 60)")
    m.add_argument("--geometry", choices=["parallel", "fan"], default="parallel")
    m.add_argument("--angle-range", type=float, default=180.0, help="CT angular range in degrees; < 180 is limited-angle")
    m.add_argument("--noise-sigma", type=float, default=None, help="simulated noise std (default 0.1 CT, 0.02 blur/inpaint)")
    m.add_argument("--blur-std", type=float, default=2.0)
    m.add_argument("--box", type=int, default=32, help="inpainting: side of the removed centre square")
    m.add_argument("--snr-db", type=float, default=30.0, help="simulated MRI k-space SNR")
    r = p.add_argument_group("run")
    r.add_argument("--slices", type=slice_list, default=None, help="'K', 'K,L' or 'A:B' (default: all)")
    r.add_argument("--batch-slices", type=int, default=None, help="slices per sampler run (default: all at once)")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    r.add_argument("--force", action="store_true", help="discard a previous run in --out with other settings")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from invdiff.problems import open_source, sampler_settings
    from invdiff.reconstruct import ReconSettings, format_summary, reconstruct, write_outputs

    start = time.perf_counter()
    try:
        spec = ProblemSpec(operator=args.operator, mask=args.mask, acceleration=args.acceleration,
                           center_fraction=args.center_fraction, views=args.views, geometry=args.geometry,
                           angle_range=args.angle_range, noise_sigma=args.noise_sigma, blur_std=args.blur_std,
                           box=args.box, snr_db=args.snr_db, seed=args.seed)
        settings = ReconSettings(sampler=args.sampler, nfe=args.steps, particles=args.particles, seed=args.seed,
                                 overrides=parse_overrides(args.set), prior=args.prior, slices=args.slices,
                                 batch_slices=args.batch_slices, device=args.device)
        inp = open_source(args.input, spec, args.out)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise SystemExit(f"invdiff reconstruct: {err}") from None
    opened = time.perf_counter()
    try:
        results = reconstruct(inp, settings, args.out, problem_spec=asdict(spec), force=args.force,
                              progress=not args.quiet, log=log.info)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise SystemExit(f"invdiff reconstruct: {err}") from None
    recorded = {**asdict(settings), "slices": results.slices, "particles": results.particles,
                "sampler_settings": sampler_settings(settings.sampler, inp.family, settings.overrides),
                "prior": settings.prior or inp.prior_name, "problem": asdict(spec)}
    summary = write_outputs(results, inp, recorded, args.out,
                            {"open_s": round(opened - start, 2), "total_s": round(time.perf_counter() - start, 2)})
    print(format_summary(summary))
    print(f"outputs in {args.out}: " + ", ".join(summary["outputs"]))
    return 0
