"""Batching gain of the SMC samplers: time per step for N particles against N x the one-particle time.

On an image task's test problem with its shipped prior, each sampler runs ``--steps`` steps (after one
warm-up step) with N = 1 and each of ``--particles`` per item; the gain is ``N t(1) / t(N)``: how
much faster one batched run of N particles is than N runs of one particle. Time per step includes
the network (and for TDS its VJP), the measurement's operators, the weights and resampling.

    python scripts/bench_smc.py [--task mri-4x] [--particles 4 16] [--steps 5] [--threads 2] [--chunk-size 4]

``--chunk-size`` bounds the images per network call (the samplers' ``chunk_size``): on a 2-core CPU the
shipped UNets cost 48 ms per 128 x 128 image at batch 4 and 81 ms at batch 16, so large calls lose.

Writes the results page ``--out`` (atomically) and prints the table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from invdiff.benchmark.report import script_page
from invdiff.priors import shipped_prior
from invdiff.problems.image_tasks import image_task
from invdiff.samplers.ensemble import ApproximationFreeEnsemble
from invdiff.samplers.tds import TDS


def time_per_step(sampler, measurement, prior, n: int, steps: int) -> float:
    state = sampler.init(measurement, prior, n, torch.Generator().manual_seed(0))
    with torch.no_grad():
        state = sampler.step(state)  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            state = sampler.step(state)
        return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mri-4x")
    parser.add_argument("--particles", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/results/bench-smc"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = image_task(args.task, "test")
    prior = shipped_prior(problem.prior_name)
    b = problem.measurement.batch_size
    rows = []
    # 100 steps so that the timed steps sit at high noise, as most of a run does
    chunk = args.chunk_size
    for name, sampler in {"AFE (SDE)": ApproximationFreeEnsemble(100, chunk_size=chunk),
                          "TDS": TDS(100, twist_inflation=1.0, operator_norm=True, chunk_size=chunk)}.items():
        t1 = time_per_step(sampler, problem.measurement, prior, 1, args.steps)
        for n in args.particles:
            tn = time_per_step(sampler, problem.measurement, prior, n, args.steps)
            rows.append({"task": args.task, "sampler": name, "items": b, "particles": n, "t1_s": t1, "tN_s": tn,
                         "gain": n * t1 / tn, "threads": args.threads, "chunk_size": chunk})
            print(f"{name}: {b} items x {n} particles: {tn:.3f} s/step; 1 particle {t1:.3f} s/step; "
                  f"gain {n * t1 / tn:.2f}", flush=True)
    lines = [f"Batching gain on {args.task} ({b} items), {args.threads} threads, chunk size {chunk}, "
             f"mean of {args.steps} steps",
             "", "| sampler | N | s/step, N particles | N x s/step, 1 particle | gain |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['sampler']} | {r['particles']} | {r['tN_s']:.3f} | {r['particles'] * r['t1_s']:.3f} | {r['gain']:.2f} |"
              for r in rows]
    text = "\n".join(lines) + "\n"
    script_page(args.out, "SMC batching gain", rows, text)


if __name__ == "__main__":
    main()
