"""Running one benchmark cell (or one validation run) and storing its result.

A cell's result is ``OUT/cells/KEY.json`` (metrics, costs, settings), written atomically once the
cell is done, plus ``OUT/cells/KEY.npz`` for image problems (the first slice's target, baseline,
posterior mean and std, for the figure grids) and, with calibration slices,
``OUT/calibration/KEY.json`` (the conformal fit, for ``invdiff reconstruct --calibration``). A cell
whose JSON exists is finished: a rerun skips it, and a crash loses only the cells that were running.

Scores (:func:`evaluate`): image problems get the fastMRI NMSE/PSNR/SSIM of the posterior mean's
image; with at least two particles, the coverage of the pixel-wise central 50/90/95 % credible
intervals over all pixels and over the object (``object_coverage_*``), the calibration ratio
(:func:`calibration_ratios`), for weighted samplers the coverage with the weights dropped
(``equal_weight_*``: what the particles spread), and with calibration slices the coverage and mean
half-width of conformal intervals fitted on them (``calibrated_*``, object region; the fit is in the
record); SMC samplers add their smallest ESS over the steps and the steps that resampled; token priors
add the tokenizer's ceiling.
Gaussian-mixture problems get :func:`invdiff.problems.gmm.score_posterior` (sliced Wasserstein
distance beside the exact-vs-exact floor, mean and covariance errors, mode TV, ESS, the calibration
ratio, and the two exact-posterior tests).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from invdiff.benchmark.config import Cell, ProblemConfig
from invdiff.benchmark.report import code_version
from invdiff.io import atomic_write, atomic_write_json
from invdiff.metrics import fastmri_volume_metrics
from invdiff.metrics.conformal import ConformalCalibration, conformal_report, fit_conformal
from invdiff.priors import open_prior
from invdiff.priors.tokens import ImageTokenPrior
from invdiff.problems import Problem, ProblemSpec, configured_sampler, image_task, open_source
from invdiff.problems.gmm import gmm_problem, score_posterior
from invdiff.problems.tokens import token_prior_for, tokenizer_ceiling
from invdiff.reconstruct import load_denoiser, solve_problem
from invdiff.reconstruct.job import object_region
from invdiff.samplers import run
from invdiff.samplers.registry import SAMPLERS

__all__ = ["CALIBRATION_LEVELS", "calibration_levels", "calibration_ratios", "cell_done", "evaluate", "load_problem",
           "load_results", "run_cell"]

#: Levels of the conformal intervals a benchmark with calibration slices fits (those the slice count allows).
CALIBRATION_LEVELS = (0.5, 0.9, 0.95)


def _cell_file(out: Path, cell: Cell) -> Path:
    return Path(out) / "cells" / f"{cell.key}.json"


def cell_done(out: str | Path, cell: Cell) -> bool:
    return _cell_file(Path(out), cell).is_file()


@lru_cache(maxsize=8)
def _image_problem(data: str, spec_items: tuple, slices: tuple[int, ...] | None, workdir: str) -> Problem:
    source = open_source(data, ProblemSpec(**dict(spec_items)), workdir)
    return source.build(list(range(source.num_slices)) if slices is None else list(slices))


@lru_cache(maxsize=8)
def _task_problem(task: str, split: str, workdir: str, overrides: tuple = ()) -> Problem:
    return image_task(task, split, Path(workdir), **dict(overrides))


@lru_cache(maxsize=16)
def _gmm_problem(dim: int, observations: int, noise_sigma: float, instance_seed: int) -> Problem:
    return gmm_problem(dim, observations, noise_sigma, torch.Generator().manual_seed(instance_seed))


def load_problem(problem: ProblemConfig, data: str, out: str | Path, split: str = "test") -> Problem:
    """The problem of a config entry on ``data``, or its ``"validation"`` or ``"calibration"`` problem."""
    out = Path(out)
    s = problem.spec
    if problem.kind == "gmm":
        seed = problem.validation["instance_seed"] if split == "validation" else s["instance_seed"]
        return _gmm_problem(int(s["dim"]), int(s["observations"]), float(s["noise_sigma"]), int(seed))
    if problem.kind == "task":
        return _task_problem(s["task"], split, str(out / "simulated"),
                             tuple(sorted((k, v) for k, v in s.items() if k != "task")))
    slices = problem.slices
    if split in ("validation", "calibration"):
        v = problem.validation if split == "validation" else problem.calibration
        data, slices = v["data"], None if "slices" not in v else tuple(v["slices"])
        s = {**s, "seed": v.get("seed", s.get("seed", 0) + (1 if split == "validation" else 2))}
    return _image_problem(data, tuple(sorted(s.items())), slices, str(out / "simulated"))


@lru_cache(maxsize=4)
def _prior(name: str, device: str):
    return open_prior(name, device)


def calibration_ratios(target: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """``delta_cal``: the posterior's mean variance over the mean squared error of its mean, over all pixels,
    and ``object_delta_cal`` over the object (:func:`~invdiff.reconstruct.job.object_region`); arrays
    ``(B, h, w)`` in image units. 1 is calibrated on average, below 1 the spread understates the error."""
    region = object_region(target).numpy()
    var, err = np.asarray(std, np.float64) ** 2, (np.asarray(mean, np.float64) - target) ** 2
    return {"delta_cal": float(var.mean() / max(err.mean(), 1e-300)),
            "object_delta_cal": float(var[region].mean() / max(err[region].mean(), 1e-300))}


def calibration_levels(slices: int) -> tuple[float, ...]:
    """The levels of :data:`CALIBRATION_LEVELS` that ``slices`` calibration slices can guarantee
    (conformal risk control needs ``slices >= 1 / (1 - level) - 1``)."""
    return tuple(a for a in CALIBRATION_LEVELS if slices >= math.ceil(1 / (1 - a) - 1 - 1e-9))


def evaluate(problem: Problem, sampler_name: str, nfe: int, settings: dict[str, Any], particles: int, seed: int,
             prior: str | None = None, device: str = "cpu", strict_pixel: bool = True,
             calibration: Problem | None = None
             ) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    """Run a registered sampler on ``problem`` and score it (module docstring); ``strict_pixel=False``
    applies the prior off its declared pixel range (a warning in the record).

    ``settings`` are on top of the family's defaults; ``prior`` overrides the problem's. With
    ``calibration`` (slices with targets, disjoint from ``problem``'s) and several particles, the sampler
    also runs there, conformal intervals are fitted on those slices (object region) and the record gets
    ``calibrated_coverage_L`` and ``calibrated_half_width_L`` on ``problem``'s slices and the fit itself
    (``record["calibration"]``). Returns the record and, for image problems, the first slice's arrays for
    the figures.
    """
    start = time.perf_counter()
    spec = SAMPLERS[sampler_name]
    sampler = configured_sampler(sampler_name, max(nfe, 1), problem.family, settings)
    n = particles if spec.particles else 1
    generator = torch.Generator().manual_seed(seed)
    if problem.family == "gmm":
        post = run(sampler, problem.measurement, problem.prior, n_particles=n, generator=generator, progress=False)
        record = {"metrics": score_posterior(problem, post, generator),
                  "network_evals": int(post.diagnostics.network_evals), "vjps": int(post.diagnostics.vjp_evals),
                  "wall_time_s": float(post.diagnostics.wall_time), "setup_s": 0.0, "family": "gmm"}
        return record, None
    model, metrics = None, {}
    if spec.token_prior:
        tokens = _prior(prior or "mri_brain_tokens_128", device)
        if not isinstance(tokens, ImageTokenPrior):
            raise ValueError(f"{sampler_name} needs a masked token prior; {prior!r} is a {type(tokens).__name__}")
        model = token_prior_for(problem, tokens)
        metrics.update({f"ceiling_{k}": v for k, v in tokenizer_ceiling(problem, tokens).items()})
    elif spec.uses_prior:
        named = prior or problem.prior
        model = load_denoiser(_prior(named, device) if isinstance(named, str) else named, device)
    setup = time.perf_counter() - start
    res = solve_problem(problem, sampler, model, n, generator, device,
                        prior_name=(prior or problem.prior_name) if isinstance(prior or problem.prior, str) else None,
                        strict_pixel=strict_pixel)
    if problem.target is not None:
        metrics.update(fastmri_volume_metrics(problem.target, res["mean"]))
    if problem.target is not None and n > 1:
        metrics.update(calibration_ratios(problem.target, res["mean"], res["std"]))
    fit = None
    if calibration is not None and problem.target is not None and n > 1:
        start_cal = time.perf_counter()
        levels = calibration_levels(len(calibration.slices))
        if calibration.target is None:
            raise ValueError(f"the calibration slices ({calibration.name}) have no target to calibrate against")
        if not levels:
            raise ValueError(f"{len(calibration.slices)} calibration slice(s) guarantee no level of "
                             f"{CALIBRATION_LEVELS}: conformal risk control needs at least 1 at 50 %, 9 at 90 %")
        cal = solve_problem(calibration, sampler, model, n, torch.Generator().manual_seed(seed + 1_000_003), device,
                            prior_name=(prior or problem.prior_name) if isinstance(prior or problem.prior, str) else None,
                            strict_pixel=strict_pixel)
        fit = fit_conformal(cal["mean"], cal["std"], calibration.target, levels, region="object",
                            provenance={"problem": calibration.name, "slices": list(calibration.slices),
                                        "sampler": sampler_name, "settings": settings, "nfe": nfe})
        for key, r in conformal_report(fit, res["mean"], res["std"], problem.target).items():
            metrics[f"calibrated_coverage_{float(key):.2f}"] = r["coverage"]
            metrics[f"calibrated_half_width_{float(key):.2f}"] = r["half_width"]
        calibration_s = time.perf_counter() - start_cal
    for prefix in ("", "object_", "equal_weight_", "equal_weight_object_"):
        sums = res.get(f"{prefix}coverage_sums")
        if sums:
            pixels = res["object_pixels"] if "object" in prefix else res["pixels"]
            metrics.update({f"{prefix}coverage_{float(a):.2f}": v / pixels for a, v in sums.items()})
    record = {"metrics": metrics, "network_evals": res["network_evals"], "vjps": res["vjps"],
              "wall_time_s": res["wall_time_s"], "setup_s": setup, "ess_min": min(res["ess"]),
              "baseline": problem.baseline_name, "family": problem.family, "measurement": problem.info}
    if res.get("prior_warnings"):
        record["warnings"] = res["prior_warnings"]
    record.update({k: res[k] for k in ("ess_min_steps", "ess_median_steps", "resampled_steps", "tempering_exponent")
                   if k in res})
    if fit is not None:
        record.update(calibration=asdict(fit), calibration_s=calibration_s)
    arrays = {"mean": res["mean"][0], "std": res["std"][0], "baseline": problem.baseline[0]}
    if problem.target is not None:
        arrays["target"] = problem.target[0]
    return record, arrays


def run_cell(cell: Cell, out: str | Path, device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """Run ``cell`` unless it is done, write its files atomically, and return its record."""
    out = Path(out)
    path = _cell_file(out, cell)
    if path.is_file():
        return json.loads(path.read_text())
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    problem = load_problem(cell.problem, cell.data, out)
    calibration = None
    if cell.problem.calibration is not None and SAMPLERS[cell.sampler.name].particles and cell.sampler.particles > 1:
        calibration = load_problem(cell.problem, cell.data, out, "calibration")
    loaded = time.perf_counter() - start
    record, arrays = evaluate(problem, cell.sampler.name, cell.nfe, {**cell.sampler.settings, **cell.tuned},
                              cell.sampler.particles, cell.seed, cell.prior, device,
                              strict_pixel=cell.prior is not None and not cell.sampler.any_pixel_size,
                              calibration=calibration)
    record.update(problem=cell.problem.name, data=cell.data, sampler=cell.sampler.label,
                  sampler_name=cell.sampler.name, nfe=cell.nfe, seed=cell.seed,
                  particles=cell.sampler.particles if SAMPLERS[cell.sampler.name].particles else 1,
                  settings=cell.sampler_settings, key=cell.key, tuned=dict(cell.tuned), commit=code_version(),
                  torch_threads=torch.get_num_threads(), niceness=os.nice(0))
    record["setup_s"] += loaded
    if "calibration" in record:  # the fit as a file `invdiff reconstruct --calibration` takes
        ConformalCalibration(**record["calibration"]).save(out / "calibration" / f"{cell.key}.json")
    if arrays is not None:
        atomic_write(path.with_suffix(".npz"), lambda tmp: np.savez_compressed(tmp, **arrays), suffix=".npz")
    atomic_write_json(path, record)
    return record


def load_results(out: str | Path) -> list[dict[str, Any]]:
    """Every finished cell's record in ``out/cells``, sorted by key."""
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "cells").glob("*.json"))]
