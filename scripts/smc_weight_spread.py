"""How the SMC log-weights spread on an image task as the step count grows.

Runs a sampler without resampling (so the weights accumulate over the whole run) on an image task's
test problem with its shipped prior, for each ``--steps``, and reports the standard deviation of the
final log-weights across each item's particles (mean over items, in nats) and the final ESS. If the
spread fell with the step count, the weight degeneracy on images would be time-discretisation error;
if it stays, it is the method's own weight variance at this dimension.

    python scripts/smc_weight_spread.py [--task ct-30] [--sampler afe] [--steps 25 50 100 200] [--particles 8]

Writes the results page ``--out`` (atomically) and prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from invdiff.benchmark.report import script_page
from invdiff.priors import shipped_prior
from invdiff.problems import configured_sampler, image_task
from invdiff.samplers import run

SAMPLERS = ("afe", "tds", "fps")  # registry names, with their per-family settings and no resampling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="ct-30")
    parser.add_argument("--sampler", default="afe", choices=SAMPLERS)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--particles", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/results/smc-weight-spread"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = image_task(args.task, "test")
    prior = shipped_prior(problem.prior_name)
    rows = []
    for k in args.steps:
        sampler = configured_sampler(args.sampler, k, problem.family, {"resample_threshold": 0.0})
        post = run(sampler, problem.measurement, prior, n_particles=args.particles,
                   generator=torch.Generator().manual_seed(args.seed))
        spread = float(post.log_weights.std(dim=1).mean())
        rows.append({"task": args.task, "sampler": args.sampler, "steps": k, "particles": args.particles,
                     "log_weight_std": spread, "ess_final": float(post.ess.mean()), "PSNR": problem.metrics(post.mean)["PSNR"]})
        print(f"{args.task} {args.sampler} {k} steps: log-weight std {spread:.4g} nats, final ESS "
              f"{rows[-1]['ess_final']:.2f}, PSNR {rows[-1]['PSNR']:.2f}", flush=True)
    lines = [f"Log-weight spread on {args.task}, {args.sampler} without resampling, {args.particles} particles per item",
             "", "| steps | std of final log-weights (nats) | final ESS | PSNR of the weighted mean |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['steps']} | {r['log_weight_std']:.4g} | {r['ess_final']:.2f} | {r['PSNR']:.2f} |" for r in rows]
    script_page(args.out, "SMC log-weight spread on images", rows, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
