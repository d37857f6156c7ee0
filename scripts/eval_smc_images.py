"""SMC samplers on the image tasks: posterior mean quality, uncertainty maps and calibration.

For each task of invdiff.benchmark.image_tasks (test problem, shipped prior) the approximation-free
ensemble (SDE) and TDS run with ``--particles`` weighted particles per item and ``--nfe`` network
evaluations. Reported: NMSE / PSNR / SSIM of the weighted posterior mean (fastMRI definitions, on
magnitudes as in scripts/eval_image_tasks.py), the final and smallest ESS, wall time, and the
coverage of the pixel-wise central credible intervals at 50-95 % over the object (pixels whose
target exceeds 5 % of its maximum). Figures per task and sampler: target, posterior mean, weighted
standard deviation, absolute error, and the calibration curve (coverage against nominal level).

    python scripts/eval_smc_images.py [--tasks mri-4x ct-30] [--particles 4] [--nfe 50] [--out outputs/smc_images]

Settings are fixed, not tuned on validation (TDS twist inflation 1, the value the Gaussian-mixture
suite favours; resampling at ESS < N/2). One ``TASK.json`` per task is written atomically; a rerun
skips finished tasks (``--force`` redoes them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from invdiff.benchmark.calibration import interval_coverage
from invdiff.benchmark.image_tasks import image_task
from invdiff.io import atomic_write, atomic_write_json, atomic_write_text
from invdiff.metrics import fastmri_volume_metrics
from invdiff.priors import shipped_prior
from invdiff.recon.job import particle_magnitudes
from invdiff.samplers import Posterior, run
from invdiff.samplers.ensemble import ApproximationFreeEnsemble
from invdiff.samplers.tds import TDS

LEVELS = [0.5, 0.8, 0.9, 0.95]


def samplers(nfe: int) -> dict:
    return {"AFE (SDE)": ApproximationFreeEnsemble(nfe, "sde"), "TDS": TDS(nfe, twist_inflation=1.0)}


def figure(path: Path, target: np.ndarray, mean: np.ndarray, std: np.ndarray, coverage: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 5, figsize=(17, 3.6))
    vmax = float(np.percentile(target, 99.5))
    for a, img, name, kw in [(ax[0], target, "target", dict(vmin=0, vmax=vmax, cmap="gray")),
                             (ax[1], mean, "weighted posterior mean", dict(vmin=0, vmax=vmax, cmap="gray")),
                             (ax[2], std, "weighted std", dict(cmap="magma")),
                             (ax[3], np.abs(mean - target), "|mean - target|", dict(cmap="magma"))]:
        im = a.imshow(img, **kw)
        a.set_title(name)
        a.axis("off")
        if name != "target" and "mean" not in name[:8]:
            fig.colorbar(im, ax=a, fraction=0.046)
    levels = sorted(coverage)
    ax[4].plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax[4].plot(levels, [coverage[k] for k in levels], "o-", label="measured")
    ax[4].set_xlabel("nominal level of the central interval")
    ax[4].set_ylabel("fraction of object pixels covered")
    ax[4].set_xlim(0, 1)
    ax[4].set_ylim(0, 1)
    ax[4].legend(loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)


def evaluate(task: str, particles: int, nfe: int, seed: int, out: Path) -> dict:
    problem = image_task(task, "test")
    prior = shipped_prior(problem.prior_name)
    target = torch.from_numpy(np.asarray(problem.target, dtype=np.float32))
    region = target > 0.05 * target.amax(dim=(-2, -1), keepdim=True)
    rows = {}
    for name, sampler in samplers(nfe).items():
        post = run(sampler, problem.measurement, prior, n_particles=particles,
                   generator=torch.Generator().manual_seed(seed), progress=True)
        scored = Posterior(particle_magnitudes(problem.magnitude, post.samples).to(torch.float64), post.log_weights)
        mean, std = scored.mean, scored.std
        coverage = interval_coverage(scored.samples, scored.weights, target.to(torch.float64), LEVELS, region)
        ess = torch.stack(post.diagnostics.ess_history)
        rows[name] = {**fastmri_volume_metrics(problem.target, mean.numpy()),
                      "mean_std_over_object": float(std[region].mean()),
                      "coverage": {str(k): v for k, v in coverage.items()},
                      "ess_final": float(post.ess.min()), "ess_min": float(ess.min()),
                      "resampling_steps": int(torch.stack(post.diagnostics.resampled).any(1).sum()),
                      "particles": particles, "network_evals": post.diagnostics.network_evals,
                      "vjp_evals": post.diagnostics.vjp_evals, "wall_time_s": post.diagnostics.wall_time}
        slug = name.split()[0].lower()
        figure(out / f"{task}_{slug}.png", target[0].numpy(), mean[0].numpy(), std[0].numpy(), coverage,
               f"{task}, {name}: {particles} particles, {nfe} NFE, PSNR {rows[name]['PSNR']:.2f} dB")
        print(f"{task} {name}: PSNR {rows[name]['PSNR']:.2f} SSIM {rows[name]['SSIM']:.4f} coverage "
              f"{coverage} ESS min {rows[name]['ess_min']:.1f} {post.diagnostics.wall_time:.0f} s", flush=True)
    return rows


def table(results: dict) -> str:
    lines = ["| task | sampler | PSNR | SSIM | NMSE | coverage 50 / 80 / 90 / 95 % | min ESS | NFE | VJPs | wall time |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for task, rows in results.items():
        for name, r in rows.items():
            cov = " / ".join(f"{100 * r['coverage'][str(k)]:.0f}" for k in LEVELS)
            lines.append(f"| {task} | {name} ({r['particles']} particles) | {r['PSNR']:.2f} | {r['SSIM']:.4f} "
                         f"| {r['NMSE']:.4f} | {cov} | {r['ess_min']:.1f} | {r['network_evals']} | {r['vjp_evals']} "
                         f"| {r['wall_time_s']:.0f} s |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["mri-4x", "ct-30"])
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--nfe", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("outputs/smc_images"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for task in args.tasks:
        path = args.out / f"{task}.json"
        if path.exists() and not args.force:
            print(f"{task}: done already ({path})")
            continue
        atomic_write_json(path, evaluate(task, args.particles, args.nfe, args.seed, args.out))
    results = {p.stem: json.loads(p.read_text()) for p in sorted(args.out.glob("*.json"))}
    text = table(results)
    atomic_write_text(args.out / "table.md", text)
    print(text)


if __name__ == "__main__":
    main()
