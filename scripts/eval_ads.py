"""Active subsampling (ADS) against fixed masks at equal line budgets, on the held-out demo scan.

For each acceleration (4x, 8x; 8 % centre), the same sampler with the same particles, steps and seed
reconstructs slices 1 and 2 of the demo scan (Colin27, held out of the shipped prior's training) from

* fastMRI's ``equispaced_fraction`` and ``random`` masks (per-file seed; fastMRI's random mask draws
  each line with a probability, so its line count differs from the budget),
* a random mask with exactly the budget's line count (the same centre lines plus uniformly drawn
  columns, seeded per run): the equal-budget random mask,
* ADS: the same centre lines to start, then the remaining lines chosen one at a time by maximum
  entropy over the first 75 % of the steps (invdiff.active),
* ADS with a random policy: the same schedule, lines drawn uniformly (isolates the policy),

and reports NMSE / PSNR / SSIM of the posterior mean (fastMRI definitions), mean ± std over the
sampler seeds. A pixel experiment does
the same for inpainting of the middle slice (5 % random pixels to start, 20 % at the end). The
policy's cost per acquisition is reported against one network evaluation of all particles.

    python scripts/eval_ads.py [--sampler dps] [--particles 4] [--steps 100] [--seeds 0 1] [--out docs/results/ads]

Writes the results page (README.md, results.json) and figures (masks.png: the masks and the order ADS chose them in;
recons.png) atomically; prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from invdiff.active import AcquisitionPlan, Oracle, run_active
from invdiff.active.candidates import candidates_for
from invdiff.datasets import FastMRIFile, demo_scan
from invdiff.benchmark.report import script_page
from invdiff.io import atomic_write
from invdiff.measurement import Measurement
from invdiff.metrics import fastmri_volume_metrics
from invdiff.operators import Inpainting
from invdiff.priors import shipped_prior
from invdiff.problems import configured_sampler
from invdiff.problems.active_mri import mri_active_setup, sampled_columns
from invdiff.samplers import run
from invdiff.timing import median_seconds


def equal_count_random(setup, seed: int) -> tuple[Measurement, torch.Tensor]:
    """The equal-budget random mask: ``setup.plan``'s centre lines plus ``budget - centre`` columns drawn
    uniformly from the acquired ones, on the ADS template's maps and units; the measurement and ``(W,)`` mask."""
    plan = setup.plan
    free = torch.nonzero(plan.allowed & ~plan.initial).flatten()
    g = torch.Generator().manual_seed(1000 + seed)
    mask = plan.initial.clone()
    mask[free[torch.randperm(len(free), generator=g)[: plan.budget - int(plan.initial.sum())]]] = True
    cands = candidates_for(setup.measurement)
    acquired = mask.expand(setup.measurement.batch_size, -1)
    return setup.measurement.with_mask(cands.mask(acquired), y=setup.oracle.measure(cands, acquired)), mask


def mri_rows(args, prior, accelerations, seed: int) -> tuple[list[dict], dict]:
    rows, figs = [], {}
    file = FastMRIFile.open(demo_scan())
    for acc in accelerations:
        setup = mri_active_setup(file, acc, slices=args.slices)
        masks = {}
        ref = setup.reference
        problems = [(f"fixed {kind}", problem.measurement, sampled_columns(problem), problem)
                    for kind, problem in setup.fixed.items()]
        problems.append(("fixed random, equal count", *equal_count_random(setup, seed), ref))  # ref's maps and units
        for name, measurement, mask, problem in problems:
            post = run(configured_sampler(args.sampler, args.steps, "mri"), measurement, prior,
                       n_particles=args.particles, generator=torch.Generator().manual_seed(seed), progress=True)
            recon = problem.to_image(post.mean)
            rows.append({"task": f"mri-{acc}x", "method": name, "lines": int(mask.sum()),
                         **fastmri_volume_metrics(ref.target, recon), "wall_s": post.diagnostics.wall_time})
            masks[name] = mask
            figs[(acc, name)] = recon
        for policy in ("entropy", "random"):
            res = run_active(configured_sampler(args.sampler, args.steps, "mri"), setup.measurement, prior, setup.oracle,
                             setup.plan, n_particles=args.particles, generator=torch.Generator().manual_seed(seed),
                             policy=policy, progress=True)
            recon = setup.reference.to_image(res.posterior.mean)
            name = "ADS" if policy == "entropy" else "ADS, random policy"
            n_acq = len(set(res.steps))
            rows.append({"task": f"mri-{acc}x", "method": name, "lines": int(res.acquired[0].sum()),
                         **fastmri_volume_metrics(setup.reference.target, recon),
                         "wall_s": res.posterior.diagnostics.wall_time,
                         "policy_s_per_acquisition": res.policy_seconds / max(1, n_acq)})
            masks[name] = res.acquired[0]
            figs[(acc, name)] = recon
            if policy == "entropy":
                figs[(acc, "order")] = res.order[0]
                figs[(acc, "initial")] = setup.plan.initial
        figs[(acc, "masks")] = masks
        figs[(acc, "target")] = setup.reference.target
    return rows, figs


def pixel_rows(args, prior, seed: int) -> list[dict]:
    file = FastMRIFile.open(demo_scan())
    image = file.target(file.num_slices // 2).to(torch.float64)
    image = image / torch.quantile(image.flatten(), 0.995)
    x = torch.stack([image, torch.zeros_like(image)]).unsqueeze(0).to(torch.float32)
    g = torch.Generator().manual_seed(11)
    oracle = Oracle(x + 0.02 * torch.randn(x.shape, generator=g))
    k = x.shape[-1] * x.shape[-2]
    initial = torch.zeros(k, dtype=torch.bool)
    initial[torch.randperm(k, generator=g)[: k // 20]] = True
    budget, per = k // 5, k // 100
    template = Measurement(Inpainting(torch.ones(x.shape[-2:])), oracle.y_full, 0.02)
    plan = AcquisitionPlan(initial, budget=budget, per_acquisition=per)
    rows = []
    fixed = initial.clone()
    extra = torch.randperm(k, generator=g)
    fixed[extra[~initial[extra]][: budget - int(initial.sum())]] = True
    m = template.with_mask(fixed.reshape(1, 1, *x.shape[-2:]).float(), y=oracle.y_full * fixed.reshape(x.shape[-2:]))
    post = run(configured_sampler(args.sampler, args.steps, "image"), m, prior, n_particles=args.particles,
               generator=torch.Generator().manual_seed(seed), progress=True)
    truth = x.norm(dim=1).numpy()
    rows.append({"task": "inpaint-20%", "method": "fixed random pixels", "lines": budget,
                 **fastmri_volume_metrics(truth, post.mean.norm(dim=1).numpy()), "wall_s": post.diagnostics.wall_time})
    for policy in ("entropy", "random"):
        res = run_active(configured_sampler(args.sampler, args.steps, "image"), template, prior, oracle, plan,
                         n_particles=args.particles, generator=torch.Generator().manual_seed(seed), policy=policy,
                         progress=True)
        rows.append({"task": "inpaint-20%", "method": "ADS" if policy == "entropy" else "ADS, random policy",
                     "lines": int(res.acquired[0].sum()),
                     **fastmri_volume_metrics(truth, res.posterior.mean.norm(dim=1).numpy()),
                     "wall_s": res.posterior.diagnostics.wall_time,
                     "policy_s_per_acquisition": res.policy_seconds / max(1, len(set(res.steps)))})
    return rows


def figures(out: Path, figs: dict, accelerations) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(accelerations), 2, figsize=(11, 2.6 * len(accelerations)), squeeze=False)
    for r, acc in enumerate(accelerations):
        masks = figs[(acc, "masks")]
        names = list(masks)
        axes[r, 0].imshow(torch.stack([masks[n].float() for n in names]).numpy(), aspect="auto", cmap="gray",
                          interpolation="nearest")
        axes[r, 0].set_yticks(range(len(names)), names, fontsize=7)
        axes[r, 0].set_title(f"{acc}x: final masks (first slice), columns left to right", fontsize=8)
        order = figs[(acc, "order")]
        cum = figs[(acc, "initial")].numpy().astype(float)
        grow = [cum.copy()]
        for c in order.tolist():  # 1: measured before, 2: acquired in this row
            cum[c] = 1.0
            row = cum.copy()
            row[c] = 2.0
            grow.append(row)
        grow = np.stack(grow)
        axes[r, 1].imshow(grow, aspect="auto", cmap="magma", interpolation="nearest")
        axes[r, 1].set_title(f"{acc}x: ADS mask growing (row 0: centre lines; then one row per acquisition, "
                             "new line brightest)", fontsize=8)
        axes[r, 1].set_ylabel("acquisition", fontsize=7)
    fig.tight_layout()
    atomic_write(out / "masks.png", lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    methods = [k[1] for k in figs if k[0] == accelerations[0] and k[1] not in ("masks", "order", "initial", "target")]
    fig, axes = plt.subplots(len(accelerations), len(methods) + 1, figsize=(2.4 * (len(methods) + 1),
                                                                              2.5 * len(accelerations)), squeeze=False)
    for r, acc in enumerate(accelerations):
        target = figs[(acc, "target")][1]
        vmax = float(np.percentile(target, 99.5))
        for c, (name, img) in enumerate([("target", target)] + [(m, figs[(acc, m)][1]) for m in methods]):
            axes[r, c].imshow(img, cmap="gray", vmin=0, vmax=vmax)
            axes[r, c].set_title(f"{acc}x {name}" if c else name, fontsize=7)
            axes[r, c].axis("off")
    fig.tight_layout()
    atomic_write(out / "recons.png", lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


def summarise(rows: list[dict]) -> list[dict]:
    """Rows of the same task and method over seeds -> mean and std of each metric."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["method"]), []).append(r)
    out = []
    for (task, method), rs in groups.items():
        s = {"task": task, "method": method, "seeds": len(rs), "lines": float(np.mean([r["lines"] for r in rs]))}
        for key in ("NMSE", "PSNR", "SSIM", "wall_s", "policy_s_per_acquisition"):
            if key in rs[0]:
                v = np.array([r[key] for r in rs], dtype=float)
                s[key], s[key + "_std"] = float(v.mean()), float(v.std())
        out.append(s)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sampler", default="dps", help="registry name (default dps: ancestral DPS)")
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--accelerations", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--slices", type=int, nargs="+", default=[1, 2], help="demo-scan slices (default 1 2)")
    parser.add_argument("--out", default="docs/results/ads")
    args = parser.parse_args()
    out = Path(args.out)
    prior = shipped_prior("mri_brain_128")
    x = torch.zeros(len(args.slices) * args.particles, 2, 128, 128)
    nfe_s = median_seconds(lambda: prior.denoise(x, 0.5), 3)
    rows, figs = [], None
    for seed in args.seeds:
        seed_rows, seed_figs = mri_rows(args, prior, args.accelerations, seed)
        seed_rows += pixel_rows(args, prior, seed)
        rows += [{**r, "seed": seed} for r in seed_rows]
        figs = figs or seed_figs
    summary = summarise(rows)
    for r in summary:
        if "policy_s_per_acquisition" in r:
            r["policy_vs_one_network_eval"] = r["policy_s_per_acquisition"] / nfe_s
    head = ("| task | method | lines (pixels) | NMSE | PSNR (dB) | SSIM | wall (s) | policy / acquisition (s) |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|\n")
    table = head + "".join(
        f"| {r['task']} | {r['method']} | {r['lines']:.0f} | {r['NMSE']:.4f} ± {r['NMSE_std']:.4f} | "
        f"{r['PSNR']:.2f} ± {r['PSNR_std']:.2f} | {r['SSIM']:.4f} ± {r['SSIM_std']:.4f} | {r['wall_s']:.0f} | "
        + (f"{r['policy_s_per_acquisition']:.3f} ({r['policy_vs_one_network_eval']:.2f}x) |\n"
           if "policy_s_per_acquisition" in r else "|\n") for r in summary)
    table += (f"\nSampler {args.sampler}, {args.particles} particles, {args.steps} steps, mean ± std over seeds "
              f"{args.seeds}; slices {args.slices} of the demo scan; policy cost in seconds and in units of one "
              f"network evaluation of the {len(args.slices) * args.particles} MRI particles ({nfe_s:.3f} s).\n")
    script_page(out, "Active subsampling against fixed masks", {"rows": rows, "summary": summary, "network_eval_s": nfe_s,
                                                                "settings": vars(args)}, table,
                "![masks and the order ADS chose them in](masks.png)\n\n![reconstructions](recons.png)")
    figures(out, figs, args.accelerations)


if __name__ == "__main__":
    main()
