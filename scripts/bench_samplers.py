"""Sampler overheads, and invdiff's DPS against deepinv's DPS on the same prior and problem, in one run.

Overhead = wall time / (network evaluations x the median time of one evaluation at the same batch);
for DPS the unit is one forward-plus-backward (VJP) through the denoiser, which is what a DPS step
must pay. 1.0 means the sampler costs nothing beyond the network.

DPS head-to-head: both run ``--nfe`` network evaluations with the shipped prior on the same task of
``invdiff.problems.image_tasks``; invdiff's step size ``zeta`` and deepinv's ``weight`` (its
original-DPS ``ddpm`` solver, ``"norm"`` guidance, driven through :class:`DeepinvSampler`'s exact
``[0, 1]`` restatement) are each chosen by PSNR on the task's validation image from the same kind
of geometric grid (extended while the best value sits at an edge), then both run once on the test image. Timings: median of ``--repeat`` full runs.

    python scripts/bench_samplers.py [--tasks deblur mri-4x] [--nfe 100] [--threads 2] [--out docs/results/bench-samplers]

Run it on an otherwise idle machine: the figures are wall-clock times.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from pathlib import Path

import torch

from invdiff.benchmark.report import script_page
from invdiff.benchmark.tuning import tune_on_grid
from invdiff.priors import shipped_prior
from invdiff.problems.image_tasks import image_task
from invdiff.samplers import DDIM, DPS, REDDiff, run
from invdiff.samplers.deepinv_bridge import DeepinvSampler
from invdiff.timing import median_seconds

ZETAS = [0.1, 0.3, 1.0, 3.0]
WEIGHTS = [1.0, 3.0, 10.0, 30.0]  # deepinv's "norm" weight absorbs ||y - A D|| / sigma_y^2 (its docstring)


def unit_costs(prior, batch: int, repeat: int) -> tuple[float, float]:
    """Median seconds of one denoiser call and of one call plus its VJP, at ``batch``."""
    x = torch.randn(batch, *prior.event_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t_eval = median_seconds(lambda: prior.denoise(x, 0.5), repeat)

    def vjp():
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(prior.denoise(xg, 0.5).square().sum(), xg)

    return t_eval, median_seconds(vjp, repeat)


def timed_runs(sampler, problem, prior, repeat: int):
    """The posterior of the first run and the median wall time of ``repeat`` runs (same seed)."""
    times, post = [], None
    for _ in range(repeat):
        p = run(sampler, problem.measurement, prior, generator=torch.Generator().manual_seed(0), progress=False)
        post = post or p
        times.append(p.diagnostics.wall_time)
    return post, statistics.median(times)


def tuned(make, grid, problem, prior, extensions: int = 3) -> tuple[float, dict]:
    """The value with the best validation PSNR (:func:`tune_on_grid`), and all PSNRs."""
    def score(v):
        post = run(make(v), problem.measurement, prior, generator=torch.Generator().manual_seed(0), progress=False)
        psnr = problem.metrics(post.mean)["PSNR"]
        print(f"    validation {v:g}: {psnr:.2f} dB", flush=True)
        return psnr

    return tune_on_grid(score, grid, extensions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["deblur", "mri-4x"])
    parser.add_argument("--nfe", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/results/bench-samplers"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {"nfe": args.nfe, "threads": args.threads, "torch": torch.__version__, "cpu": platform.processor(),
               "tasks": {}}
    for task in args.tasks:
        val, test = image_task(task, "validation"), image_task(task, "test")
        prior = shipped_prior(test.prior_name)
        batch = test.measurement.batch_size
        t_eval, t_vjp = unit_costs(prior, batch, 2 * args.repeat + 1)
        row = {"batch": batch, "network_eval_s": t_eval, "vjp_s": t_vjp, "overhead": {}}
        print(f"{task}: one evaluation {t_eval * 1e3:.1f} ms, with VJP {t_vjp * 1e3:.1f} ms (batch {batch})", flush=True)
        for name, sampler, unit in (("DDIM", DDIM(args.nfe), t_eval), ("RED-Diff", REDDiff(args.nfe, lam=512, lr=1e-3), t_eval),
                                    ("DPS", DPS(args.nfe, step_size=0.3), t_vjp)):
            post, wall = timed_runs(sampler, test, prior, args.repeat)
            row["overhead"][name] = {"wall_s": wall, "ratio": wall / (post.diagnostics.network_evals * unit)}
            print(f"  {name}: {wall:.2f} s, overhead {row['overhead'][name]['ratio']:.3f}", flush=True)
        print("  tuning invdiff DPS", flush=True)
        zeta, zeta_psnr = tuned(lambda z: DPS(args.nfe, step_size=z), ZETAS, val, prior)
        print("  tuning deepinv DPS", flush=True)
        weight, weight_psnr = tuned(lambda w: DeepinvSampler("dps", args.nfe, weight=w), WEIGHTS, val, prior)
        ours, t_ours = timed_runs(DPS(args.nfe, step_size=zeta), test, prior, args.repeat)
        theirs, t_theirs = timed_runs(DeepinvSampler("dps", args.nfe, weight=weight), test, prior, args.repeat)
        row["dps_vs_deepinv"] = {
            "invdiff": {**test.metrics(ours.mean), "zeta": zeta, "validation_psnr": zeta_psnr, "wall_s": t_ours,
                        "network_evals": ours.diagnostics.network_evals},
            "deepinv": {**test.metrics(theirs.mean), "weight": weight, "validation_psnr": weight_psnr,
                        "wall_s": t_theirs, "network_evals": theirs.diagnostics.network_evals},
            "time_ratio": t_theirs / t_ours,
        }
        r = row["dps_vs_deepinv"]
        print(f"  DPS invdiff {r['invdiff']['PSNR']:.2f} dB {t_ours:.1f} s | deepinv {r['deepinv']['PSNR']:.2f} dB "
              f"{t_theirs:.1f} s | deepinv/invdiff time {r['time_ratio']:.2f}", flush=True)
        results["tasks"][task] = row
    lines = [f"Sampler overheads and DPS vs deepinv: {args.nfe} network evaluations, {args.threads} threads", "",
             "| task | DDIM overhead | RED-Diff overhead | DPS overhead (per VJP) | invdiff DPS PSNR / s | "
             "deepinv DPS PSNR / s | deepinv time / invdiff time |", "|---|---:|---:|---:|---|---|---:|"]
    for task, row in results["tasks"].items():
        o, r = row["overhead"], row["dps_vs_deepinv"]
        lines.append(f"| {task} | {o['DDIM']['ratio']:.3f} | {o['RED-Diff']['ratio']:.3f} | {o['DPS']['ratio']:.3f} "
                     f"| {r['invdiff']['PSNR']:.2f} dB / {r['invdiff']['wall_s']:.1f} | {r['deepinv']['PSNR']:.2f} dB / "
                     f"{r['deepinv']['wall_s']:.1f} | {r['time_ratio']:.2f} |")
    script_page(args.out, "Sampler overheads, and DPS against deepinv's", results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
