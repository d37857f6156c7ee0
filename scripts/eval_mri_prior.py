"""Evidence for the shipped MRI prior: RED-Diff (or DPS) with it against zero-filled and CG-SENSE, 4x and 8x.

Test data: the embedded demo scan (Colin27, a subject the prior never saw: it was trained on the
ICBM152 average and nibabel's test volume with ``--exclude-subject colin27``). Masks: fastMRI's
equispaced-fraction masks (4x and 8x, both with 8 % centre lines: see CENTRE), fastMRI's per-file seed. Coil maps:
ESPIRiT from the centre lines of the masked data; noise level: estimated from the data.

The sampler's settings (RED-Diff's ``lam:lr``, DPS's step size) are chosen on a *validation* volume — two ICBM152 slices
simulated like the demo scan (another seed) — never on the test subject. CG-SENSE is reported at
every iteration count tried, and its best count on the *test* data is what the table compares with
(an oracle choice that favours the baseline).

Needs the validation anatomy: ``pip install -e '.[anatomy]'`` (nilearn). Run:
``python scripts/eval_mri_prior.py [--prior PATH] [--out outputs/eval_mri_prior]``; prints a
Markdown table and writes ``results.json``, ``table.md`` and ``figure.png``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from invdiff.datasets import FastMRIFile, demo_scan
from invdiff.io import atomic_write, atomic_write_json, atomic_write_text
from invdiff.metrics import fastmri_volume_metrics
from invdiff.operators import MaskFunc
from invdiff.priors import load_prior
from invdiff.problems.fastmri import MRIProblem, cg_sense, mri_problem
from invdiff.problems.image_tasks import mri_validation_file
from invdiff.samplers import run
from invdiff.samplers.dps import DPS
from invdiff.samplers.red_diff import REDDiff

# fastMRI pairs 8x with 4 % centre lines; at 128 columns that is 5 lines, too few for ESPIRiT's
# calibration (sigpy's calibration region is square), so 8x keeps 8 % (10 lines) here.
CENTRE = {4: 0.08, 8: 0.08}


def make_sampler(name: str, steps: int, setting: str):
    """``setting``: DPS's step size ``zeta``, or RED-Diff's ``lam:lr``."""
    if name == "dps":
        return DPS(steps, step_size=float(setting))
    lam, lr = (float(v) for v in setting.split(":"))
    return REDDiff(steps, lam=lam, lr=lr)


def reconstruct(problem: MRIProblem, prior, sampler, particles: int, seed: int):
    post = run(sampler, problem.measurement, prior, n_particles=particles,
               generator=torch.Generator().manual_seed(seed), progress=False)
    return problem.magnitude(post.mean), post.diagnostics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default=None, help="prior checkpoint (default: the shipped MRI prior)")
    parser.add_argument("--out", type=Path, default=Path("outputs/eval_mri_prior"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--particles", type=int, default=1)
    parser.add_argument("--sampler", choices=["red-diff", "dps"], default="red-diff")
    parser.add_argument("--grid", nargs="+", default=None,
                        help="settings tried on the validation volume: DPS step sizes, or RED-Diff lam:lr pairs")
    parser.add_argument("--cg-iterations", type=int, nargs="+", default=[5, 10, 20, 40, 80, 160])
    parser.add_argument("--accelerations", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.prior is None:
        from invdiff.priors.shipped import shipped_prior_path

        args.prior = shipped_prior_path("mri_brain_128")
    prior = load_prior(args.prior)
    if args.grid is None:
        args.grid = ["0.1", "0.3", "1"] if args.sampler == "dps" else ["32:0.001", "128:0.001", "512:0.001", "128:0.0003"]
    results = {"prior": str(args.prior), "sampler": args.sampler, "steps": args.steps, "particles": args.particles,
               "seed": args.seed, "accelerations": {}}
    figure_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        val_file = mri_validation_file(Path(tmp))
        test_file = FastMRIFile.open(demo_scan())
        for acc in args.accelerations:
            mask_func = MaskFunc("equispaced_fraction", (CENTRE[acc],), (acc,))
            val = mri_problem(val_file, mask_func)
            tuning = {}
            for setting in args.grid:
                recon, _ = reconstruct(val, prior, make_sampler(args.sampler, args.steps, setting), 1, args.seed)
                tuning[setting] = fastmri_volume_metrics(val.target, recon)["PSNR"]
                print(f"{acc}x validation: {args.sampler} {setting}: PSNR {tuning[setting]:.2f} dB", flush=True)
            best = max(tuning, key=tuning.get)
            test = mri_problem(test_file, mask_func)
            row = {"mask_columns": int(test.mask.sum()), "noise_std_estimate": test.noise_std_estimate,
                   "zero_filled": fastmri_volume_metrics(test.target, test.zero_filled)}
            cg = {}
            for k in args.cg_iterations:
                x = cg_sense(test.measurement, k)
                cg[k] = fastmri_volume_metrics(test.target, test.magnitude(x))
            best_k = max(cg, key=lambda k: cg[k]["PSNR"])
            row["cg_sense"] = {"per_iterations": cg, "best_iterations": best_k, "best": cg[best_k]}
            start = time.perf_counter()
            recon, diag = reconstruct(test, prior, make_sampler(args.sampler, args.steps, best), args.particles,
                                      args.seed)
            row["prior_sampler"] = {**fastmri_volume_metrics(test.target, recon), "setting": best,
                          "validation_psnr": tuning, "network_evals": diag.network_evals,
                          "vjp_evals": diag.vjp_evals, "wall_time_s": round(time.perf_counter() - start, 1)}
            results["accelerations"][acc] = row
            figure_rows.append((acc, test.target, test.zero_filled, test.magnitude(cg_sense(test.measurement, best_k)),
                                recon, best_k))
            print(json.dumps({acc: {k: v for k, v in row.items() if k != "cg_sense"}}, indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "results.json", results)
    table = format_table(results)
    atomic_write_text(args.out / "table.md", table)
    figure(args.out / "figure.png", figure_rows)
    print(table)


def format_table(results: dict) -> str:
    lines = ["| acceleration | method | NMSE | PSNR (dB) | SSIM |", "|---|---|---|---|---|"]
    for acc, row in results["accelerations"].items():
        cg = row["cg_sense"]
        for name, m in (("zero-filled RSS", row["zero_filled"]),
                        (f"CG-SENSE ({cg['best_iterations']} it., best on test)", cg["best"]),
                        (f"{results['sampler']}, {results['steps']} steps ({row['prior_sampler']['setting']})",
                         row["prior_sampler"])):
            lines.append(f"| {acc}x | {name} | {m['NMSE']:.4f} | {m['PSNR']:.2f} | {m['SSIM']:.4f} |")
    return "\n".join(lines) + "\n"


def figure(path: Path, rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.7 * len(rows)), squeeze=False)
    for r, (acc, target, zf, cg, dps, k) in enumerate(rows):
        s = len(target) // 2
        vmax = float(target[s].max())
        for a, (im, title) in zip(axes[r], ((target, "fully sampled RSS"), (zf, f"{acc}x zero-filled"),
                                            (cg, f"{acc}x CG-SENSE ({k} it.)"), (dps, f"{acc}x with the prior"))):
            a.imshow(im[s], cmap="gray", vmin=0, vmax=vmax)
            a.set_title(title, fontsize=9)
            a.axis("off")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
