"""Running one benchmark cell and storing its result.

A cell's result is ``OUT/cells/KEY.json`` (metrics, costs, settings), written atomically once the
cell is done, plus ``OUT/cells/KEY.npz`` for image problems (the first slice's target, baseline,
posterior mean and std, for the figure grids). A cell whose JSON exists is finished: a rerun skips
it, and a crash loses only the cells that were running.

Scores: image problems get the fastMRI NMSE/PSNR/SSIM of the posterior mean's magnitude, and with
at least two particles the coverage of the pixel-wise central 50/90/95 % credible intervals;
Gaussian-mixture problems get :func:`invdiff.problems.gmm.score_posterior` (sliced
Wasserstein distance beside the exact-vs-exact floor, mean and covariance errors, mode TV, ESS).
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from invdiff.benchmark.config import Cell
from invdiff.io import atomic_write, atomic_write_json

__all__ = ["cell_done", "load_results", "run_cell"]


def _cell_file(out: Path, cell: Cell) -> Path:
    return Path(out) / "cells" / f"{cell.key}.json"


def cell_done(out: str | Path, cell: Cell) -> bool:
    return _cell_file(Path(out), cell).is_file()


@lru_cache(maxsize=8)
def _image_problem(data: str, spec_items: tuple, slices: tuple[int, ...] | None, workdir: str):
    from invdiff.problems.inputs import ProblemSpec, open_input

    inp = open_input(data, ProblemSpec(**dict(spec_items)), workdir)
    chosen = list(range(inp.num_slices)) if slices is None else list(slices)
    return inp, inp.build(chosen)


@lru_cache(maxsize=4)
def _prior(name: str, device: str):
    from invdiff.reconstruct.job import load_prior_spec

    return load_prior_spec(name, device)


@lru_cache(maxsize=16)
def _gmm_problem(dim: int, observations: int, noise_sigma: float, instance_seed: int):
    from invdiff.problems.gmm import gmm_problem

    return gmm_problem(dim, observations, noise_sigma, torch.Generator().manual_seed(instance_seed))


def _run_image(cell: Cell, out: Path, device: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from invdiff.metrics import fastmri_volume_metrics
    from invdiff.reconstruct.job import solve_problem
    from invdiff.samplers.registry import SAMPLERS, make_sampler

    start = time.perf_counter()
    inp, problem = _image_problem(cell.data, tuple(sorted(cell.problem.spec.items())), cell.problem.slices,
                                  str(out / "simulated"))
    spec = SAMPLERS[cell.sampler.name]
    prior = _prior(cell.problem.prior or inp.prior_name, device) if spec.uses_prior else None
    sampler = make_sampler(cell.sampler.name, max(cell.nfe, 1), inp.family, cell.sampler.settings)
    setup = time.perf_counter() - start
    res = solve_problem(problem, sampler, prior, cell.sampler.particles if spec.particles else 1,
                        torch.Generator().manual_seed(cell.seed), device)
    metrics = fastmri_volume_metrics(problem.target, res["mean"]) if problem.target is not None else {}
    if res["coverage_sums"]:
        metrics.update({f"coverage_{float(a):.2f}": s / res["pixels"] for a, s in res["coverage_sums"].items()})
    record = {"metrics": metrics, "network_evals": res["network_evals"], "vjps": res["vjps"],
              "wall_time_s": res["wall_time_s"], "setup_s": setup, "ess_min": min(res["ess"]),
              "baseline": problem.baseline_name, "family": inp.family, "measurement": problem.info}
    arrays = {"mean": res["mean"][0], "std": res["std"][0], "baseline": problem.baseline[0]}
    if problem.target is not None:
        arrays["target"] = problem.target[0]
    return record, arrays


def _run_gmm(cell: Cell) -> dict[str, Any]:
    from invdiff.problems.gmm import score_posterior
    from invdiff.samplers import run
    from invdiff.samplers.registry import SAMPLERS, make_sampler

    s = cell.problem.spec
    problem = _gmm_problem(int(s["dim"]), int(s["observations"]), float(s["noise_sigma"]), int(s["instance_seed"]))
    sampler = make_sampler(cell.sampler.name, max(cell.nfe, 1), "gmm", cell.sampler.settings)
    n = cell.sampler.particles if SAMPLERS[cell.sampler.name].particles else 1
    g = torch.Generator().manual_seed(cell.seed)
    post = run(sampler, problem.measurement, problem.prior, n_particles=n, generator=g, progress=False)
    return {"metrics": score_posterior(problem, post, g), "network_evals": int(post.diagnostics.network_evals),
            "vjps": int(post.diagnostics.vjp_evals), "wall_time_s": float(post.diagnostics.wall_time), "setup_s": 0.0,
            "family": "gmm"}


def run_cell(cell: Cell, out: str | Path, device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """Run ``cell`` unless it is done, write its files atomically, and return its record."""
    out = Path(out)
    path = _cell_file(out, cell)
    if path.is_file():
        return json.loads(path.read_text())
    from invdiff.samplers.registry import SAMPLERS

    if threads:
        torch.set_num_threads(threads)
    arrays = None
    if cell.problem.kind == "gmm":
        record = _run_gmm(cell)
    else:
        record, arrays = _run_image(cell, out, device)
    record.update(problem=cell.problem.name, data=cell.data, sampler=cell.sampler.label,
                  sampler_name=cell.sampler.name, nfe=cell.nfe, seed=cell.seed,
                  particles=cell.sampler.particles if SAMPLERS[cell.sampler.name].particles else 1,
                  settings=cell.sampler_settings, key=cell.key)
    if arrays is not None:
        atomic_write(path.with_suffix(".npz"), lambda tmp: np.savez_compressed(tmp, **arrays), suffix=".npz")
    atomic_write_json(path, record)
    return record


def load_results(out: str | Path) -> list[dict[str, Any]]:
    """Every finished cell's record in ``out/cells``, sorted by key."""
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "cells").glob("*.json"))]
