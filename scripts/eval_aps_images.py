"""APS and guided remasking with an image token prior on the MRI and inpainting image tasks.

The problems are those of ``scripts/eval_image_tasks.py`` (:mod:`invdiff.problems.image_tasks`):
``mri-4x`` (the demo scan, 4 slices, 8 coils, equispaced 4x) and ``inpaint`` (a demo-scan slice with
a 32 x 32 box removed, noise 0.02), with the same validation problems (ICBM152). The token prior
models magnitudes; it is lifted to the problems' complex images with a fixed phase
(:meth:`~invdiff.priors.tokens.image.ImageTokenPrior.with_phase`): zero for inpainting (real
images), and for MRI the phase of the CG-SENSE image (10 iterations) low-passed to 48 frequencies
per axis (:func:`~invdiff.priors.tokens.image.smooth_phase`).

Per task: APS's Adam step ``lr`` on the tilt (30 Adam steps per unmasking step) is chosen by
validation PSNR (1 particle); then APS and
guided remasking run on the test problem with 1 particle (the footing of the image-task table) and
with ``--particles`` (their posterior mean). Also reported: the tokenizer's *ceiling* (the test
target tokenized and decoded: no reconstruction from these tokens can beat it), and RED-Diff with
the shipped continuous prior, run here for a same-machine wall time. Metrics: fastMRI NMSE / PSNR /
SSIM on magnitudes; NFE = token-model calls; VJP = backward passes through the decoder.

    python scripts/eval_aps_images.py --prior PATH [--tasks mri-4x inpaint] [--steps 32] [--out outputs/aps_images]

Writes TASK.json per task (a rerun skips finished tasks; ``--force`` redoes them), aps_images.md, and
a figure per task (target, ceiling, APS mean, guided remasking mean, RED-Diff).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from invdiff.benchmark.tuning import tune_on_grid
from invdiff.io import atomic_write, atomic_write_json, atomic_write_text
from invdiff.metrics import fastmri_volume_metrics
from invdiff.priors import load_prior, shipped_prior
from invdiff.priors.tokens.image import ImageTokenPrior, smooth_phase
from invdiff.problems.fastmri import cg_sense
from invdiff.problems.image_tasks import IMAGE_TASKS, ImageProblem, image_task
from invdiff.samplers import REDDiff, run
from invdiff.samplers.aps import APS, GuidedRemasking

LR_GRID = [3.0, 10.0, 30.0]
OPT_STEPS = 30  # on inpainting validation: 10 steps at lr 3 gave 21.81 dB, 30 gave 23.79; lr 10: 24.38 / 25.03
PHASE_WIDTH = 48


def lifted(prior: ImageTokenPrior, problem: ImageProblem):
    """The token prior on the problem's complex images (module docstring)."""
    m = problem.measurement
    if problem.task.startswith("mri"):
        phase = smooth_phase(cg_sense(m, 10), PHASE_WIDTH)
    else:
        phase = torch.zeros(m.batch_size, *prior.event_shape[1:])
    return prior.with_phase(phase)


def ceiling(prior: ImageTokenPrior, problem: ImageProblem) -> dict:
    """The target's own tokens, decoded, scored like a reconstruction."""
    target = torch.as_tensor(problem.target)
    if problem.task.startswith("mri"):  # targets are in data units; the prior in problem units
        target = target / float(np.percentile(target.numpy(), 99.5))
    decoded = prior.reconstruct(target.unsqueeze(1).float())[:, 0]
    scale = float(np.percentile(problem.target, 99.5)) if problem.task.startswith("mri") else 1.0
    return fastmri_volume_metrics(problem.target, (scale * decoded.clamp_min(0)).numpy().astype(np.float32))


def solve(problem: ImageProblem, sampler, prior, n: int, seed: int):
    post = run(sampler, problem.measurement, prior, n_particles=n, generator=torch.Generator().manual_seed(seed),
               progress=False)
    return post, problem.metrics(post.mean)


def evaluate(task: str, prior: ImageTokenPrior, args) -> dict:
    val, test = image_task(task, "validation"), image_task(task, "test")
    val_prior, test_prior = lifted(prior, val), lifted(prior, test)
    rows: dict[str, dict] = {"tokenizer ceiling (target's tokens)": {**ceiling(prior, test), "setting": None}}

    def validation_psnr(lr):
        psnr = solve(val, APS(args.steps, lr=lr, opt_steps=OPT_STEPS), val_prior, 1, args.seed)[1]["PSNR"]
        print(f"  {task} validation APS lr={lr}: {psnr:.2f} dB", flush=True)
        return psnr

    best, tuning = tune_on_grid(validation_psnr, LR_GRID, 1)
    methods = {"APS": (lambda: APS(args.steps, lr=best, opt_steps=OPT_STEPS), best),
               "guided remasking (16 candidates)": (lambda: GuidedRemasking(args.steps, 16), 16)}
    for name, (make, setting) in methods.items():
        for n in (1, args.particles):
            post, metrics = solve(test, make(), test_prior, n, args.seed)
            d = post.diagnostics
            label = f"{name}, {n} particle{'s' if n > 1 else ''}"
            rows[label] = {**metrics, "setting": setting, "particles": n, "network_evals": d.network_evals,
                           "vjp_evals": d.vjp_evals, "wall_time_s": round(d.wall_time, 1),
                           "samples": post.samples, "mean": post.mean}
            print(f"{task} test {label}: PSNR {metrics['PSNR']:.2f} SSIM {metrics['SSIM']:.3f} "
                  f"{d.wall_time:.1f} s", flush=True)
    red = REDDiff(100, lam=512, lr=0.1)  # the image-task table's validation choice for both tasks
    post, metrics = solve(test, red, shipped_prior(test.prior_name), 1, args.seed)
    rows["RED-Diff (continuous prior), 1 particle"] = {
        **metrics, "setting": [512, 0.1], "particles": 1, "network_evals": post.diagnostics.network_evals,
        "vjp_evals": post.diagnostics.vjp_evals, "wall_time_s": round(post.diagnostics.wall_time, 1),
        "mean": post.mean}
    figure(task, test, rows, Path(args.out) / f"{task}.png")
    for r in rows.values():
        r.pop("samples", None)
        r.pop("mean", None)
    return {"task": task, "steps": args.steps, "seed": args.seed, "threads": torch.get_num_threads(),
            "validation_psnr": {json.dumps(k): v for k, v in tuning.items()}, "phase_width": PHASE_WIDTH,
            "methods": rows}


def figure(task: str, problem: ImageProblem, rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("target", problem.target[0])]
    for name, r in rows.items():
        if "mean" in r and (r.get("particles", 1) > 1 or name.startswith("RED")):
            panels.append((f"{name.split(' (')[0].split(',')[0]} ({r['PSNR']:.2f} dB)",
                           problem.magnitude(r["mean"])[0]))
    hi = float(np.percentile(problem.target[0], 99.5))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.7))
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(im, cmap="gray", vmin=0, vmax=hi)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


def format_table(results: list[dict]) -> str:
    lines = ["| task | method | setting | NMSE | PSNR (dB) | SSIM | NFE | VJP | wall (s) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for name, m in r["methods"].items():
            setting = "" if m.get("setting") is None else m["setting"]
            lines.append(f"| {r['task']} | {name} | {setting} | {m['NMSE']:.4f} | {m['PSNR']:.2f} | {m['SSIM']:.3f} | "
                         f"{m.get('network_evals', '')} | {m.get('vjp_evals', '')} | {m.get('wall_time_s', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", required=True, help="a token prior checkpoint (invdiff train-prior --kind token)")
    parser.add_argument("--tasks", nargs="+", default=["inpaint", "mri-4x"])
    parser.add_argument("--steps", type=int, default=32, help="unmasking steps (token-model calls)")
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="outputs/aps_images")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prior = load_prior(args.prior)
    if not isinstance(prior, ImageTokenPrior):
        raise SystemExit(f"{args.prior}: not a token prior (train one with invdiff train-prior --kind token)")
    out = Path(args.out)
    for task in args.tasks:
        path = out / f"{task}.json"
        if path.exists() and not args.force:
            print(f"{task}: {path} exists, skipped (--force redoes it)")
            continue
        start = time.perf_counter()
        result = evaluate(task, prior, args)
        result["total_s"] = round(time.perf_counter() - start, 1)
        atomic_write_json(path, result)
    results = [json.loads((out / f"{t}.json").read_text()) for t in IMAGE_TASKS if (out / f"{t}.json").exists()]
    table = format_table(results)
    atomic_write_text(out / "aps_images.md", table)
    print(table)


if __name__ == "__main__":
    main()
