"""Where TDS loses the posterior's spread on a Gaussian mixture: the twist's tempering and the particle count.

On the suite's problem with the fewest, sharpest observations (``d16-m2-s0.05``: 16 dimensions, two
projections at noise 0.05, so 14 directions are seen only through the prior), runs TDS at a fixed step
count for each ``--twists`` (``plain``: the paper's ``l(D(x, sigma))``; ``tempered``: inflation 1, the
registry's setting before the Gaussian twist; ``gaussian``: the registry's setting now, see
:mod:`invdiff.samplers.tds`) and ``--particles``, over ``--seeds``, and reports the exact-posterior scores of
:func:`invdiff.problems.gmm.score_posterior` (90 % interval mass per coordinate, sliced Wasserstein
distance beside an exact sampler's 99th percentile), the null-space spread (weighted std of the samples
along the directions the operator does not see, over the exact posterior's), the smallest ESS over the
steps, the steps that resampled and the distinct samples returned.

    python scripts/tds_spread.py [--steps 200] [--twists plain tempered gaussian] [--particles 250 1000 4000]

Writes the results page ``--out`` (atomically) and prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from invdiff.benchmark.report import script_page
from invdiff.problems.gmm import standard_problems, score_posterior
from invdiff.samplers import run
from invdiff.samplers.tds import TDS

TWISTS = {"plain": {}, "tempered": {"twist_inflation": 1.0}, "gaussian": {"twist": "gaussian"}}


def null_spread(problem, samples: torch.Tensor, weights: torch.Tensor, generator: torch.Generator) -> np.ndarray:
    """Weighted std of ``samples`` ``(N, d)`` along each direction of the operator's null space, over the
    exact posterior's (estimated from 20 000 exact samples)."""
    a = problem.measurement.physics.matrix.to(torch.float64)
    basis = torch.linalg.svd(a).Vh[a.shape[0]:]
    z = samples.to(torch.float64) @ basis.T
    mean = (weights[:, None] * z).sum(0)
    sd = (weights[:, None] * (z - mean) ** 2).sum(0).sqrt()
    exact = problem.exact.sample(20000, generator)[0] @ basis.T
    return (sd / exact.std(0)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="d16-m2-s0.05")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--twists", nargs="+", default=list(TWISTS), choices=list(TWISTS))
    parser.add_argument("--particles", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/results/tds-spread"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = {p.name: p for p in standard_problems(torch.Generator().manual_seed(0))}[args.problem]
    rows, lines = [], []
    for twist in args.twists:
        for n in args.particles:
            per_seed = []
            for seed in args.seeds:
                post = run(TDS(args.steps, **TWISTS[twist]), problem.measurement, problem.prior,
                           n_particles=n, generator=torch.Generator().manual_seed(seed), progress=False)
                s = score_posterior(problem, post, torch.Generator().manual_seed(100 + seed))
                spread = null_spread(problem, post.samples[0], post.weights[0], torch.Generator().manual_seed(7))
                d = post.diagnostics
                per_seed.append({**s, "null_min": float(spread.min()), "null_max": float(spread.max()),
                                 "ess_min": float(min(float(e[0]) for e in d.ess_history)),
                                 "resampled": int(sum(int(r[0]) for r in d.resampled)),
                                 "distinct": int(torch.unique(post.samples[0], dim=0).shape[0]),
                                 "twist": twist, "particles": n, "seed": seed})
            rows += per_seed

            def rng(key_lo: str, key_hi: str, fmt: str = ".2f") -> str:
                return f"{min(r[key_lo] for r in per_seed):{fmt}}-{max(r[key_hi] for r in per_seed):{fmt}}"
            lines.append(f"| {twist} | {n} | {rng('coverage_90_min', 'coverage_90_max', '.3f')} | "
                         f"{sum(r['coverage_pass'] == 1 for r in per_seed)}/{len(per_seed)} | "
                         f"{np.mean([r['sw'] for r in per_seed]):.3f} / {np.mean([r['sw_floor_q99'] for r in per_seed]):.3f} | "
                         f"{sum(r['sw_pass'] == 1 for r in per_seed)}/{len(per_seed)} | {rng('null_min', 'null_max')} | "
                         f"{np.mean([r['ess_min'] for r in per_seed]):.0f} | {np.mean([r['resampled'] for r in per_seed]):.0f} | "
                         f"{np.mean([r['ess'] for r in per_seed]):.0f} | {np.mean([r['distinct'] for r in per_seed]):.0f} |")
            print(lines[-1], flush=True)
    head = ["twist", "particles", "90 % interval mass, all coordinates and seeds", "coverage test",
            "SW / exact q99 (mean)", "SW test", "null-space std ÷ exact", "min ESS over steps", "resampled steps",
            "final ESS", "distinct samples"]
    table = "\n".join([f"Problem {args.problem}, {args.steps} steps (one network evaluation and VJP each), "
                       f"seeds {args.seeds}; ranges are over coordinates (or null-space directions) and seeds.", "",
                       "| " + " | ".join(head) + " |", "|" + "---|" * len(head), *lines])
    script_page(args.out, "TDS: where the posterior's spread goes", rows, table)


if __name__ == "__main__":
    main()
