"""Exactness of the SMC samplers on the Gaussian-mixture suite: error against the particle count.

For every problem of invdiff.problems.gmm (test draw ``--seed``) and every SMC sampler, at a
fixed number of steps, the weighted particles of one run are scored against the exact posterior for
N = 16, 64, 256 (``--particles``), each over ``--repeats`` seeds: sliced Wasserstein distance beside
the distance between two independent exact sets of the same size (the floor), the errors of the
weighted mean and covariance, and the mode-weight total variation. Beside each run, the same N
particles *without interaction* — no resampling, weights dropped — which is what N independent
single-particle runs return (without resampling the particles of a batch never meet).

    python scripts/smc_convergence.py [--steps 500] [--particles 16 64 256] [--repeats 3] [--samplers TDS ...]
        [--out docs/results/smc-convergence]

Writes ``smc_convergence.json`` and ``smc_convergence.md`` (atomically) and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import torch

from invdiff.benchmark.report import script_page
from invdiff.problems.gmm import score_posterior, standard_problems
from invdiff.samplers import run
from invdiff.samplers.ensemble import ApproximationFreeEnsemble
from invdiff.samplers.tds import TDS

METRICS = ["sw", "sw_exact", "mean_rel", "cov_rel", "mode_tv", "ess"]


def samplers(steps: int, resample_threshold: float = 0.5) -> dict:
    """Name -> sampler at about ``steps`` network evaluations."""
    return {
        "AFE (SDE)": ApproximationFreeEnsemble(steps, "sde", resample_threshold=resample_threshold),
        "AFE (ODE + Langevin)": ApproximationFreeEnsemble(steps // 2, "ode", corrector_steps=1,
                                                          resample_threshold=resample_threshold),
        "TDS": TDS(steps, twist_inflation=1.0, resample_threshold=resample_threshold),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--particles", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samplers", nargs="+", default=None, help="a subset of the sampler names (default: all)")
    parser.add_argument("--out", type=Path, default=Path("docs/results/smc-convergence"))
    args = parser.parse_args()
    names = args.samplers or list(samplers(args.steps))
    unknown = sorted(set(names) - set(samplers(args.steps)))
    if unknown:
        parser.error(f"unknown samplers {unknown}; known: {sorted(samplers(args.steps))}")
    rows = []
    for problem in standard_problems(torch.Generator().manual_seed(args.seed)):
        for name in names:
            for n in args.particles:
                for mode in ("one run", "independent"):
                    scores = []
                    for r in range(args.repeats):
                        sampler = samplers(args.steps, 0.5 if mode == "one run" else 0.0)[name]
                        post = run(sampler, problem.measurement, problem.prior, n_particles=n,
                                   generator=torch.Generator().manual_seed(1000 * r + 1), progress=False)
                        if mode == "independent":
                            post = dataclasses.replace(post, log_weights=torch.zeros_like(post.log_weights))
                        s = score_posterior(problem, post, torch.Generator().manual_seed(1000 * r + 2))
                        scores.append({**s, "network_evals": post.diagnostics.network_evals,
                                       "wall_time_s": post.diagnostics.wall_time})
                    row = {"problem": problem.name, "sampler": name, "particles": n, "mode": mode,
                           "network_evals": scores[0]["network_evals"], "repeats": args.repeats,
                           **{k: statistics.mean(s[k] for s in scores) for k in METRICS + ["wall_time_s"]}}
                    rows.append(row)
                    print(f"{problem.name:<14} {name:<22} N={n:<4} {mode:<12} SW {row['sw']:.3f} (floor {row['sw_exact']:.3f}) "
                          f"mean {row['mean_rel']:.3f} cov {row['cov_rel']:.3f} modes {row['mode_tv']:.3f}", flush=True)
    lines = [f"SMC samplers on the Gaussian-mixture suite: {args.steps} network evaluations, mean over {args.repeats} "
             f"seeds; 'independent' = the same N particles without resampling or weights (N single-particle runs)", "",
             "| problem | sampler | N | SW one run | SW independent | SW floor | mean err. one run / indep. "
             "| cov err. one run / indep. | mode TV one run / indep. |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for one in (r for r in rows if r["mode"] == "one run"):
        ind = next(r for r in rows if r["mode"] == "independent" and all(r[k] == one[k] for k in ("problem", "sampler", "particles")))
        lines.append(f"| {one['problem']} | {one['sampler']} | {one['particles']} | {one['sw']:.3f} | {ind['sw']:.3f} "
                     f"| {one['sw_exact']:.3f} | {one['mean_rel']:.3f} / {ind['mean_rel']:.3f} "
                     f"| {one['cov_rel']:.3f} / {ind['cov_rel']:.3f} | {one['mode_tv']:.3f} / {ind['mode_tv']:.3f} |")
    table = "\n".join(lines) + "\n"
    script_page(args.out, "SMC samplers against exact posteriors", rows, table)


if __name__ == "__main__":
    main()
