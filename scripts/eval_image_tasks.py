"""Every sampler and baseline on the image tasks of invdiff.problems.image_tasks, on one footing.

For each task, each method's setting is chosen by PSNR on the task's *validation* problem from the
grid below (a 1-D grid is extended by up to two steps while its best value sits at an edge), then the chosen setting is run once on the *test* problem. All diffusion methods use the
same shipped prior and the same number of network evaluations (``--nfe``, 100 by default); the
classical baselines use none. Reported per method: NMSE, PSNR and SSIM (fastMRI definitions, on
magnitude images), network evaluations, VJPs and wall time (2 CPU threads unless ``--threads``).

    python scripts/eval_image_tasks.py [--tasks deblur inpaint ...] [--nfe 100] [--out outputs/image_tasks]

One ``TASK.json`` per task is written atomically as soon as the task is done; a rerun skips tasks
whose file exists (``--force`` redoes them), so an interrupted run resumes. ``table.md`` collects
all tasks found in ``--out``. Needs the ``[anatomy]`` extra for the ICBM152 validation images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from invdiff.benchmark.tuning import tune_on_grid
from invdiff.io import atomic_write_json, atomic_write_text
from invdiff.priors import shipped_prior
from invdiff.problems.image_tasks import IMAGE_TASKS, ImageProblem, image_task
from invdiff.samplers import DDIM, DPS, REDDiff, run
from invdiff.samplers.classical import ConjugateGradient, DirectReconstruction, TotalVariation
from invdiff.samplers.deepinv_bridge import DeepinvSampler, ddrm_supports

TV_GRID = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
# lr is a step in data units: with 100 steps, lr 1e-3 moves a pixel by at most about 0.1
RED_DIFF_GRID = [(lam, lr) for lam in (32, 128, 512) for lr in (1e-3, 1e-2, 3e-2, 1e-1)]
BOUNDED = {"DDRM (deepinv)"}  # eta lives in [0, 1]: its grid is not extended
METHOD_ORDER = ["FBP", "adjoint", "CG least squares", "TV", "prior sample", "DPS", "RED-Diff", "DiffPIR", "DDRM"]


def methods(task: str, nfe: int, with_ddrm: bool) -> dict:
    """``name -> (factory(setting) -> sampler, grid, uses_prior)``."""
    ct = task.startswith("ct")
    # DPS's step multiplies A^T r / ||r||, which scales with ||A||: about 1 for MRI, blur and masking,
    # about 60 for these CT operators (sqrt of the largest eigenvalue of A^T A)
    zetas = [0.003, 0.01, 0.03] if ct else [0.1, 0.3, 1.0]
    out = {
        "FBP" if ct else "adjoint (zero-filled)": (lambda s: DirectReconstruction("physics" if ct else "adjoint"),
                                                   [None], False),
        "CG least squares" + (" (CG-SENSE)" if task.startswith("mri") else ""):
            (lambda k: ConjugateGradient(k), [5, 10, 20, 40], False),
        "TV (PDHG, 300 it.)": (lambda lam: TotalVariation(lam, 300), TV_GRID, False),
        "prior sample (ancestral)": (lambda s: DDIM(nfe, eta=1.0), [None], True),
        "DPS (ancestral)": (lambda z: DPS(nfe, step_size=z, eta=1.0), zetas, True),
        "DPS (DDIM)": (lambda z: DPS(nfe, step_size=z, eta=0.0), zetas, True),
        "RED-Diff": (lambda s: REDDiff(nfe, lam=s[0], lr=s[1]), RED_DIFF_GRID, True),
        "DiffPIR (deepinv)": (lambda lam: DeepinvSampler("diffpir", nfe, lambda_=lam), [1.0, 7.0, 30.0], True),
    }
    if task == "inpaint":
        del out["CG least squares"]  # on a masking operator CG returns the zero-filled image
    if with_ddrm:
        out["DDRM (deepinv)"] = (lambda eta: DeepinvSampler("ddrm", nfe, eta=eta), [0.5, 0.85, 1.0], True)
    return out


def solve(problem: ImageProblem, sampler, prior, seed: int):
    post = run(sampler, problem.measurement, prior, n_particles=1,
               generator=torch.Generator().manual_seed(seed), progress=False)
    return problem.metrics(post.mean), post.diagnostics


def evaluate_task(task: str, nfe: int, seed: int, only: list[str] | None = None, rows: dict | None = None) -> dict:
    """Tune on validation and score on test every method (or those in ``only``, updating ``rows``)."""
    val, test = image_task(task, "validation"), image_task(task, "test")
    prior = shipped_prior(test.prior_name)
    rows = dict(rows or {})
    for name, (make, grid, uses_prior) in methods(task, nfe, ddrm_supports(test.measurement)).items():
        if only and name not in only:
            continue
        p = prior if uses_prior else None

        def validation_psnr(setting):
            psnr = solve(val, make(setting), p, seed)[0]["PSNR"]
            print(f"  {task} validation {name} {setting}: {psnr:.2f} dB", flush=True)
            return psnr

        tuning, best = {}, grid[0]
        if len(grid) > 1 and isinstance(grid[0], (int, float)):  # a 1-D grid, extended while the best is at an edge
            best, tuning = tune_on_grid(validation_psnr, grid, 0 if name in BOUNDED else 2)
        elif len(grid) > 1:
            tuning = {setting: validation_psnr(setting) for setting in grid}
            best = max(tuning, key=tuning.get)
        tuning = {json.dumps(k): v for k, v in tuning.items()}
        metrics, diag = solve(test, make(best), p, seed)
        rows[name] = {**metrics, "setting": best, "validation_psnr": tuning, "network_evals": diag.network_evals,
                      "vjp_evals": diag.vjp_evals, "wall_time_s": round(diag.wall_time, 2)}
        print(f"{task} test {name} ({best}): PSNR {metrics['PSNR']:.2f} SSIM {metrics['SSIM']:.3f} "
              f"NFE {diag.network_evals} {diag.wall_time:.1f} s", flush=True)
    return {"task": task, "nfe": nfe, "seed": seed, "threads": torch.get_num_threads(),
            "batch": test.measurement.batch_size, "methods": rows}


def format_table(results: list[dict]) -> str:
    lines = ["| task | method | setting | NMSE | PSNR (dB) | SSIM | NFE | VJP | wall (s) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for name, m in sorted(r["methods"].items(), key=lambda kv: METHOD_ORDER.index(kv[0].split(" (")[0])):
            setting = "" if m["setting"] is None else m["setting"]
            lines.append(f"| {r['task']} | {name} | {setting} | {m['NMSE']:.4f} | {m['PSNR']:.2f} | {m['SSIM']:.3f} "
                         f"| {m['network_evals']} | {m['vjp_evals']} | {m['wall_time_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(IMAGE_TASKS), choices=IMAGE_TASKS)
    parser.add_argument("--nfe", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/image_tasks"))
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="rerun only these methods (names as in the table) and update existing task files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for task in args.tasks:
        path = args.out / f"{task}.json"
        previous = json.loads(path.read_text()) if path.exists() else None
        if previous and not args.force and not args.methods:
            print(f"{task}: {path} exists, skipped")
            continue
        start = time.perf_counter()
        keep = previous["methods"] if previous and args.methods else None
        result = evaluate_task(task, args.nfe, args.seed, args.methods, keep)
        result["task_wall_time_s"] = round(time.perf_counter() - start, 1)
        atomic_write_json(path, result)
    results = [json.loads((args.out / f"{t}.json").read_text()) for t in IMAGE_TASKS if (args.out / f"{t}.json").exists()]
    table = format_table(results)
    atomic_write_text(args.out / "table.md", table)
    print(table)


if __name__ == "__main__":
    main()
