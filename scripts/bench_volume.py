"""Volumes solved with 2-D priors: slice-wise against coupled along z, on sparse-view and limited-angle CT.

No real CT volume ships in the packages this project may use (the catalogue's real CT is single slices),
so the volumes are real 3-D anatomy with CT's measurement: contiguous axial slices of a T1 brain, read as
relative attenuation ``2 x`` the normalised intensity (what ``invdiff reconstruct VOLUME --operator ct``
does with an MR volume), resized to ``--size`` squared, measured by the parallel-beam projector with white
noise of std 0.1 per detector bin (the CT default). Settings are chosen on the **validation** volume (the
ICBM152 2009a template, nilearn: another subject) and reported on the **test** volume (Colin27, mricron-data).

Methods: FBP (ramp filter); 3-D TV (PDHG, ``lam`` chosen on validation); slice-wise DDS (hard data
consistency, the same CG as the volume form, each slice alone); DDS's volume form and DiffusionMBIR (z-TV
ADMM, threshold chosen on validation), all with the shipped ``ct_128_fold_a`` prior at the volume's size and the
same network-evaluation budget. Metrics: PSNR / SSIM of the axial slices (mean and std over slices) and of
the sagittal reslices through the object (the plane where slice-wise methods show z-discontinuities), all
with the target volume's maximum as data range. Each cell runs in a child process: its wall time and peak
resident memory are its own. Cells are cached in ``--cache`` (a rerun reuses them); the page is rewritten
after every cell.

    python scripts/bench_volume.py [--slices 64] [--size 256] [--nfe 20] [--threads 2] [--test-methods M,N]
                                   [--out docs/results/volume]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from invdiff.benchmark.report import script_page
from invdiff.plots import labelled_grid

TASKS = {"sparse-view 36": {"views": 36}, "limited-angle 90°": {"views": 60, "angle_range": 90.0}}
#: validation grids: the z-TV ADMM's threshold (data units; rho at its default 1), TV's lam. DiffusionMBIR
#: runs predictor-only: at 20 evaluations a corrector halves its steps (30.0 against 27.3 dB at 128²)
GRIDS = {"tv-3d": [{"lam": v} for v in (0.03, 0.1, 0.3)],
         "dds-volume": [{"threshold": v} for v in (0.03, 0.1, 0.3)],
         "diffusion-mbir": [{"threshold": v, "corrector_snr": 0.0} for v in (0.03, 0.1, 0.3)]}
FIXED = {"fbp": {}, "dds": {"gamma": float("inf")}}
ORDER = ["fbp", "tv-3d", "dds", "dds-volume", "diffusion-mbir"]
VOLUMES = {"validation": "mni152_2009_t1", "test": "colin27_t1"}

_CHILD = r"""
import json, resource, sys, time
import numpy as np
import torch
from invdiff.datasets import load_anatomy
from invdiff.metrics import psnr, ssim
from invdiff.problems.sources import image_source
from invdiff.problems.spec import ProblemSpec
from invdiff.reconstruct import solve_problem
from invdiff.samplers.registry import SAMPLERS
from invdiff.priors import open_prior
cell = json.loads(sys.argv[1])
vol = load_anatomy(cell["source"], size=cell["size"])
fg = (vol > 0.1).mean(axis=(1, 2))
centre = int(np.argmax(np.convolve(fg, np.ones(cell["slices"]), mode="valid")))  # the block with the most object
images = 2.0 * vol[centre:centre + cell["slices"]]
spec = ProblemSpec(operator="ct", size=cell["size"], **cell["task"])
problem = image_source(images, spec, "ct", cell["source"]).build(list(range(len(images))))
sampler = SAMPLERS[cell["method"]].build(cell["nfe"], cell["settings"])  # build: DDS's gamma may be inf
prior = open_prior("ct_128_fold_a", "cpu") if cell["method"] not in ("fbp", "tv-3d") else None
start = time.perf_counter()
out = solve_problem(problem, sampler, prior, 1, torch.Generator().manual_seed(0), chunk_slices=8)
wall = time.perf_counter() - start
target, mean = problem.target, out["mean"]
top = float(target.max())
axial_psnr = [psnr(target[i:i + 1], mean[i:i + 1], top) for i in range(len(target))]
cols = [j for j in range(target.shape[2]) if (target[:, :, j] > 0.2 * top).mean() > 0.1]
sag_t, sag_m = np.ascontiguousarray(target[:, :, cols].transpose(2, 0, 1)), np.ascontiguousarray(mean[:, :, cols].transpose(2, 0, 1))
np.save(sys.argv[2], np.stack([target, mean]).astype(np.float32))
print(json.dumps({"axial_psnr": float(np.mean(axial_psnr)), "axial_psnr_std": float(np.std(axial_psnr)),
                  "axial_ssim": ssim(target, mean, top), "sagittal_psnr": psnr(sag_t, sag_m, top),
                  "sagittal_ssim": ssim(sag_t, sag_m, top),
                  "first_slice": centre, "network_evals": out["network_evals"], "wall_s": round(wall, 1),
                  "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}))
"""


#: the fields that define a cell (its cache key); a result adds its metrics to them
CELL_FIELDS = ("split", "source", "slices", "size", "task_name", "task", "method", "settings", "nfe")


def _key(cell: dict) -> str:
    return hashlib.sha256(json.dumps({k: cell[k] for k in CELL_FIELDS}, sort_keys=True).encode()).hexdigest()[:16]


def run_cell(cell: dict, cache: Path, threads: int) -> dict:
    """The cell's metrics, from the cache or from a child process (its reconstruction saved beside)."""
    file = cache / f"{_key(cell)}.json"
    if file.exists():  # the cell's own fields win (an earlier version let the child's count overwrite "nfe")
        cached = json.loads(file.read_text())
        return {**cached, "network_evals": cached.get("network_evals", cached.get("nfe")), **cell}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cell), str(cache / f"{_key(cell)}.npy")],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        result = {**cell, "status": "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:300]}
    else:
        result = {**cell, "status": "ran", **json.loads(done.stdout.strip().splitlines()[-1])}
        file.write_text(json.dumps(result))
    print(json.dumps(result), flush=True)
    return result


def _settings_text(s: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in s.items()) or "defaults"


def write_figure(args, rows: list[dict]) -> None:
    """Per task, the middle axial slice and the middle sagittal reslice of the target and of every method
    that ran on the test volume (one grey window per figure: the target's 99.5th percentile)."""
    cache, cells, top = Path(args.cache), [], 1.0
    for task_name in TASKS:
        ran = [r for r in rows if r["split"] == "test" and r["task_name"] == task_name and r["status"] == "ran"
               and (cache / f"{_key(r)}.npy").exists()]
        if not ran:
            continue
        stacks = {r["method"]: np.load(cache / f"{_key(r)}.npy") for r in ran}
        target = next(iter(stacks.values()))[0]
        top = float(np.percentile(target, 99.5))
        mid_z, mid_x = target.shape[0] // 2, target.shape[2] // 2
        for view, cut in (("axial", lambda v: v[mid_z]), ("sagittal", lambda v: v[:, :, mid_x])):
            cells.append([(f"{task_name}: target ({view})", cut(target))]
                         + [(f"{m} {r['axial_psnr' if view == 'axial' else 'sagittal_psnr']:.2f} dB", cut(stacks[m][1]))
                            for m, r in zip(stacks, ran)])
    if cells:
        labelled_grid(Path(args.out) / "figures" / "volume_test.png", cells, "image", top,
                      "test volume: middle axial slice and middle sagittal reslice (PSNR of the whole view set)")


def write_page(args, rows: list[dict], chosen: dict) -> None:
    lines = ["| task | method | settings (chosen on validation) | axial PSNR (dB) | axial SSIM | sagittal PSNR (dB) | "
             "sagittal SSIM | NFE | wall (s) | peak (GiB) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["split"] != "test":
            continue
        if r["status"] != "ran":
            lines.append(f"| {r['task_name']} | {r['method']} | {_settings_text(r['settings'])} | {r['status']} |||||||")
            continue
        lines.append(f"| {r['task_name']} | {r['method']} | {_settings_text(r['settings'])} | "
                     f"{r['axial_psnr']:.2f} ± {r['axial_psnr_std']:.2f} | {r['axial_ssim']:.3f} | "
                     f"{r['sagittal_psnr']:.2f} | {r['sagittal_ssim']:.3f} | {r['network_evals']} | {r['wall_s']} | {r['peak_gib']} |")
    val = ["", "Validation (choosing the settings; axial PSNR, dB):", "",
           "| task | method | settings | axial PSNR | sagittal PSNR |", "|---|---|---|---:|---:|"]
    for r in rows:
        if r["split"] == "validation" and r["status"] == "ran":
            mark = " (chosen)" if chosen.get((r["task_name"], r["method"])) == r["settings"] else ""
            val.append(f"| {r['task_name']} | {r['method']} | {_settings_text(r['settings'])}{mark} | "
                       f"{r['axial_psnr']:.2f} | {r['sagittal_psnr']:.2f} |")
    notes = (f"Test volume: {args.slices} contiguous axial slices of Colin27 (the block with the most object), "
             f"{args.size}² (1 mm slices, 0.85 mm pixels after the resize); validation: {args.val_slices} slices of "
             f"ICBM152 2009a. Diffusion methods: {args.nfe} network evaluations, prior ct_128_fold_a (trained at 128² "
             f"on two real CT slices and phantoms, the shipped ct_128 until 2026-12-06; applied at {args.size}², a "
             f"convolutional prior), 1 particle, seed 0, network on "
             f"8 slices per call. {args.threads} torch threads on this 2-core CPU. DiffusionMBIR runs "
             f"predictor-only (a corrector would halve its steps at this budget). Sagittal: the reslices through every column where "
             f"over 10 % of the column is object.")
    notes += (" " + args.extra_note) if args.extra_note else ""
    untested = sorted({r["method"] for r in rows if r["split"] == "validation"}
                      - {r["method"] for r in rows if r["split"] == "test"})
    if untested:
        notes += (f" Not in the test table (this machine's time): {', '.join(untested)}; "
                  "their validation scores are below.")
    write_figure(args, rows)
    figure = "\n\n![test volume](figures/volume_test.png)" if (Path(args.out) / "figures" / "volume_test.png").exists() else ""
    script_page(args.out, "Volumes with 2-D priors: slice-wise against z-coupled, CT", rows,
                "\n".join(lines + val) + figure, notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--val-slices", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--nfe", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default=",".join(ORDER))
    parser.add_argument("--test-methods", default=None,
                        help="the methods run on the test volume (default: --methods); the others are tuned only")
    parser.add_argument("--cache", default="outputs/bench/volume")
    parser.add_argument("--extra-note", default="", help="a sentence added to the page's notes (how a cell was run)")
    parser.add_argument("--out", default="docs/results/volume")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    methods = [m for m in ORDER if m in args.methods.split(",")]
    rows, chosen = [], {}

    def cell(split: str, task_name: str, method: str, settings: dict) -> dict:
        base = {"split": split, "source": VOLUMES[split], "slices": args.slices if split == "test" else args.val_slices,
                "size": args.size, "task_name": task_name, "task": TASKS[task_name], "method": method,
                "settings": settings, "nfe": args.nfe}
        result = run_cell(base, cache, args.threads)
        rows.append(result)
        write_page(args, rows, chosen)
        return result

    for task_name in TASKS:  # validation first: every grid
        for method in methods:
            if method in GRIDS:
                scores = [(cell("validation", task_name, method, s).get("axial_psnr", float("-inf")), i)
                          for i, s in enumerate(GRIDS[method])]
                chosen[(task_name, method)] = GRIDS[method][max(scores)[1]]
    tested = methods if args.test_methods is None else [m for m in methods if m in args.test_methods.split(",")]
    for method in tested:  # then the test volume, method by method over the tasks
        for task_name in TASKS:
            cell("test", task_name, method, chosen.get((task_name, method), FIXED.get(method, {})))


if __name__ == "__main__":
    main()
