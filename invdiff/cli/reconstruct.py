"""``invdiff reconstruct``: the parser and the handler."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from invdiff.cli.options import (
    check_device,
    check_output_folder,
    finite_float,
    nonnegative_int,
    positive_float,
    positive_int,
)
from invdiff.cli.settings import parse_overrides
from invdiff.problems.spec import DEFAULT_ESPIRIT_CROP, OPERATORS, ProblemSpec, resolve_operator

EPILOG = """examples:
  invdiff reconstruct demo --out outputs/recon                       # the embedded scan, RED-Diff, 4x
  invdiff reconstruct file_brain_AXT2_200_2000019.h5 --sampler dps --particles 8 --acceleration 8
  invdiff reconstruct multicoil_val/ --out outputs/val --sampler cg     # every file; then invdiff evaluate
  invdiff reconstruct head.nii.gz --operator mri --slices 90,100 --sampler tds --particles 8
  invdiff reconstruct ct_series/ --operator ct --views 30 --sampler diffpir
  invdiff reconstruct shepp-logan --operator ct --views 60 --angle-range 120   # limited angle
  invdiff reconstruct head_ct.nii.gz --operator ct --views 36 --volume --sampler dds-volume --slices 40:104

samplers: dps, dps-ddim, red-diff, dds, daps, pnp-dm, pigdm, diffpir, ddrm, tds, afe, afe-ode, prior, prior-is,
the volume samplers (with --volume) dds-volume, diffusion-mbir, tv-3d, and the baselines
zero-filled, fbp (filtered back-projection, CT), lsq (least squares), cg, tv, l1-wavelet. Each has default settings per problem family (mri, ct, image), chosen on
validation data and recorded with their provenance in invdiff/problems/defaults.toml; change one with
--set KEY=VALUE (e.g. --set lam=128).
An interrupted run resumes: run the same command again. Finished slice groups are reused only when the
input's bytes and every problem and sampler setting match; otherwise the run is refused without --force."""

log = logging.getLogger("invdiff.reconstruct")


def slice_list(text: str) -> tuple[int, ...]:
    """``"3"``, ``"0,2,5"`` or ``"2:6"`` (a half-open range): distinct slice indices >= 0."""
    try:
        if ":" in text:
            a, b = text.split(":")
            slices = tuple(range(int(a), int(b)))
        else:
            slices = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'K', 'K,L,...' or 'A:B', got {text!r}") from None
    if not slices:
        raise argparse.ArgumentTypeError(f"{text!r} names no slice")
    if min(slices) < 0:
        raise argparse.ArgumentTypeError(f"slice indices are >= 0, got {text!r}")
    if len(set(slices)) != len(slices):
        raise argparse.ArgumentTypeError(f"{text!r} names a slice twice")
    return slices


def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help="reconstruct a fastMRI file, NIfTI/DICOM volume or phantom with a "
                       "diffusion-prior sampler", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Reconstruct INPUT (a multi- or single-coil fastMRI .h5, a folder of them, "
                       "'demo', a NIfTI file, a DICOM CT series or 'shepp-logan'; volumes have their measurement "
                       "simulated). A folder of .h5 files is reconstructed file by file into OUT/volumes/NAME, with "
                       "the predictions in OUT/reconstructions (fastMRI's submission layout). Writes a fastMRI "
                       "prediction file, NIfTI mean and std volumes, a PNG per slice and a JSON of metrics, "
                       "settings and timings.", epilog=EPILOG)
    p.add_argument("input")
    p.add_argument("--out", default="outputs/recon", help="output folder (default outputs/recon)")
    g = p.add_argument_group("sampler")
    g.add_argument("--sampler", default="red-diff", help="sampler name (default red-diff; see below)")
    g.add_argument("--prior", default=None, help="shipped prior name or prior.pt (default: the operator's shipped prior)")
    g.add_argument("--steps", type=positive_int, default=100, help="steps = network evaluations (default 100)")
    g.add_argument("--particles", type=positive_int, default=1, help="particles per slice (default 1)")
    g.add_argument("--seed", type=nonnegative_int, default=0)
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a sampler setting (repeatable)")
    m = p.add_argument_group("measurement")
    m.add_argument("--operator", choices=OPERATORS, default="auto",
                   help="auto: mri for .h5/NIfTI, ct for DICOM and shepp-logan")
    m.add_argument("--mask", choices=["equispaced_fraction", "equispaced", "random"], default="equispaced_fraction")
    m.add_argument("--acquisition", choices=["2d", "3d"], default="2d",
                   help="MRI: 2d (a mask over columns, per slice) or 3d (k-space transformed along the slices, a "
                        "Poisson-disc mask over (kz, ky); needs --volume)")
    m.add_argument("--acceleration", type=finite_float, default=4.0, help="MRI acceleration, 1 to 32 (default 4)")
    m.add_argument("--center-fraction", type=finite_float, default=0.08, help="fully sampled centre (default 0.08)")
    m.add_argument("--views", type=positive_int, default=60, help="CT views (default 60)")
    m.add_argument("--geometry", choices=["parallel", "fan"], default="parallel")
    m.add_argument("--angle-range", type=finite_float, default=180.0, help="CT angular range in degrees; < 180 is limited-angle")
    m.add_argument("--noise-sigma", type=positive_float, default=None, help="simulated noise std (default 0.1 CT, 0.02 blur/inpaint)")
    m.add_argument("--blur-std", type=positive_float, default=2.0)
    m.add_argument("--box", type=positive_int, default=32, help="inpainting: side of the removed centre square")
    m.add_argument("--support-margin", type=int, default=0, metavar="PIXELS",
                   help="keep the ESPIRiT coil maps this many pixels beyond their thresholded support (default 0): "
                        "recovers faint anatomy at the object's edge that the threshold cuts; the JSON reports the "
                        "support and the target's energy outside it")
    m.add_argument("--calib-rows", type=nonnegative_int, default=0, metavar="ROWS",
                   help="calibrate ESPIRiT on the centre columns over ROWS readout rows (the readout is fully "
                        "sampled) instead of a square of the centre's width (default 0: the square); at 8x a "
                        "square of 10 lines is a coarse calibration (docs/guide/reconstruct.md)")
    m.add_argument("--espirit-crop", type=finite_float, default=DEFAULT_ESPIRIT_CROP, metavar="EIGENVALUE",
                   help="keep the ESPIRiT maps where their eigenvalue exceeds this, in (0, 1) (default 0.95; with "
                        "--calib-rows the eigenvalues are sharper: 0.98 keeps the same region on the 8x tasks)")
    m.add_argument("--snr-db", type=finite_float, default=30.0, help="simulated MRI k-space SNR in dB (default 30)")
    m.add_argument("--size", type=positive_int, default=128,
                   help="image volumes (NIfTI, DICOM, anatomy, phantoms): resample slices to SIZE x SIZE (default 128, "
                        "the shipped priors' size; a convolutional prior runs at any size); fastMRI files keep theirs")
    m.add_argument("--volume-index", type=nonnegative_int, default=None,
                   help="the volume of a 4-D NIfTI file (one-volume files need none)")
    r = p.add_argument_group("run")
    r.add_argument("--slices", type=slice_list, default=None, help="'K', 'K,L' or 'A:B' (default: all)")
    r.add_argument("--batch-slices", type=positive_int, default=None,
                   help="slices per sampler run and checkpoint (default: up to 8 within an estimated 4 GiB); with "
                        "--volume, slices per network call")
    r.add_argument("--volume", action="store_true",
                   help="solve the chosen slices (contiguous) as one volume coupled along z: samplers dds-volume, "
                        "diffusion-mbir, tv-3d; the whole volume's memory is estimated and checked first")
    r.add_argument("--max-memory", type=positive_float, default=None, metavar="GIB",
                   help="memory budget in GiB checked before any work (default: 90%% of the memory free now)")
    r.add_argument("--calibration", default=None, metavar="FILE",
                   help="a calibration file (invdiff calibrate): write the calibrated intervals' half-widths and, "
                        "with a target, their coverage")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    r.add_argument("--force", action="store_true", help="discard a previous run in --out with other settings")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Check every value, then open, solve and write; errors reach :func:`invdiff.cli.main` as one line."""
    from invdiff.reconstruct import format_summary

    folder = Path(args.input)
    if folder.is_dir() and any(folder.glob("*.h5")):
        return run_folder(args)
    _, _, summary = run_job(args)
    print(format_summary(summary))
    print(f"outputs in {args.out}: " + ", ".join(summary["outputs"]))
    return 0


def run_folder(args: argparse.Namespace) -> int:
    """Every ``.h5`` file of the folder ``args.input``, one after the other: each volume in
    ``OUT/volumes/NAME/`` (its own run, resumable), its prediction copied to ``OUT/reconstructions/NAME.h5``
    (fastMRI's submission layout). A file that fails is reported in one line and skipped; the others go
    on; the exit code is 1 when any failed."""
    from invdiff.cli.errors import USER_ERRORS, error_line
    from invdiff.io import atomic_write
    from invdiff.reconstruct import format_summary

    out = check_output_folder(args.out)
    files = sorted(Path(args.input).glob("*.h5"))
    failed: dict[str, str] = {}
    for i, file in enumerate(files):
        volume = argparse.Namespace(**{**vars(args), "input": str(file), "out": str(out / "volumes" / file.stem)})
        try:
            _, _, summary = run_job(volume)
        except USER_ERRORS as err:
            failed[file.name] = error_line(err)
            print(f"[{i + 1}/{len(files)}] {file.name}: skipped: {failed[file.name]}", file=sys.stderr)
            continue
        prediction = out / "volumes" / file.stem / "reconstructions" / file.name
        atomic_write(out / "reconstructions" / file.name, lambda tmp, src=prediction: shutil.copyfile(src, tmp))
        print(f"[{i + 1}/{len(files)}] " + format_summary(summary))
    done = len(files) - len(failed)
    print(f"{done} of {len(files)} volume(s) reconstructed; predictions in {out / 'reconstructions'} "
          f"(score them with: invdiff evaluate {args.input} {out / 'reconstructions'})")
    for name, message in failed.items():
        print(f"  failed: {name}: {message}", file=sys.stderr)
    return 1 if failed else 0


def run_job(args: argparse.Namespace):
    """The job of :func:`run_command`: returns the opened input, the :class:`~invdiff.reconstruct.SliceResults`
    and the JSON summary written."""
    from invdiff.problems import open_source, sampler_settings
    from invdiff.reconstruct import ReconSettings, reconstruct, write_outputs
    from invdiff.reconstruct.job import used_prior_name
    from invdiff.reconstruct.budget import available_memory_gib, check_budget, ct_projector_bytes
    from invdiff.samplers.registry import check_settings

    start = time.perf_counter()
    spec = ProblemSpec(operator=args.operator, mask=args.mask, acceleration=args.acceleration,
                       center_fraction=args.center_fraction, views=args.views, geometry=args.geometry,
                       angle_range=args.angle_range, noise_sigma=args.noise_sigma, blur_std=args.blur_std,
                       box=args.box, snr_db=args.snr_db, seed=args.seed, support_margin=args.support_margin,
                       calib_rows=args.calib_rows, espirit_crop=args.espirit_crop,
                       size=args.size, acquisition=args.acquisition)
    settings = ReconSettings(sampler=args.sampler, nfe=args.steps, particles=args.particles, seed=args.seed,
                             overrides=parse_overrides(args.set), prior=args.prior, slices=args.slices,
                             batch_slices=args.batch_slices, device=check_device(args.device), volume=args.volume)
    check_settings(settings.sampler, settings.overrides)  # names and kinds, before any file is read
    calibration = None
    if args.calibration is not None:
        from invdiff.metrics.conformal import load_calibration

        calibration = load_calibration(args.calibration)
    out = check_output_folder(args.out)
    budget = int((args.max_memory or 0.9 * available_memory_gib()) * 2**30)
    if resolve_operator(args.input, spec.operator) == "ct":  # the projector is built when the input is opened
        check_budget({"CT projector": ct_projector_bytes(spec)}, budget, "use fewer --views")
    inp = open_source(args.input, spec, out, volume_index=args.volume_index)
    opened = time.perf_counter()
    results = reconstruct(inp, settings, out, problem_spec=asdict(spec), force=args.force,
                          progress=not args.quiet, log=log.info, max_memory_bytes=budget)
    recorded = {**asdict(settings), "slices": results.slices, "particles": results.particles,
                "sampler_settings": sampler_settings(settings.sampler, inp.family, settings.overrides, settings.nfe),
                "prior": used_prior_name(settings, inp.prior_name), "problem": asdict(spec)}
    summary = write_outputs(results, inp, recorded, out,
                            {"open_s": round(opened - start, 2), "total_s": round(time.perf_counter() - start, 2)},
                            calibration=calibration)
    return inp, results, summary
