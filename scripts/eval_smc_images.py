"""SMC samplers on the image tasks: posterior mean quality, uncertainty maps and calibration.

For each task of invdiff.problems.image_tasks (test problem, shipped prior) the approximation-free
ensemble (SDE, exact proximal maps) and TDS run with ``--particles`` weighted particles per item and
``--nfe`` network evaluations. Reported: NMSE / PSNR / SSIM of the weighted posterior mean (fastMRI
definitions, on magnitudes as in scripts/eval_image_tasks.py), the smallest ESS, the steps that
resampled, wall time, and the coverage of the pixel-wise central credible intervals at 50-95 % over
the object (pixels whose target exceeds 5 % of its maximum).

Two readings of the same particles are scored: *weighted* (the SMC estimate: the final log-weights)
and *equal weights* (the particle cloud with its weights dropped: a diagnostic of what the proposal
dynamics spread, not a posterior estimate). When the weights are degenerate (ESS 1) the weighted
interval has zero width and only the second reading shows a spread.

Figures per task and sampler: target, weighted posterior mean, weighted and equal-weight standard
deviation, absolute error, and the calibration curves (coverage against nominal level).

    python scripts/eval_smc_images.py [--tasks mri-4x ct-30] [--particles 8] [--nfe 100] [--out outputs/smc_images]

Settings are the registry's per-family defaults (TDS: operator-norm scaling, twist inflation 1 on MRI
and 0.1 on CT; resampling at ESS < N/2); they were not tuned for this evaluation.
Each sampler also runs without resampling ("no resampling"): its N particles are then N independent
runs of the proposal dynamics, the image-scale version of "one run of N particles against N runs of one". One ``TASK_SAMPLER.json`` per run is written
atomically; a rerun skips finished runs (``--force`` redoes them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from invdiff.io import atomic_write, atomic_write_json, atomic_write_text
from invdiff.metrics import fastmri_volume_metrics
from invdiff.metrics.calibration import interval_coverage
from invdiff.priors import shipped_prior
from invdiff.problems.image_tasks import image_task
from invdiff.reconstruct.job import particle_magnitudes
from invdiff.samplers import Posterior, run
from invdiff.samplers.registry import make_sampler

LEVELS = [0.5, 0.8, 0.9, 0.95]


# name -> (file slug, registry name, overrides). The registry supplies the per-family settings (TDS:
# twist inflation 1 on MRI and 0.1 on CT, with the operator-norm scaling). "no resampling": the N
# particles are N independent runs of the sampler's proposal dynamics (their weights are still scored).
SAMPLERS = {
    "AFE (SDE)": ("afe", "afe", {}),
    "AFE (SDE), no resampling": ("afe-independent", "afe", {"resample_threshold": 0.0}),
    "TDS": ("tds", "tds", {}),
    "TDS, no resampling": ("tds-independent", "tds", {"resample_threshold": 0.0}),
}


def figure(path: Path, target: np.ndarray, mean: np.ndarray, std: np.ndarray, cloud_std: np.ndarray,
           coverage: dict[str, dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 6, figsize=(21, 3.8))
    vmax = float(np.percentile(target, 99.5))
    smax = float(max(np.percentile(std, 99.5), np.percentile(cloud_std, 99.5), 1e-6))
    panels = [(target, "target", dict(vmin=0, vmax=vmax, cmap="gray"), False),
              (mean, "weighted posterior mean", dict(vmin=0, vmax=vmax, cmap="gray"), False),
              (np.abs(mean - target), "|mean - target|", dict(vmin=0, vmax=0.25 * vmax, cmap="magma"), True),
              (std, "weighted std", dict(vmin=0, vmax=smax, cmap="magma"), True),
              (cloud_std, "equal-weight std (diagnostic)", dict(vmin=0, vmax=smax, cmap="magma"), True)]
    for a, (img, name, kw, bar) in zip(ax, panels):
        im = a.imshow(img, **kw)
        a.set_title(name)
        a.axis("off")
        if bar:
            fig.colorbar(im, ax=a, fraction=0.046)
    ax[5].plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    for reading, cov in coverage.items():
        levels = sorted(float(k) for k in cov)
        ax[5].plot(levels, [cov[str(k)] for k in levels], "o-", label=reading)
    ax[5].set_xlabel("nominal level of the central interval")
    ax[5].set_ylabel("fraction of object pixels covered")
    ax[5].set_xlim(0, 1)
    ax[5].set_ylim(0, 1)
    ax[5].legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)


def evaluate(problem, prior, name: str, particles: int, nfe: int, seed: int, out: Path) -> dict:
    """Run one sampler on one task's test problem; write its figure; return its row."""
    slug, registry_name, overrides = SAMPLERS[name]
    sampler = make_sampler(registry_name, nfe, problem.family, overrides)
    target = torch.from_numpy(np.asarray(problem.target, dtype=np.float32))
    region = target > 0.05 * target.amax(dim=(-2, -1), keepdim=True)
    truth = target.to(torch.float64)
    post = run(sampler, problem.measurement, prior, n_particles=particles,
               generator=torch.Generator().manual_seed(seed), progress=True)
    magnitudes = particle_magnitudes(problem.magnitude, post.samples).to(torch.float64)
    weighted = Posterior(magnitudes, post.log_weights)
    cloud = Posterior(magnitudes, torch.zeros_like(post.log_weights))
    mean, std = weighted.mean, weighted.std
    coverage = {reading: {str(k): v for k, v in interval_coverage(p.samples, p.weights, truth, LEVELS, region).items()}
                for reading, p in (("weighted", weighted), ("equal weights", cloud))}
    ess = torch.stack(post.diagnostics.ess_history)
    row = {"task": problem.task, "sampler": name, **fastmri_volume_metrics(problem.target, mean.numpy()),
           "equal_weight_mean_PSNR": fastmri_volume_metrics(problem.target, cloud.mean.numpy())["PSNR"],
           "mean_std_over_object": float(std[region].mean()),
           "equal_weight_std_over_object": float(cloud.std[region].mean()),
           "mean_abs_error_over_object": float((mean - truth).abs()[region].mean()),
           "coverage": coverage["weighted"], "equal_weight_coverage": coverage["equal weights"],
           "ess_final": float(post.ess.min()), "ess_min": float(ess.min()),
           "resampling_steps": int(torch.stack(post.diagnostics.resampled).any(1).sum()),
           "particles": particles, "network_evals": post.diagnostics.network_evals,
           "vjp_evals": post.diagnostics.vjp_evals, "wall_time_s": post.diagnostics.wall_time}
    figure(out / f"{problem.task}_{slug}.png", target[0].numpy(), mean[0].numpy(), std[0].numpy(),
           cloud.std[0].numpy(), coverage, f"{problem.task}, {name}: {particles} particles, {nfe} NFE, "
           f"PSNR {row['PSNR']:.2f} dB, min ESS {row['ess_min']:.1f}")
    print(f"{problem.task} {name}: PSNR {row['PSNR']:.2f} SSIM {row['SSIM']:.4f} coverage {coverage} "
          f"ESS min {row['ess_min']:.1f} {post.diagnostics.wall_time:.0f} s", flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| task | sampler | PSNR | SSIM | coverage 50 / 80 / 90 / 95 %, weighted | same, equal weights "
             "| mean \\|error\\| / weighted std / equal-weight std | PSNR, equal-weight mean | min ESS "
             "| resampled steps | NFE | VJPs | wall time |",
             "|---|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cov = " / ".join(f"{100 * r['coverage'][str(k)]:.0f}" for k in LEVELS)
        cloud = " / ".join(f"{100 * r['equal_weight_coverage'][str(k)]:.0f}" for k in LEVELS)
        spread = (f"{r['mean_abs_error_over_object']:.4f} / {r['mean_std_over_object']:.4f} / "
                  f"{r['equal_weight_std_over_object']:.4f}")
        lines.append(f"| {r['task']} | {r['sampler']} ({r['particles']} particles) | {r['PSNR']:.2f} | {r['SSIM']:.4f} "
                     f"| {cov} | {cloud} | {spread} | {r['equal_weight_mean_PSNR']:.2f} | {r['ess_min']:.1f} "
                     f"| {r['resampling_steps']} | {r['network_evals']} | {r['vjp_evals']} | {r['wall_time_s']:.0f} s |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["mri-4x", "ct-30"])
    parser.add_argument("--particles", type=int, default=8)
    parser.add_argument("--nfe", type=int, default=100)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("outputs/smc_images"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for task in args.tasks:
        todo = [n for n in args.samplers if args.force or not (args.out / f"{task}_{SAMPLERS[n][0]}.json").exists()]
        if not todo:
            print(f"{task}: done already")
            continue
        problem = image_task(task, "test")
        prior = shipped_prior(problem.prior_name)
        for name in todo:
            row = evaluate(problem, prior, name, args.particles, args.nfe, args.seed, args.out)
            atomic_write_json(args.out / f"{task}_{SAMPLERS[name][0]}.json", row)
    rows = [json.loads(p.read_text()) for p in sorted(args.out.glob("*.json"))]
    text = table(rows)
    atomic_write_text(args.out / "table.md", text)
    print(text)

if __name__ == "__main__":
    main()
