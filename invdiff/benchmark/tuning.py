"""Tune on validation, then run on test: choosing each sampler's settings on a problem's validation data.

:func:`tune_on_grid` is the search: the best value of a geometric grid, extended while the best sits
at an edge. :func:`tune` applies it to a (problem, sampler, budget) of a benchmark configuration: every
grid point runs on the problem's *validation* problem (the config's first seed), scored by PSNR
(images) or sliced Wasserstein distance (Gaussian mixtures), and the best setting goes into that
sampler's test cells. Every validation run is its own file under ``OUT/tuning/`` (a rerun skips it),
and ``OUT/tuning/PROBLEM__LABEL__nfeN.json`` records the choice and every score.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from invdiff.benchmark.config import BenchmarkConfig, ProblemConfig, SamplerConfig
from invdiff.io import atomic_write_json

__all__ = ["tune", "tune_all", "tune_on_grid"]


def tune_on_grid(score: Callable[[float], float], grid: Sequence[float], extensions: int) -> tuple[float, dict]:
    """The grid value with the highest ``score``, and every score tried.

    ``grid`` is increasing and geometric; while the best value is its smallest or largest, one more
    value is tried beyond it at the grid's ratio (at most ``extensions`` times). Integer grids stay
    integers; other new values are rounded to 3 significant digits. An extension the sampler refuses
    (``score`` raises ``ValueError``: DAPS's ``lr`` must stay below 2) ends the extension; a refused value
    of the grid itself is an error of the configuration and propagates.
    """
    if extensions and len(grid) > 1 and not grid[0] > 0:
        raise ValueError(f"a geometric grid must start above 0 to be extended, got {list(grid)}")
    scores = {v: score(v) for v in grid}
    ratio = grid[1] / grid[0] if extensions and len(grid) > 1 else 1.0
    for _ in range(extensions if len(grid) > 1 else 0):
        best, values = max(scores, key=scores.get), sorted(scores)
        if best not in (values[0], values[-1]):
            break
        step = best * ratio if best == values[-1] else best / ratio
        new = round(step) if isinstance(best, int) else float(f"{step:.3g}")
        try:
            scores[new] = score(new)
        except ValueError:
            break
    return max(scores, key=scores.get), scores


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text)


def tune(config: BenchmarkConfig, problem: ProblemConfig, sampler: SamplerConfig, nfe: int, out: str | Path,
         device: str = "cpu", log: Callable[[str], None] = print) -> dict[str, Any]:
    """The settings chosen for ``sampler`` on ``problem``'s validation data at budget ``nfe`` (module
    docstring); ``{}`` when the sampler has no grid for the problem's family."""
    from invdiff.benchmark.cells import evaluate, load_problem

    out = Path(out)
    data = problem.data[0]
    grid = sampler.tuning_grid(problem.family(data), nfe)
    if not grid:
        return {}
    seed = config.seeds[0]
    summary = out / "tuning" / f"{problem.name}__{_slug(sampler.label)}__nfe{nfe}.json"
    what = json.loads(json.dumps({"grid": grid, "extend": sampler.extend, "settings": sampler.settings,
                                  "particles": sampler.particles,
                                  "prior": sampler.prior or problem.prior, "seed": seed,
                                  "validation": problem.validation,
                                  "spec": problem.spec}))
    if summary.is_file():
        done = json.loads(summary.read_text())
        if done.get("what") == what:
            return done["chosen"]
    gmm = problem.kind == "gmm"
    validation = load_problem(problem, data, out, "validation")

    def score(values: dict[str, Any]) -> float:
        settings = {**sampler.settings, **values}
        prior = sampler.prior or problem.prior  # the test cells' prior (CellSpec.prior)
        digest = hashlib.sha256(json.dumps([sampler.name, settings, sampler.particles, prior, seed],
                                           sort_keys=True).encode()).hexdigest()[:8]
        path = summary.with_name(f"{summary.stem}__{digest}.json")
        if path.is_file():
            record = json.loads(path.read_text())
        else:
            record, _ = evaluate(validation, sampler.name, nfe, settings, sampler.particles, seed, prior, device,
                                 strict_pixel=prior is not None and not sampler.any_pixel_size)
            atomic_write_json(path, {**record, "settings": settings})
        value = -record["metrics"]["sw"] if gmm else record["metrics"]["PSNR"]
        log(f"  validation {problem.name} {sampler.label} {values}: {abs(value):.3f} {'SW' if gmm else 'dB'}")
        return value

    if len(grid) == 1:
        (key, values), = grid.items()
        best, scores = tune_on_grid(lambda v: score({key: v}), sorted(values), sampler.extend)
        chosen, tried = {key: best}, [({key: v}, s) for v, s in scores.items()]
    else:
        keys = sorted(grid)
        tried = [(dict(zip(keys, combo)), None) for combo in itertools.product(*(grid[k] for k in keys))]
        tried = [(values, score(values)) for values, _ in tried]
        chosen = max(tried, key=lambda t: t[1])[0]
    atomic_write_json(summary, {"problem": problem.name, "sampler": sampler.label, "nfe": nfe, "seed": seed, "what": what,
                                "metric": "sliced Wasserstein (lower is better)" if gmm else "PSNR (dB)",
                                "grid": grid, "chosen": chosen,
                                "scores": [{"settings": v, "score": abs(s)} for v, s in tried]})
    return chosen


def tune_all(config: BenchmarkConfig, out: str | Path, device: str = "cpu",
             log: Callable[[str], None] = print) -> dict[tuple[str, str, int], dict[str, Any]]:
    """:func:`tune` for every (problem, sampler, budget) of ``config``: ``{(problem, label, nfe): settings}``.
    A budget of ``settings_from_budget`` takes the choice of its source budget (searched here if it was not)."""
    chosen = {}
    for problem, sampler in config.pairs():
        for nfe in config.budgets(sampler):
            source = config.tuning_budget(nfe)
            values = tune(config, problem, sampler, source, out, device, log=log)
            if values:
                chosen[(problem.name, sampler.label, nfe)] = values
                carried = f" (the choice at {source} NFE)" if source != nfe else ""
                log(f"{problem.name} {sampler.label} at {nfe} NFE: chose {values}{carried}")
    return chosen
