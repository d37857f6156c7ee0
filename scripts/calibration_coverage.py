"""Calibrated uncertainty on held-out slices: conformal intervals fitted on some slices, scored on others.

For each task (MRI 4x/8x: ``--data`` simulated like the demo scan; CT 30/60 views: the same slices under
parallel-beam CT) and each stochastic sampler (registry settings of the task's family, chosen on the
image tasks' validation data, never on these slices), runs the sampler on ``--slices`` (every other one
is a calibration slice, the rest are test slices), fits conformal risk control on the calibration slices
(:func:`invdiff.metrics.conformal.fit_conformal`, object region, levels 0.5-0.9) and reports on the test
slices: the calibrated intervals' coverage and mean half-width, the uncalibrated ``mean ± z std`` and
particle-quantile coverage beside them, the calibration ratio Δcal (mean variance over mean squared
error, :func:`invdiff.benchmark.cells.calibration_ratios`), and PSNR. Figures: a calibration plot per
task (nominal against empirical coverage on the test slices, before and after calibration) and, per
sampler, the first test slice's target, posterior mean, calibrated 90 % half-width and the pixels whose
error exceeds it.

    python scripts/calibration_coverage.py [--tasks mri-4x mri-8x ct-30 ct-60] [--samplers red-diff dps dds]
        [--data anatomy:colin27_t1] [--slices 50 55 ... 145] [--particles 4] [--nfe 100]
        [--set tds.ct twist_inflation=0.3]   # a setting chosen for this budget, in place of the registry's

Each (task, sampler) run is kept in ``--work`` (``.npz``), and within a run each finished slice group with
the random generator's state after it (``NAME.groups/``, removed once the run is whole), so an interrupted
run resumes at the next group and draws exactly what an uninterrupted one would. Each group prints its
wall time and an estimate of the time left.
Writes the results page ``--out`` (atomically) and prints the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch

from invdiff.benchmark.cells import calibration_ratios
from invdiff.benchmark.report import code_version, script_page
from invdiff.cli.settings import parse_overrides
from invdiff.io import atomic_write
from invdiff.metrics import fastmri_volume_metrics
from invdiff.metrics.conformal import conformal_report, fit_conformal, region_mask
from invdiff.plots import calibration_figure, labelled_grid
from invdiff.priors import open_prior
from invdiff.problems import configured_sampler, open_source
from invdiff.problems.defaults import sampler_settings
from invdiff.problems.image_tasks import TASK_SPECS
from invdiff.problems.spec import FAMILY
from invdiff.reconstruct import load_denoiser, solve_problem
from invdiff.reconstruct.budget import default_group_size, group_bytes
from invdiff.samplers.registry import SAMPLERS

LEVELS = (0.5, 0.7, 0.8, 0.9)  # 0.9 needs >= 9 calibration slices


def settings_text(settings: dict) -> str:
    """``{"lam": 512.0, "lr": 0.1}`` -> ``"lam 512, lr 0.1"``, as the page shows a sampler's settings."""
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.items())


def solve(task: str, sampler_name: str, args: argparse.Namespace) -> dict[str, np.ndarray] | None:
    """Posterior mean, std, target (all slices, image units) and the run's costs; cached in ``args.work``
    (``None`` with ``--cached-only`` when the run is not there)."""
    slices = f"{args.slices[0]}-{args.slices[-1]}n{len(args.slices)}"  # with --data, --seed: what the run saw
    family = FAMILY[TASK_SPECS[task].operator]
    overrides = args.overrides.get((sampler_name, family), {})
    settings = sampler_settings(sampler_name, family, overrides, args.nfe)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]  # a registry change reruns
    cache = args.work / (f"{task}__{sampler_name}-{key}__{args.particles}p__nfe{args.nfe}__seed{args.seed}__"
                         f"{slices}.npz")
    if cache.is_file():
        return dict(np.load(cache)) | {"settings": settings}
    if args.cached_only:
        return None
    # slice groups as `invdiff reconstruct` forms them: a working set under 4 GiB, at most 8 slices (the
    # 90 slices in one batch need ~30 GB for a sampler that back-propagates through the network)
    per_slice = group_bytes((TASK_SPECS[task].size,) * 2, 1, args.particles, SAMPLERS[sampler_name].vjp)
    size = default_group_size(len(args.slices), per_slice)
    source = open_source(args.data, TASK_SPECS[task], args.work)
    groups = [list(args.slices[i:i + size]) for i in range(0, len(args.slices), size)]
    problem = source.build(groups[0])
    sampler = configured_sampler(sampler_name, args.nfe, problem.family, overrides)
    prior = load_denoiser(open_prior(problem.prior, "cpu") if isinstance(problem.prior, str) else problem.prior, "cpu")
    generator = torch.Generator().manual_seed(args.seed)
    # finished groups and the generator's state after each: a resumed run draws what an uninterrupted one does
    partial = cache.with_suffix(".groups")
    parts = []
    for k, group in enumerate(groups):
        part_file = partial / f"group{k:03d}.npz"
        if part_file.is_file():
            parts.append(dict(np.load(part_file)))
            generator.set_state(torch.from_numpy(parts[-1]["generator_state"]))
            continue
        started = time.perf_counter()
        problem = problem if k == 0 else source.build(group)
        res = solve_problem(problem, sampler, prior, args.particles, generator, strict_pixel=False,
                            chunk_slices=args.chunk)
        part = {"mean": res["mean"], "std": res["std"], "target": problem.target,
                "network_evals": np.array(res["network_evals"]), "wall_time_s": np.array(time.perf_counter() - started),
                "covered": np.array(float(res["object_coverage_sums"]["0.9"]) if res.get("object_coverage_sums") else 0.0),
                "pixels": np.array(float(res["object_pixels"]) if res.get("object_coverage_sums") else 0.0),
                "generator_state": generator.get_state().numpy()}
        atomic_write(part_file, lambda tmp, part=part: np.savez_compressed(tmp, **part), suffix=".npz")
        parts.append(part)
        wall = float(part["wall_time_s"])
        print(f"  {task} {sampler_name}: slices {group[0]}-{group[-1]} (group {k + 1}/{len(groups)}) in {wall:.0f} s, "
              f"about {wall * (len(groups) - k - 1) / 60:.0f} min left", flush=True)
    out = {"mean": np.concatenate([p["mean"] for p in parts]), "std": np.concatenate([p["std"] for p in parts]),
           "target": np.concatenate([p["target"] for p in parts]),
           "wall_time_s": np.array(sum(float(p["wall_time_s"]) for p in parts)),
           "network_evals": np.array(parts[0]["network_evals"]), "slice_group": np.array(size)}
    pixels = sum(float(p["pixels"]) for p in parts)
    if pixels:
        out["quantile_coverage_0.9"] = np.array(sum(float(p["covered"]) for p in parts) / pixels)
    atomic_write(cache, lambda tmp: np.savez_compressed(tmp, **out), suffix=".npz")
    shutil.rmtree(partial, ignore_errors=True)
    return out | {"settings": settings}


def split(n: int, test_every: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the calibration and test slices: every ``test_every``-th slice is a test slice."""
    idx = np.arange(n)
    is_test = idx % test_every == test_every - 1
    return idx[~is_test], idx[is_test]


def evaluate(r: dict[str, np.ndarray], test_every: int, fewer: int) -> dict:
    cal, test = split(len(r["target"]), test_every)
    fit = fit_conformal(r["mean"][cal], r["std"][cal], r["target"][cal], LEVELS, region="object")
    report = conformal_report(fit, r["mean"][test], r["std"][test], r["target"][test])
    few = cal[np.linspace(0, len(cal) - 1, min(fewer, len(cal))).round().astype(int)]  # evenly spread
    fit_few = fit_conformal(r["mean"][few], r["std"][few], r["target"][few], (0.9,), region="object")
    few_90 = conformal_report(fit_few, r["mean"][test], r["std"][test], r["target"][test])["0.9"]["coverage"]
    half = fit.half_width(r["std"][test], 0.9)
    err = np.abs(r["mean"][test] - r["target"][test])
    mask = region_mask(r["target"][test], "object")
    per_slice = [float((err[i] <= half[i])[mask[i]].mean()) for i in range(len(mask))]
    metrics = fastmri_volume_metrics(r["target"][test], r["mean"][test])
    return {"fit": fit, "report": report, "per_slice_90": per_slice, "psnr": metrics["PSNR"], "ssim": metrics["SSIM"],
            **calibration_ratios(r["target"][test], r["mean"][test], r["std"][test]),
            "test_slices": int(len(mask)), "calibration_slices": fit.slices,
            "fewer_slices": len(few), "fewer_coverage_90": few_90}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["mri-4x", "mri-8x", "ct-30", "ct-60"],
                        choices=["mri-4x", "mri-8x", "ct-30", "ct-60"])
    parser.add_argument("--samplers", nargs="+", default=["red-diff", "dps", "dds"])
    parser.add_argument("--data", default="anatomy:colin27_t1")
    parser.add_argument("--slices", type=int, nargs="+", default=list(range(50, 150, 5)))
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--nfe", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=16, help="particles per network call (memory)")
    parser.add_argument("--test-every", type=int, default=2,
                        help="every K-th slice is a test slice, the others calibrate (K=3: two thirds calibrate)")
    parser.add_argument("--fewer", type=int, default=20,
                        help="also fit on this many of the calibration slices (evenly spread) to show the margin")
    parser.add_argument("--set", nargs=2, action="append", default=[], metavar=("SAMPLER.FAMILY", "KEY=VALUE"),
                        help="a setting in place of the registry's for one sampler on one family, e.g. "
                             "--set tds.ct twist_inflation=0.3 (repeatable; shown beside the sampler, and a new run)")
    parser.add_argument("--cached-only", action="store_true",
                        help="report the runs already in --work and list the others as not run")
    parser.add_argument("--work", type=Path, default=Path("outputs/calibration-coverage"))
    parser.add_argument("--out", type=Path, default=Path("docs/results/calibration"))
    args = parser.parse_args()
    args.overrides = {}
    for target, item in args.set:
        name, _, family = target.partition(".")
        if name not in SAMPLERS or family not in set(FAMILY.values()):
            parser.error(f"--set {target}: expected SAMPLER.FAMILY with a registered sampler and one of "
                         f"{sorted(set(FAMILY.values()))}")
        try:
            args.overrides.setdefault((name, family), {}).update(parse_overrides([item]))
        except ValueError as err:
            parser.error(f"--set {target} {item}: {err}")
    if args.test_every < 2:
        parser.error("--test-every must be at least 2")
    cal_idx, test_idx = split(len(args.slices), args.test_every)
    if len(cal_idx) < 9 or len(test_idx) < 2:
        parser.error(f"{len(cal_idx)} calibration and {len(test_idx)} test slices: the 90 % level needs at least 9 "
                     "calibration slices, and at least 2 test slices are needed")
    torch.set_num_threads(args.threads)
    code_version()  # the commit that computes, taken before any figure of the page is written (cached)
    args.work.mkdir(parents=True, exist_ok=True)
    z90 = NormalDist().inv_cdf(0.95)
    rows, lines = [], []
    missing: list[str] = []
    for task in args.tasks:
        curves, panels = {}, []
        for name in args.samplers:
            r = solve(task, name, args)
            if r is None:
                missing.append(f"{task}/{name}")
                continue
            e = evaluate(r, args.test_every, args.fewer)
            rep = e["report"]
            row = {"task": task, "sampler": name, "settings": r["settings"], "psnr": e["psnr"], "ssim": e["ssim"],
                   "delta_cal": e["delta_cal"],
                   "slice_group": int(r["slice_group"]) if "slice_group" in r else len(args.slices),
                   "object_delta_cal": e["object_delta_cal"], "lams": e["fit"].lams, "floor": e["fit"].floor,
                   "report": rep, "per_slice_90": e["per_slice_90"], "wall_time_s": float(r["wall_time_s"]),
                   "quantile_coverage_90": float(r.get("quantile_coverage_0.9", np.nan)),
                   "calibration_slices": e["calibration_slices"], "test_slices": e["test_slices"],
                   "fewer_slices": e["fewer_slices"], "fewer_coverage_90": e["fewer_coverage_90"]}
            rows.append(row)
            c90 = rep["0.9"]
            shown = settings_text(r["settings"]) or "class defaults"
            lines.append(f"| {task} | {name} ({shown}) | {e['psnr']:.2f} | {row['quantile_coverage_90']:.3f} | "
                         f"{c90['uncalibrated_coverage']:.3f} | **{c90['coverage']:.3f}** "
                         f"({min(e['per_slice_90']):.3f}-{max(e['per_slice_90']):.3f}) | {e['fewer_coverage_90']:.3f} | "
                         f"{c90['half_width']:.4f} | "
                         f"{rep['0.5']['uncalibrated_coverage']:.3f} → {rep['0.5']['coverage']:.3f} | "
                         f"{e['object_delta_cal']:.3f} | {e['fit'].lams['0.9']:.2f} | {row['wall_time_s']:.0f} | "
                         f"{row['slice_group']} |")
            print(lines[-1], flush=True)
            curves[f"{name}, uncalibrated"] = {float(k): v["uncalibrated_coverage"] for k, v in rep.items()}
            curves[f"{name}, calibrated"] = {float(k): v["coverage"] for k, v in rep.items()}
            first = int(test_idx[0])
            t = r["target"][first]
            half = e["fit"].half_width(r["std"][first:first + 1], 0.9)[0]
            panels.append([("target", t), (f"{name}: mean", r["mean"][first]),
                           (f"{name}: calibrated 90 % half-width", half),
                           (f"{name}: |error| > half-width", (np.abs(r["mean"][first] - t) > half).astype(np.float32))])
        if not panels:
            continue
        calibration_figure(args.out / "figures" / f"{task}_calibration.png", curves,
                           f"{task}: object coverage on the test slices", group_sep=", ")
        vmax = float(np.percentile(panels[0][0][1], 99.5))
        labelled_grid(args.out / "figures" / f"{task}_uncertainty.png", panels, "image", vmax,
                      f"{task}: first test slice (half-width on the image's grey scale; exceedance 0/1 × vmax)")
    head = ["task", "sampler (settings)", "PSNR (test)", "90 % particle-quantile coverage",
            f"mean ± {z90:.3f} std coverage",
            "calibrated 90 % coverage (per test slice)", f"the same, fitted on {min(args.fewer, len(cal_idx))} of the "
            "calibration slices", "mean 90 % half-width", "50 %: uncalibrated → calibrated",
            "Δcal (object)", "λ 90 %", "wall (s, all slices)", "slices per batch"]
    slices = np.asarray(args.slices)
    n_cal = len(cal_idx)
    miss = (0.1 * (n_cal + 1) - 1) / n_cal
    table = "\n".join([
        f"Data {args.data}, slices {slices[0]}-{slices[-1]} (one slice in {args.test_every} is a test slice: "
        f"{n_cal} calibration slices {slices[cal_idx].tolist()}, {len(test_idx)} test slices "
        f"{slices[test_idx].tolist()}); {args.particles} particles, "
        f"{args.nfe} network evaluations, the registry settings of each family (beside each sampler; chosen on "
        "validation data that never includes these slices, as invdiff/problems/defaults.toml records"
        + ("; in place of the registry's: " + "; ".join(f"{n} on {f}: {settings_text(o)}"
                                                         for (n, f), o in args.overrides.items())
           + ", as that file's comment beside the entry records" if args.overrides else "") + "). "
        "Coverage is the fraction of object pixels whose target lies inside the interval, averaged over the test "
        "slices (the quantity conformal risk control guarantees in expectation: ≥ the level). "
        f"With {n_cal} calibration slices the 90 % threshold is the smallest whose mean miss on them is at most "
        f"(0.1·{n_cal + 1} − 1)/{n_cal} = {miss:.3f}, i.e. coverage ≥ {1 - miss:.3f} on them: the "
        "finite-sample margin that the guarantee costs, which shrinks as 1/(n+1). Slices run in batches as "
        "`invdiff reconstruct` groups them (at most 8, a working set under 4 GiB); runs cached before the "
        "script grouped them ran all slices in one batch (the last column): the same settings and slices, "
        "other random streams.", "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head), *lines, "",
        *([f"Not run (no cached run; rerun without --cached-only): {', '.join(missing)}.", ""] if missing else []),
        *[f"![{t}](figures/{t}_calibration.png) ![{t}](figures/{t}_uncertainty.png)" for t in args.tasks
          if (args.out / "figures" / f"{t}_calibration.png").is_file() and any(r["task"] == t for r in rows)]])
    script_page(args.out, "Calibrated intervals on held-out slices", rows, table)


if __name__ == "__main__":
    main()
