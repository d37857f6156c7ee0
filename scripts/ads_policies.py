"""Active subsampling's policies against the fixed mask and against the oracle bound, on MRI.

The demo scan's four slices (Colin27, held out of the prior's training), 8 % centre lines, ancestral
DPS with ``--particles`` particles and ``--steps`` steps for every run, one line acquired at a time over
the first 75 % of the steps. Policies (:mod:`invdiff.active.policy`): ``entropy`` (the mixture entropy
of the particles' predicted columns), ``gaussian`` (their Gaussian information gain), and ``oracle`` —
the column where the particles' mean prediction is farthest from the true data, which reads the answer
and so bounds what a policy that sees only the particles could reach with this sampler and schedule.
``calibrated`` is the Gaussian gain with each column's predicted variance scaled by the error/variance
ratio at its distance from the k-space centre (:mod:`invdiff.active.calibration`), fitted on the
``gaussian`` runs with ``--validation-seeds`` on a validation scan simulated like the demo scan: dipy's T1
slice (a subject neither the prior nor the demo scan shows) as acquired and transposed, or ICBM152 slices.
``spread`` is the calibrated policy that keeps each new line at least a spacing from every measured one
(``ActiveSubsampling(min_spacing=...)``), the spacing a fraction of the even spacing of the line budget
(:func:`invdiff.active.budget_spacing`); the fraction is chosen from ``--spread-fractions`` by PSNR on the
validation scan (seed: the first validation seed), never on the demo scan.
The fixed fastMRI masks (``equispaced``, ``random-mask``) have the same centre
lines and line budget; ``low-pass`` is the fixed mask of the budget's central lines (a centre block and
nothing else: fastMRI's random mask whose centre fraction is the budget), with coil maps estimated from
the same centre lines as the others.

At each acquisition of a particle policy the script also records the correlation, over the columns not
yet measured, between the particles' predicted variance of a column (what the policies see) and the
squared error of their mean prediction there (what measuring it would fix).

    python scripts/ads_policies.py [--accelerations 8] [--seeds 0]
        [--methods equispaced random-mask gaussian calibrated oracle] [--validation dipy]

Each run is kept in ``--work`` (JSON), so an interrupted run resumes; writes the page ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from invdiff.active import budget_spacing
from invdiff.active.calibration import fit_column_scale
from invdiff.active.policy import ActiveSubsampling
from invdiff.benchmark.report import script_page
from invdiff.datasets import FastMRIFile, demo_scan, load_anatomy
from invdiff.datasets.simulate import SimulationSettings, simulate_multicoil, write_fastmri_file
from invdiff.io import atomic_write_text
from invdiff.metrics import fastmri_volume_metrics
from invdiff.priors import shipped_prior
from invdiff.problems import configured_sampler
from invdiff.problems.active_mri import low_pass_problem, mri_active_setup, sampled_columns
from invdiff.problems.image_tasks import mri_validation_file
from invdiff.samplers import run

#: fixed fastMRI masks of the same centre lines and line budget (``random-mask``: fastMRI's random mask,
#: drawn with the per-file seed)
FIXED = {"equispaced": "equispaced_fraction", "random-mask": "random"}
METHODS = (*FIXED, "low-pass", "entropy", "gaussian", "calibrated", "spread", "oracle", "random")
#: the policies with the calibrated Gaussian score
CALIBRATED = ("calibrated", "spread")


def with_correlations(record: dict, scale: torch.Tensor | None) -> dict:
    """A policy's acquisition record (``ActiveSubsampling(record=True)``) as JSON, with the correlation per
    item, over the unmeasured columns, of the variance the score sees (scaled, for a calibrated policy) and
    the squared error of the particles' weighted mean prediction."""
    var, err, measured = record["variance"], record["error"], record["measured"]
    seen = var if scale is None else var * scale
    corr = [float(torch.corrcoef(torch.stack([seen[i][~measured[i]], err[i][~measured[i]]]))[0, 1])
            for i in range(measured.shape[0])]
    return {"step": record["step"], "corr": corr, "variance": var.tolist(), "error": err.tolist(),
            "measured": measured.tolist()}


def scan(data: str, args: argparse.Namespace) -> tuple[FastMRIFile, list[int]]:
    """The scan a run uses and its slices: the demo scan (the test data) or the validation scan."""
    if data == "demo":
        return FastMRIFile.open(demo_scan()), list(args.slices)
    if args.validation == "icbm152":
        file = mri_validation_file(args.work, tuple(args.validation_slices))
    else:  # dipy's T1 slice as acquired and transposed (phase encoding along either axis), like the demo scan
        image = load_anatomy("dipy_t1_coronal", size=128, min_foreground=0.0)[0]
        sim = simulate_multicoil(np.stack([image, image.T]), SimulationSettings(
            num_coils=8, readout_oversampling=2, snr_db=30.0, coil_radius=1.5, seed=7))
        file = FastMRIFile.open(write_fastmri_file(args.work / "validation_dipy.h5", sim))
    return file, list(range(file.num_slices))


def validation_tag(args: argparse.Namespace) -> str:
    return "val" + ("-".join(map(str, args.validation_slices)) if args.validation == "icbm152" else "dipy")


def column_scale(acceleration: int, args: argparse.Namespace, prior) -> torch.Tensor:
    """The per-column variance calibration for the ``calibrated`` policy, fitted on the validation slices'
    ``gaussian`` runs with ``args.validation_seeds`` (run first if not cached)."""
    recs = [acq for s in args.validation_seeds
            for acq in one_run("gaussian", acceleration, s, args, prior, "validation")["correlations"]]
    var, err, measured = (torch.tensor([row for acq in recs for row in acq[key]], dtype=torch.float64)
                          for key in ("variance", "error", "measured"))
    return fit_column_scale(var, err, measured.bool())


def spread_fraction(acceleration: int, args: argparse.Namespace, prior) -> tuple[float, dict[str, float]]:
    """The ``spread`` policy's spacing fraction: the best of ``--spread-fractions`` by PSNR on the
    validation scan (first validation seed), and the PSNR of each."""
    runs = {f"{f:g}": one_run("spread", acceleration, args.validation_seeds[0], args, prior, "validation", fraction=f)
            for f in args.spread_fractions}
    if any(r is None for r in runs.values()):  # --cached-only, and a validation run is missing
        return None, None
    scores = {f: r["PSNR"] for f, r in runs.items()}
    best = max(scores, key=scores.get)
    return float(best), scores


def one_run(method: str, acceleration: int, seed: int, args: argparse.Namespace, prior, data: str = "demo",
            fraction: float | None = None) -> dict | None:
    """One run's record, from the cache or run now (``None`` with ``--cached-only`` when not cached)."""
    grid = None
    if method == "spread" and fraction is None:
        fraction, grid = spread_fraction(acceleration, args, prior)
        if fraction is None:
            return None
    tag = "-".join(map(str, args.slices)) if data == "demo" else validation_tag(args)
    if method in CALIBRATED:  # which validation runs it was fitted on
        tag += f"_fit{validation_tag(args)}s" + "-".join(map(str, args.validation_seeds))
    if method == "spread":
        tag += f"_spread{fraction:g}"
    cache = args.work / f"{method}_{acceleration}x_seed{seed}_{args.particles}p_{args.steps}_slices{tag}.json"
    if cache.is_file():
        return json.loads(cache.read_text()) | ({"validation_psnr": grid} if grid else {})
    if args.cached_only:
        return None
    scale = column_scale(acceleration, args, prior) if method in CALIBRATED else None
    file, slices = scan(data, args)
    setup = mri_active_setup(file, acceleration, slices=slices)
    ref = setup.reference
    sampler = configured_sampler("dps", args.steps, "mri")
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    out: dict = {"method": method, "acceleration": acceleration, "seed": seed}
    fixed = None
    if method in FIXED:
        fixed = setup.fixed[FIXED[method]]
    elif method == "low-pass":
        fixed = low_pass_problem(file, setup, slices)
    if fixed is not None:
        post = run(sampler, fixed.measurement, prior, n_particles=args.particles, generator=g, progress=False)
        mask = sampled_columns(fixed)
        out["columns"] = torch.nonzero(mask & ~setup.plan.initial).flatten().tolist()
    else:
        spacing = budget_spacing(setup.plan, fraction) if method == "spread" else 1
        policy = ActiveSubsampling(setup.measurement, setup.oracle, setup.plan, generator=g, variance_scale=scale,
                                   policy="gaussian" if method in CALIBRATED else method, min_spacing=spacing,
                                   record=True)
        out["min_spacing"], out["fraction"] = spacing, fraction
        post = run(sampler, policy.measurement, prior, n_particles=args.particles, generator=g, progress=False,
                   between_steps=policy)
        res = policy.result(post)
        out["columns"] = res.order.tolist()
        out["correlations"] = [with_correlations(r, policy.variance_scale) for r in policy.records]
    recon = (fixed if fixed is not None else ref).to_image(post.mean)
    out.update(fastmri_volume_metrics(ref.target, recon))
    out["per_slice_psnr"] = [fastmri_volume_metrics(ref.target[i:i + 1], recon[i:i + 1])["PSNR"]
                             for i in range(len(recon))]
    out["wall_s"] = time.perf_counter() - start
    atomic_write_text(cache, json.dumps(out) + "\n")
    return out | ({"validation_psnr": grid} if grid else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerations", type=int, nargs="+", default=[8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=["equispaced", "entropy", "gaussian", "oracle"],
                        choices=METHODS)
    parser.add_argument("--single-seed-methods", nargs="*", default=[], choices=METHODS,
                        help="also these methods, with the first seed only (diagnostics that cost a run each)")
    parser.add_argument("--slices", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--validation", choices=["dipy", "icbm152"], default="dipy",
                        help="the scan the calibrated policy is fitted on: dipy's T1 slice (a subject no prior saw; "
                             "as acquired and transposed) or ICBM152 slices (the MRI prior's training data)")
    parser.add_argument("--validation-slices", type=int, nargs="+", default=[80, 89, 98],
                        help="ICBM152 axial slices, with --validation icbm152")
    parser.add_argument("--validation-seeds", type=int, nargs="+", default=[0],
                        help="seeds of the validation runs the calibrated policy is fitted on")
    parser.add_argument("--spread-fractions", type=float, nargs="+", default=[0.0, 0.25, 0.5],
                        help="the spread policy's spacing fractions of the even line spacing, chosen on validation")
    parser.add_argument("--cached-only", action="store_true",
                        help="report the runs already in --work; list the others as not run")
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("outputs/ads-policies"))
    parser.add_argument("--out", type=Path, default=Path("docs/results/ads-policies"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    prior = shipped_prior("mri_brain_128")
    plan = [(m, s) for m in args.methods for s in args.seeds] + \
        [(m, args.seeds[0]) for m in args.single_seed_methods if m not in args.methods]
    runs = {(m, a, s): one_run(m, a, s, args, prior) for a in args.accelerations for m, s in plan}
    rows = [r for r in runs.values() if r is not None]
    missing = [f"{m} {a}x seed {s}" for (m, a, s), r in runs.items() if r is None]
    lines, notes = [], []
    for a in args.accelerations:
        for m in dict.fromkeys(m for m, _ in plan):
            rs = [r for r in rows if r["acceleration"] == a and r["method"] == m]
            if not rs:
                continue
            psnr = np.array([r["PSNR"] for r in rs])
            ssim = np.array([r["SSIM"] for r in rs])
            corr = [c for r in rs for acq in r.get("correlations", []) for c in acq["corr"] if np.isfinite(c)]
            corr_txt = f"{np.median(corr):+.2f} ({min(corr):+.2f} to {max(corr):+.2f})" if corr else ""
            cols = rs[0]["columns"][0] if rs[0]["columns"] and isinstance(rs[0]["columns"][0], list) \
                else rs[0]["columns"]
            name = f"{m} (spacing {rs[0]['min_spacing']})" if m == "spread" else m
            if m == "spread":
                notes.append(f"- {a}x: the spread policy's validation PSNR per spacing fraction "
                             f"{rs[0]['validation_psnr']} (dB, validation scan): fraction {rs[0]['fraction']:g}, "
                             f"a spacing of {rs[0]['min_spacing']} columns.")
            lines.append(f"| {a}x | {name} | {psnr.mean():.2f} ± {psnr.std():.2f} | "
                         f"{', '.join(f'{v:.2f}' for v in psnr)} | {ssim.mean():.4f} | {corr_txt} | "
                         f"{cols} | {np.mean([r['wall_s'] for r in rs]):.0f} |")
    table = "\n".join([
        f"Slices {args.slices} of the demo scan, seeds {args.seeds} (single-seed rows: {args.seeds[0]}), DPS with "
        f"{args.particles} particles and {args.steps} steps; PSNR/SSIM of the posterior mean over the slices "
        "(fastMRI definitions), mean ± std over seeds. Correlation: at each acquisition, over the unmeasured "
        "columns, between the particles' "
        "predicted variance (scaled, for the calibrated policy) and the squared error of their mean prediction "
        "(median, range over acquisitions, slices and seeds). Columns: those added to the centre lines, first "
        "slice and seed, in the order acquired (k-space centre at 64). The calibrated policy's per-distance "
        f"factor is fitted on the validation scan {validation_tag(args)[3:]} (seeds {args.validation_seeds}; "
        "never the demo scan). fastMRI's random mask draws each line with the budget's probability, so its "
        "count can differ from the others' by a line.", "",
        "| acceleration | policy | PSNR | PSNR per seed | SSIM | variance-error correlation | columns added | "
        "wall (s) |",
        "|---|---|---|---|---|---|---|---|", *lines, *([""] + notes if notes else []),
        *(["", f"Not run (left out of the means above): {', '.join(missing)}."] if missing else [])])
    # the page keeps each acquisition's correlations; the raw per-column vectors stay in the --work cache
    raw = ("variance", "error", "measured")
    published = [r | {"correlations": [{k: v for k, v in acq.items() if k not in raw} for acq in r["correlations"]]}
                 if "correlations" in r else r for r in rows]
    script_page(args.out, "Active subsampling: policies, the fixed mask and the oracle bound", published, table)


if __name__ == "__main__":
    main()
