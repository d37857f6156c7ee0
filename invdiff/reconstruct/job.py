"""The reconstruction job: an input, a sampler and a prior in; a volume's posterior summaries out.

:func:`reconstruct` solves the chosen slices in groups of ``batch_slices`` (one batch per sampler
run). Each finished group is saved atomically to ``OUT/parts/``; a rerun with the same settings
loads finished groups instead of recomputing them, so an interrupted run resumes where it stopped.
A rerun with other settings is refused (``run.json`` holds them) unless ``force`` clears the parts.

Per slice it keeps the posterior mean's magnitude (the reconstruction), the weighted pixel-wise
standard deviation of the particles' magnitudes, and, with a target and at least two particles, the
fraction of pixels whose true value lies inside the central 50 / 90 / 95 % credible intervals.
Group ``k`` draws from ``torch.Generator().manual_seed(seed + 1_000_003 k)``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from invdiff.io import atomic_write, atomic_write_json
from invdiff.measurement import Measurement
from invdiff.problems.inputs import ReconInput, ReconProblem

__all__ = ["COVERAGE_LEVELS", "ReconSettings", "SliceResults", "particle_magnitudes", "reconstruct", "solve_problem"]

COVERAGE_LEVELS = (0.5, 0.9, 0.95)


@dataclass(frozen=True)
class ReconSettings:
    """A reconstruction's choices. ``prior`` is a shipped prior's name or a ``prior.pt`` path
    (default: the shipped prior of the input's operator); ``slices`` default to all."""

    sampler: str = "red-diff"
    nfe: int = 100
    particles: int = 1
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    prior: str | None = None
    slices: tuple[int, ...] | None = None
    batch_slices: int | None = None
    device: str = "cpu"

    def __post_init__(self):
        from invdiff.samplers.registry import SAMPLERS

        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose from {sorted(SAMPLERS)}")
        for name in ("nfe", "particles"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_slices is not None and self.batch_slices < 1:
            raise ValueError(f"batch_slices must be >= 1, got {self.batch_slices}")


@dataclass
class SliceResults:
    """Per-slice arrays ``(S, h, w)`` and per-group costs, in slice order."""

    slices: list[int]
    mean: np.ndarray
    std: np.ndarray
    baseline: np.ndarray
    target: np.ndarray | None
    coverage: dict[str, float] | None
    info: dict[str, Any]
    network_evals: int
    vjps: int
    wall_time_s: float
    ess: list[float]
    particles: int = 1


def load_prior_spec(spec: str, device: str):
    """A shipped continuous prior by name, or a ``prior.pt``/``checkpoint.pt`` file of one. Token
    priors (for APS, :mod:`invdiff.discrete`) are refused: these samplers need a denoiser."""
    from invdiff.priors import Denoiser, shipped_prior
    from invdiff.priors.loading import load_prior
    from invdiff.priors.shipped import SHIPPED_PRIORS

    if spec in SHIPPED_PRIORS:
        prior = shipped_prior(spec, device)
    elif not Path(spec).is_file():
        raise FileNotFoundError(f"prior {spec!r}: neither a shipped prior ({sorted(SHIPPED_PRIORS)}) nor a file")
    else:
        prior = load_prior(spec, device)
    if not isinstance(prior, Denoiser):
        raise ValueError(f"prior {spec!r} is a {type(prior).__name__} (a masked token prior), not a diffusion "
                         "denoiser; sample it with invdiff.discrete.APS (scripts/eval_aps_images.py)")
    return prior


def _on_device(m: Measurement, device: str) -> Measurement:
    if torch.device(device).type == "cpu":
        return m
    return Measurement(m.physics.to(device), m.y.to(device), m.sigma.to(device))


def particle_magnitudes(magnitude: Callable[[Tensor], np.ndarray], samples: Tensor) -> Tensor:
    """``(B, N, C, H, W)`` particles -> ``(B, N, h, w)`` magnitudes. One call per particle index: a
    problem's ``magnitude`` takes one image per item, as its per-item parts (MRI's coil-map support)
    are ``(B, ...)``."""
    return torch.stack([torch.from_numpy(magnitude(samples[:, j])) for j in range(samples.shape[1])], 1)


def solve_problem(problem: ReconProblem, sampler, prior, particles: int, generator: torch.Generator,
                  device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Run ``sampler`` on ``problem``; return the magnitude mean/std ``(B, h, w)``, coverage sums and costs."""
    from invdiff.metrics.calibration import interval_coverage
    from invdiff.samplers import Posterior, run

    post = run(sampler, _on_device(problem.measurement, device), prior, n_particles=particles,
               generator=generator, progress=progress)
    b, n = post.log_weights.shape
    mean = problem.magnitude(post.mean)
    if not (bool(torch.isfinite(post.samples).all()) and np.isfinite(mean).all()):
        raise ValueError(f"{type(sampler).__name__} diverged on slices {list(problem.slices)}: its samples or "
                         "posterior mean contain NaN or Inf (try a smaller step size or more steps; "
                         "`invdiff reconstruct --set KEY=VALUE`)")
    mags = particle_magnitudes(problem.magnitude, post.samples)
    weighted = Posterior(mags, post.log_weights.cpu())
    out = {"mean": mean, "std": weighted.std.numpy().astype(np.float32), "coverage_sums": None,
           "network_evals": int(post.diagnostics.network_evals), "vjps": int(post.diagnostics.vjp_evals),
           "wall_time_s": float(post.diagnostics.wall_time), "ess": [float(e) for e in post.ess], "particles": n}
    if problem.target is not None and n > 1:
        truth = torch.from_numpy(problem.target)
        cov = interval_coverage(mags, weighted.weights, truth, list(COVERAGE_LEVELS))
        out["coverage_sums"] = {str(a): c * truth.numel() for a, c in cov.items()}
        out["pixels"] = int(truth.numel())
    return out


def _groups(slices: list[int], size: int | None) -> list[list[int]]:
    size = size or len(slices)
    return [slices[i : i + size] for i in range(0, len(slices), size)]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_run_file(out: Path, fingerprint: dict, force: bool) -> None:
    run_file = out / "run.json"
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous != fingerprint:
            if not force:
                changed = sorted(k for k in set(_flat(previous)) | set(_flat(fingerprint))
                                 if _flat(previous).get(k) != _flat(fingerprint).get(k))
                raise ValueError(f"{out} holds a run with other settings ({', '.join(changed)} differ); "
                                 "use another output folder, or --force to start over")
            shutil.rmtree(out / "parts", ignore_errors=True)
    atomic_write_json(run_file, fingerprint)


def reconstruct(inp: ReconInput, settings: ReconSettings, out_dir: str | Path, *, problem_spec: dict | None = None,
                force: bool = False, progress: bool = True, log=print) -> SliceResults:
    """Solve ``settings.slices`` of ``inp`` (module docstring); parts are kept in ``out_dir/parts``."""
    from invdiff.samplers.registry import SAMPLERS, make_sampler

    slices = list(range(inp.num_slices)) if settings.slices is None else list(settings.slices)
    bad = [s for s in slices if not 0 <= s < inp.num_slices]
    if bad or not slices:
        raise ValueError(f"{inp.name}: slices {bad or slices} out of range; it has {inp.num_slices} slice(s)")
    out = Path(out_dir)
    fingerprint = {"input": inp.name, "settings": {**asdict(settings), "slices": slices},
                   "problem": problem_spec or {}}
    _check_run_file(out, json.loads(json.dumps(fingerprint)), force)
    spec = SAMPLERS[settings.sampler]
    prior = load_prior_spec(settings.prior or inp.prior_name, settings.device) if spec.uses_prior else None
    sampler = make_sampler(settings.sampler, settings.nfe, inp.family, settings.overrides)
    particles = settings.particles if spec.particles else 1
    if particles < settings.particles:
        log(f"{settings.sampler} is deterministic: running 1 particle instead of {settings.particles}")
    parts = []
    for k, group in enumerate(_groups(slices, settings.batch_slices)):
        part_file = out / "parts" / f"group_{k:04d}.pt"
        if part_file.exists():
            log(f"slices {group}: done in an earlier run ({part_file.name})")
            parts.append(_load_part(part_file))
            continue
        start = time.perf_counter()
        problem = inp.build(group)
        setup = time.perf_counter() - start
        result = solve_problem(problem, sampler, prior, particles,
                               torch.Generator().manual_seed(settings.seed + 1_000_003 * k), settings.device, progress)
        part = {"slices": group, "target": problem.target, "baseline": problem.baseline,
                "baseline_name": problem.baseline_name, "info": problem.info, "setup_s": setup, **result}
        atomic_write(part_file, lambda tmp, part=part: torch.save(_storable(part), tmp))
        log(f"slices {group}: {result['wall_time_s']:.1f} s, {result['network_evals']} network evaluations")
        parts.append(part)
    return _merge(parts)


def _storable(value):
    """A part with its numpy arrays as tensors and numpy scalars as Python numbers, so that it loads
    with ``torch.load(weights_only=True)`` (no pickled classes)."""
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_storable(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_storable(value):
    if isinstance(value, dict):
        return {k: _from_storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_from_storable(v) for v in value)
    if isinstance(value, Tensor):
        return value.numpy()
    return value


def _load_part(path: Path) -> dict:
    try:
        return _from_storable(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # a truncated file, or one written by an older invdiff (pickled numpy arrays)
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path}: cannot read this finished part ({first}); rerun with --force to redo it") from None


def _merge(parts: list[dict]) -> SliceResults:
    def cat(key):
        return np.concatenate([p[key] for p in parts])

    targets = [p["target"] for p in parts]
    coverage = None
    if all(p.get("coverage_sums") for p in parts):
        pixels = sum(p["pixels"] for p in parts)
        coverage = {a: sum(p["coverage_sums"][a] for p in parts) / pixels for a in parts[0]["coverage_sums"]}
    info = {**parts[0]["info"], "baseline": parts[0]["baseline_name"],
            "setup_s": round(sum(p["setup_s"] for p in parts), 2)}
    return SliceResults(
        slices=[s for p in parts for s in p["slices"]], mean=cat("mean"), std=cat("std"), baseline=cat("baseline"),
        target=None if any(t is None for t in targets) else np.concatenate(targets), coverage=coverage, info=info,
        network_evals=sum(p["network_evals"] for p in parts), vjps=sum(p["vjps"] for p in parts),
        wall_time_s=sum(p["wall_time_s"] for p in parts), ess=[e for p in parts for e in p["ess"]],
        particles=parts[0]["particles"])
