"""``invdiff acquire``: active subsampling (ADS) of a fully sampled multi-coil fastMRI file.

Retrospective: the file's fully sampled k-space is the oracle the policy reads chosen lines from
(:mod:`invdiff.active`), on the same footing as fastMRI's fixed masks (same centre lines, coil maps, units,
noise and line budget: :func:`invdiff.problems.active_mri.mri_active_setup`). Writes, atomically:

=================================  ===========================================================
``reconstructions/NAME.h5``        fastMRI prediction file of the active run's posterior mean
``NAME_acquire.json``              the lines chosen per slice (in order, with the step of each), the
                                   final masks, metrics of the active run and of the fixed masks
                                   (``--compare``) with the same sampler and seed, settings, timings
``figures/NAME_slice_K.png``       target, active mean, fixed-mask means, and the masks
=================================  ===========================================================
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from invdiff.cli.options import check_output_folder, finite_float, nonnegative_int, positive_int
from invdiff.cli.reconstruct import slice_list

#: samplers whose particles carry the denoised estimates a policy scores
ACTIVE_SAMPLERS = ("dps", "dps-ddim", "tds")
#: the fixed masks ``--compare`` runs: fastMRI's (with the file's seed) and the centre block
FIXED_MASKS = {"equispaced": "equispaced_fraction", "random": "random", "low-pass": None}

EPILOG = """examples:
  invdiff acquire demo --acceleration 8                          # Gaussian-gain policy, DPS, 4 particles
  invdiff acquire file_brain.h5 --policy gaussian --calibrate-on other_subject.h5 --spacing 0.25
  invdiff acquire demo --policy oracle                           # the bound: reads the answer

--calibrate-on fits the per-frequency variance calibration on another fully sampled file (a validation
subject, never the one acquired) with a recorded Gaussian-gain run first. --spacing keeps each new line at
least FRACTION of the even line spacing from every measured line. Measured on the demo scan at 8x
(docs/results/ads-policies): the fixed equispaced mask is the one to beat."""


def spacing_fraction(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a fraction >= 0, got {text!r}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser("acquire", help="choose k-space lines while reconstructing (active subsampling), "
                       "retrospectively from a fully sampled multi-coil fastMRI file",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="Run active subsampling on INPUT (a fully sampled multi-coil fastMRI .h5 or "
                       "'demo'): start from the centre lines, choose the rest of the line budget one at a time "
                       "from the particles of a diffusion sampler, and compare with fastMRI's equispaced mask of "
                       "the same budget.")
    p.add_argument("input")
    p.add_argument("--out", default="outputs/acquire", help="output folder (default outputs/acquire)")
    p.add_argument("--acceleration", type=positive_int, default=8, help="line budget: width / ACCELERATION (default 8)")
    p.add_argument("--center-fraction", type=finite_float, default=0.08, help="initial centre lines (default 0.08)")
    p.add_argument("--policy", choices=["gaussian", "entropy", "random", "oracle"], default="gaussian",
                   help="how a line is chosen (default gaussian: the particles' Gaussian information gain)")
    p.add_argument("--calibrate-on", default=None, metavar="FILE",
                   help="fit the per-frequency variance calibration on this fully sampled file first")
    p.add_argument("--spacing", type=spacing_fraction, default=0.0, metavar="FRACTION",
                   help="minimum distance of a new line to measured ones, as a fraction of the even spacing "
                        "(default 0: none)")
    p.add_argument("--sampler", default="dps", choices=ACTIVE_SAMPLERS, help="default dps")
    p.add_argument("--prior", default="mri_brain_128", help="shipped prior name or prior.pt")
    p.add_argument("--steps", type=positive_int, default=100, help="network evaluations (default 100)")
    p.add_argument("--particles", type=positive_int, default=4, help="particles per slice (default 4)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--slices", type=slice_list, default=None, help="'K', 'K,L' or 'A:B' (default: all)")
    p.add_argument("--compare", nargs="+", choices=list(FIXED_MASKS), default=["equispaced"],
                   help="fixed masks of the same budget to run with the same sampler and seed (default equispaced; "
                        "low-pass: the budget's central lines)")
    p.add_argument("--no-compare", action="store_true", help="run no fixed mask")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)


def fully_sampled(path: str, option: str):
    """The multi-coil fastMRI file ``path`` (or the demo scan), refused unless every line is acquired."""
    from invdiff.datasets import FastMRIFile, demo_scan

    file = FastMRIFile.open(demo_scan() if path == "demo" else path)
    if not file.multicoil:
        raise ValueError(f"{option} {file.path}: active subsampling here needs multi-coil k-space")
    if file.mask is not None:
        raise ValueError(f"{option} {file.path}: a test file holds only its own mask's lines; active acquisition "
                         "reads chosen lines from fully sampled k-space")
    if file.target_key is None:
        raise ValueError(f"{option} {file.path}: no target ({file.target_key}) to score against")
    return file


def run_command(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from invdiff.active import budget_spacing, fit_records, run_active
    from invdiff.datasets import write_prediction
    from invdiff.io import atomic_write_json
    from invdiff.metrics import fastmri_volume_metrics
    from invdiff.plots import slice_figure
    from invdiff.problems import configured_sampler
    from invdiff.problems.active_mri import low_pass_problem, mri_active_setup, sampled_columns
    from invdiff.reconstruct.job import load_denoiser
    from invdiff.samplers import run

    out = check_output_folder(args.out)
    if not 0 < args.center_fraction < 1:
        raise ValueError(f"--center-fraction must lie in (0, 1), got {args.center_fraction}")
    if args.calibrate_on and args.policy not in ("gaussian", "entropy"):
        raise ValueError(f"--calibrate-on scales the gaussian and entropy scores; --policy is {args.policy}")
    file = fully_sampled(args.input, "INPUT")
    validation = fully_sampled(args.calibrate_on, "--calibrate-on") if args.calibrate_on else None
    if validation is not None and validation.path.resolve() == file.path.resolve():
        raise ValueError(f"--calibrate-on {validation.path} is the file being acquired: fit the calibration on "
                         "another subject, never on the scan it is used for")
    slices = list(args.slices) if args.slices else list(range(file.num_slices))
    if max(slices) >= file.num_slices:
        raise ValueError(f"--slices: {file.path} has {file.num_slices} slices, asked for slice {max(slices)}")
    prior = load_denoiser(args.prior, "cpu")
    sampler = configured_sampler(args.sampler, args.steps, "mri")
    common = dict(n_particles=args.particles, progress=not args.quiet)
    t0 = time.perf_counter()

    scale = None
    if validation is not None:
        vset = mri_active_setup(validation, args.acceleration, args.center_fraction)
        fit = run_active(sampler, vset.measurement, prior, vset.oracle, vset.plan, policy="gaussian", record=True,
                         generator=torch.Generator().manual_seed(args.seed), **common)
        scale = fit_records(fit.records)
    t_fit = time.perf_counter() - t0

    setup = mri_active_setup(file, args.acceleration, args.center_fraction, slices=slices)
    spacing = budget_spacing(setup.plan, args.spacing)
    active = run_active(sampler, setup.measurement, prior, setup.oracle, setup.plan, policy=args.policy,
                        variance_scale=scale, min_spacing=spacing, generator=torch.Generator().manual_seed(args.seed),
                        **common)
    t_active = time.perf_counter() - t0 - t_fit
    ref = setup.reference
    recon = ref.to_image(active.posterior.mean)
    summary = {"input": str(file.path), "slices": slices, "acceleration": args.acceleration,
               "center_fraction": args.center_fraction, "policy": args.policy, "sampler": args.sampler,
               "steps": args.steps, "particles": args.particles, "seed": args.seed, "prior": args.prior,
               "calibrated_on": None if validation is None else str(validation.path),
               "spacing": {"fraction": args.spacing, "columns": spacing},
               "lines": {"initial": torch.nonzero(setup.plan.initial).flatten().tolist(), "budget": setup.plan.budget,
                         "chosen": active.order.tolist(), "steps": active.steps},
               "metrics": {"active": fastmri_volume_metrics(ref.target, recon)},
               "timings_s": {"calibration_fit": t_fit, "active": t_active, "policy": active.policy_seconds}}
    fixed: dict[str, tuple] = {}  # name -> (mean image, mask)
    for kind in [] if args.no_compare else dict.fromkeys(args.compare):
        t1 = time.perf_counter()
        problem = setup.fixed[FIXED_MASKS[kind]] if FIXED_MASKS[kind] else low_pass_problem(file, setup, slices)
        post = run(sampler, problem.measurement, prior, generator=torch.Generator().manual_seed(args.seed), **common)
        mask = sampled_columns(problem)
        fixed[kind] = (problem.to_image(post.mean), mask)
        summary["metrics"][f"fixed {kind}"] = fastmri_volume_metrics(ref.target, fixed[kind][0])
        summary["lines"][f"fixed {kind}"] = torch.nonzero(mask).flatten().tolist()
        summary["timings_s"][f"fixed {kind}"] = time.perf_counter() - t1

    name = file.path.stem
    outputs = [write_prediction(out / "reconstructions" / file.path.name, recon,
                                attrs={"sampler": args.sampler, "policy": args.policy})]
    h = recon.shape[-2]

    def strip(cols: np.ndarray) -> np.ndarray:  # a column mask drawn as an image of the reconstruction's height
        return np.broadcast_to(cols[None, :], (h, cols.shape[0]))

    for i, s in enumerate(slices):
        panels = [("target", ref.target[i], "image"), (f"active ({args.policy})", recon[i], "image"),
                  *[(f"fixed {kind}", image[i], "image") for kind, (image, _) in fixed.items()],
                  ("active mask", strip(active.acquired[i].numpy()), "mask"),
                  *[(f"{kind} mask", strip(mask.numpy()), "mask") for kind, (_, mask) in fixed.items()]]
        outputs.append(slice_figure(out / "figures" / f"{name}_slice_{s}.png", panels, f"{name}, slice {s}"))
    outputs.append(atomic_write_json(out / f"{name}_acquire.json", summary))
    for kind, m in summary["metrics"].items():
        print(f"{kind}: PSNR {m['PSNR']:.2f} dB, SSIM {m['SSIM']:.4f}, NMSE {m['NMSE']:.4f}")
    print(f"outputs in {out}: " + ", ".join(str(Path(p).relative_to(out)) for p in outputs))
    return 0
