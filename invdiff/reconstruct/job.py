"""The reconstruction job: an input, a sampler and a prior in; a volume's posterior summaries out.

:func:`reconstruct` solves the chosen slices in groups of ``batch_slices`` (one batch per sampler
run; by default up to 8 within 4 GiB estimated, :mod:`invdiff.reconstruct.budget`). With ``volume``
(a volume sampler of :mod:`invdiff.samplers.volume`: ``dds-volume``, ``diffusion-mbir``, ``tv-3d``)
the chosen slices, which must be contiguous, are one problem coupled along z: one group, the prior run
on ``batch_slices`` slices per network call, the whole volume's estimate checked against the budget.
Each finished group is saved atomically to ``OUT/parts/``, and within a group the sampler's state every
:data:`CHECKPOINT_SECONDS`; a rerun with the same settings loads finished groups instead of recomputing
them and continues an unfinished one from its last saved step, so an interrupted run resumes where it
stopped.
A rerun with another input (its bytes, not its name), other problem or sampler settings is refused
(``run.json`` holds them) unless ``force`` clears the parts; a run that finished no part is replaced.

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
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from invdiff.io import atomic_write, atomic_write_json
from invdiff.metrics import interval_coverage
from invdiff.posterior import Posterior
from invdiff.priors import Denoiser, open_prior
from invdiff.priors.base import ChunkedDenoiser
from invdiff.priors.serving import fit_prior
from invdiff.priors.tokens import ImageTokenPrior
from invdiff.problems import Problem, ProblemSource, configured_sampler, sampler_settings
from invdiff.problems.tokens import token_prior_for
from invdiff.reconstruct.budget import (available_memory_gib, check_budget, default_group_size, exact_solver_bytes,
                                       exact_solver_group, group_bytes,
                                       slice_group_size, volume_state_bytes)
from invdiff.samplers import Sampler, run
from invdiff.samplers.checkpoint import StepCheckpoint
from invdiff.samplers.registry import SAMPLERS

__all__ = ["COVERAGE_LEVELS", "DEFAULT_TOKEN_PRIOR", "ReconSettings", "SliceResults", "check_prior_fits", "load_denoiser",
           "load_token_prior", "object_region", "particle_images",
           "reconstruct", "solve_problem", "used_prior_name"]

COVERAGE_LEVELS = (0.5, 0.9, 0.95)
#: the token prior of the token samplers when a run names none (MRI inputs)
DEFAULT_TOKEN_PRIOR = "mri_brain_tokens_128"
#: a group's sampler state is saved at most this often (seconds), so that a stopped run resumes mid-group
CHECKPOINT_SECONDS = 60.0


def _volume_samplers() -> list[str]:
    return sorted(n for n, s in SAMPLERS.items() if s.volume)


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
    volume: bool = False

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose from {sorted(SAMPLERS)}")
        if self.volume and not SAMPLERS[self.sampler].volume:
            raise ValueError(f"{self.sampler} solves each slice on its own; --volume couples the slices along z "
                             f"with one of {_volume_samplers()}")
        if SAMPLERS[self.sampler].volume and not self.volume:
            raise ValueError(f"{self.sampler} couples a volume's slices along z: pass --volume (all the chosen "
                             "slices solved as one problem)")
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


def load_denoiser(spec: str | Denoiser, device: str) -> Denoiser:
    """A continuous prior: a shipped prior's name, a ``prior.pt``/``checkpoint.pt`` file, or a prior object.
    Token priors (for APS) are refused: these samplers need a denoiser."""
    prior = spec if isinstance(spec, Denoiser) else open_prior(spec, device)
    if not isinstance(prior, Denoiser):
        raise ValueError(f"prior {spec!r} is a {type(prior).__name__} (a masked token prior), not a diffusion "
                         "denoiser; sample it with invdiff.samplers.APS")
    return prior


def used_prior_name(settings: ReconSettings, input_prior: str) -> str:
    """The prior a run uses: the one named in ``settings``, else the input's shipped prior
    (``input_prior``), or :data:`DEFAULT_TOKEN_PRIOR` for a token sampler."""
    return settings.prior or (DEFAULT_TOKEN_PRIOR if SAMPLERS[settings.sampler].token_prior else input_prior)


def load_token_prior(spec: str | None, family: str, device: str) -> ImageTokenPrior:
    """The masked token prior a token sampler (APS, guided remasking) runs on: ``spec`` (a shipped name or a
    file), else the shipped :data:`DEFAULT_TOKEN_PRIOR` for MRI; other families must name one."""
    if spec is None:
        if family != "mri":
            raise ValueError(f"no shipped token prior serves {family} inputs (the shipped {DEFAULT_TOKEN_PRIOR!r} "
                             "models MR magnitudes); pass one with --prior NAME or PATH")
        spec = DEFAULT_TOKEN_PRIOR
    prior = open_prior(spec, device)
    if not isinstance(prior, ImageTokenPrior):
        raise ValueError(f"prior {spec!r} is a {type(prior).__name__}, not a masked token prior; the token "
                         "samplers (aps, guided-remasking) need one, e.g. mri_brain_tokens_128")
    return prior


def particle_images(to_image: Callable[[Tensor], np.ndarray], samples: Tensor) -> Tensor:
    """``(B, N, C, H, W)`` particles -> ``(B, N, h, w)`` images. One call per particle index: a
    problem's ``to_image`` takes one image per item, as its per-item parts (MRI's coil-map support)
    are ``(B, ...)``."""
    return torch.stack([torch.from_numpy(to_image(samples[:, j])) for j in range(samples.shape[1])], 1)


def object_region(target: np.ndarray, fraction: float = 0.05) -> Tensor:
    """``(B, h, w)`` bool: the pixels whose target exceeds ``fraction`` of its slice's maximum (the object,
    where coverage means something; outside it the target is noise or zero):
    :func:`invdiff.metrics.conformal.region_mask` as a tensor."""
    from invdiff.metrics.conformal import region_mask

    return torch.from_numpy(region_mask(np.asarray(target), "object", fraction))


def solve_problem(problem: Problem, sampler: Sampler, prior, particles: int,
                  generator: torch.Generator, device: str = "cpu", progress: bool = False,
                  prior_name: str | None = None, strict_pixel: bool = True,
                  chunk_slices: int | None = None, checkpoint: StepCheckpoint | None = None) -> dict[str, Any]:
    """Run ``sampler`` on ``problem`` and summarise its posterior in image units.

    Returns the images' weighted mean and std ``(B, h, w)``, the costs, the final ESS per item and, for
    weighted samplers, the smallest ESS over the steps and the number of steps that resampled. With a
    target and several particles: the coverage of the central credible intervals at
    :data:`COVERAGE_LEVELS`, as sums over all pixels and over the object (:func:`object_region`), and
    for weighted samplers the same with the weights dropped (what the particles spread, a diagnostic).
    Sums, so that slice groups add up. The prior is fitted to the unknown's size and pixel size first
    (:func:`~invdiff.priors.serving.fit_prior`; ``prior_name`` names it in errors and in
    ``prior_warnings``; ``strict_pixel=False`` applies it off its declared pixel range with a warning).
    ``chunk_slices`` runs the network on at most that many particles at a time (a volume's slices).
    ``checkpoint`` saves the sampler's state between steps and resumes from a saved one; the wall time
    then includes the stopped run's.
    """
    shape = problem.measurement.x_shape
    image_shape = tuple(shape[-2:]) if prior is not None and shape is not None and len(shape) == 4 else None
    prior, prior_warnings = fit_prior(prior, image_shape, problem.pixel_mm, name=prior_name or problem.prior_name,
                                      data=problem.name or "the problem", strict=strict_pixel)
    if prior is not None and chunk_slices is not None:
        prior = ChunkedDenoiser(prior, chunk_slices)
    post = run(sampler, problem.measurement.to(device), prior, n_particles=particles, generator=generator,
               progress=progress, callback=checkpoint, resume=None if checkpoint is None else checkpoint.restore)
    if checkpoint is not None:
        post.diagnostics.wall_time += checkpoint.elapsed_before
    b, n = post.log_weights.shape
    mean = problem.to_image(post.mean)
    if not (bool(torch.isfinite(post.samples).all()) and np.isfinite(mean).all()):
        raise ValueError(f"{type(sampler).__name__} diverged on slices {list(problem.slices)}: its samples or "
                         "posterior mean contain NaN or Inf (try a smaller step size or more steps; "
                         "`invdiff reconstruct --set KEY=VALUE`)")
    images = particle_images(problem.to_image, post.samples)
    weighted = Posterior(images, post.log_weights.cpu())
    diag = post.diagnostics
    out = {"mean": mean, "std": weighted.std.numpy().astype(np.float32), "coverage_sums": None,
           "network_evals": int(diag.network_evals), "vjps": int(diag.vjp_evals),
           "wall_time_s": float(diag.wall_time), "ess": [float(e) for e in post.ess], "particles": n,
           "prior_warnings": prior_warnings}
    if diag.ess_history:
        history = torch.stack(diag.ess_history)
        out["ess_min_steps"] = float(history.min())
        out["ess_median_steps"] = float(history.median(0).values.min())
        out["resampled_steps"] = int(torch.stack(diag.resampled).any(1).sum()) if diag.resampled else 0
    if diag.exponent_history:
        out["tempering_exponent"] = float(torch.stack(diag.exponent_history).mean())
    if problem.target is not None and n > 1:
        truth = torch.from_numpy(problem.target)
        region = object_region(problem.target)
        levels = list(COVERAGE_LEVELS)
        readings = {"": weighted.weights}
        if bool((post.log_weights != post.log_weights[:, :1]).any()):
            readings["equal_weight_"] = torch.full_like(weighted.weights, 1.0 / n)
        for prefix, w in readings.items():
            cov = interval_coverage(images, w, truth, levels)
            obj = interval_coverage(images, w, truth, levels, region)
            out[f"{prefix}coverage_sums"] = {str(a): c * truth.numel() for a, c in cov.items()}
            out[f"{prefix}object_coverage_sums"] = {str(a): c * int(region.sum()) for a, c in obj.items()}
        out["pixels"], out["object_pixels"] = int(truth.numel()), int(region.sum())
    return out


def _groups(slices: list[int], size: int) -> list[list[int]]:
    return [slices[i : i + size] for i in range(0, len(slices), size)]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_run_file(out: Path, fingerprint: dict, force: bool) -> None:
    """Refuse ``out`` when it holds finished parts of another run (other input bytes, problem or sampler
    settings) unless ``force``; a previous run that finished no part is simply replaced."""
    run_file = out / "run.json"
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, ValueError):
            previous = None
        finished = any((out / "parts").glob("group_*.pt"))
        if previous != fingerprint:
            if not force and finished and previous is None:
                raise ValueError(f"{run_file}: unreadable, and {out / 'parts'} holds finished parts of an unknown "
                                 "run; use another output folder, or --force to start over")
            if not force and finished:
                changed = sorted(k for k in set(_flat(previous)) | set(_flat(fingerprint))
                                 if _flat(previous).get(k) != _flat(fingerprint).get(k))
                raise ValueError(f"{out} holds a run with other settings ({', '.join(changed)} differ); "
                                 "use another output folder, or --force to start over")
            shutil.rmtree(out / "parts", ignore_errors=True)
    atomic_write_json(run_file, fingerprint)


def check_prior_fits(prior, inp: ProblemSource, name: str, strict: bool = True) -> list[str]:
    """:func:`~invdiff.priors.serving.fit_prior` for ``inp``'s unknown, before any costly set-up (coil-map
    estimation, projector): ``ValueError`` when the prior cannot serve its image size, or (``strict``)
    its pixel size; else the warnings to record."""
    return fit_prior(prior, inp.image_shape, inp.pixel_mm, name=name, data=inp.name, strict=strict)[1]


def reconstruct(inp: ProblemSource, settings: ReconSettings, out_dir: str | Path, *, problem_spec: dict | None = None,
                force: bool = False, progress: bool = True, log=print, max_memory_bytes: int | None = None,
                checkpoint_seconds: float = CHECKPOINT_SECONDS) -> SliceResults:
    """Solve ``settings.slices`` of ``inp`` (module docstring); parts are kept in ``out_dir/parts``.

    ``max_memory_bytes`` (default: 90 % of the memory available now) bounds the estimated working set
    of a slice group (:mod:`invdiff.reconstruct.budget`); groups hold ``batch_slices`` slices (default
    :func:`~invdiff.reconstruct.budget.default_group_size`: up to 8 within an estimated 4 GiB, never
    derived from the free memory, so that a resumed run groups as the first did), and a group
    that does not fit is refused before any work, naming the ``batch_slices`` that would.

    Within a group, the sampler's state is saved to ``out_dir/parts/state_K.pt`` at most every
    ``checkpoint_seconds`` (:class:`~invdiff.samplers.checkpoint.StepCheckpoint`): a stopped run resumes
    at the saved step, not at the group's start (a volume is one group).
    """
    slices = list(range(inp.num_slices)) if settings.slices is None else list(settings.slices)
    bad = [s for s in slices if not 0 <= s < inp.num_slices]
    if bad or not slices:
        raise ValueError(f"{inp.name}: slices {bad or slices} out of range; it has {inp.num_slices} slice(s)")
    if len(set(slices)) != len(slices):
        raise ValueError(f"{inp.name}: slices {slices} name a slice twice")
    spec = SAMPLERS[settings.sampler]
    sampler = configured_sampler(settings.sampler, settings.nfe, inp.family, settings.overrides)
    prior_name = used_prior_name(settings, inp.prior_name)
    if spec.token_prior:
        prior = load_token_prior(settings.prior, inp.family, settings.device)
    else:
        prior = load_denoiser(prior_name, settings.device) if spec.uses_prior else None
    strict = settings.prior is not None  # a prior the user named must fit; the default one is used with a warning
    check_prior_fits(prior, inp, prior_name, strict)
    particles = settings.particles if spec.particles else 1
    budget = max_memory_bytes or int(available_memory_gib() * 0.9 * 2**30)
    shape = inp.image_shape or (1, 1)
    per_slice = group_bytes(shape, 1, particles, spec.vjp, inp.coils, inp.kspace_shape)
    if sampler.attaches_exact_solver:  # its eigenvectors count, and a group too large for them would get CG
        per_slice += exact_solver_bytes(shape, inp.coils)
    group = default_group_size(len(slices), per_slice)  # not from free memory: a resume groups alike
    if sampler.attaches_exact_solver:
        group = min(group, exact_solver_group(shape, inp.coils))
    group = settings.batch_slices or group
    fits = slice_group_size(len(slices), per_slice, budget)
    chunk = None
    if inp.couples_slices and not settings.volume:
        raise ValueError(f"{inp.name}: a 3-D acquisition couples all slices through k-space; solve them as one "
                         f"volume with --volume and one of {_volume_samplers()}")
    if settings.volume:
        if slices != list(range(slices[0], slices[0] + len(slices))):
            raise ValueError(f"{inp.name}: --volume needs contiguous slices in order (e.g. --slices 10:74), got {slices}")
        state = volume_state_bytes(shape, len(slices), particles, inp.coils, inp.kspace_shape)
        chunk = min(group, len(slices))
        room = (budget - per_slice) // max(state // len(slices), 1)  # slices that fit with one slice per call
        check_budget({f"{len(slices)} slice(s) x {particles} particle(s) of state": state,
                      f"network on {chunk} slice(s) at a time": chunk * per_slice}, budget,
                     f"a volume of {room} slices fits with --batch-slices 1" if room >= 1 else "use fewer --particles")
        groups = [slices]
    else:
        check_budget({f"{group} slice(s) x {particles} particle(s)": group * per_slice}, budget,
                     f"use --batch-slices {fits}" if fits * per_slice <= budget else "use fewer --particles")
        groups = _groups(slices, group)
    out = Path(out_dir)
    fingerprint = {"input": inp.name, "input_key": inp.content_key, "settings": {**asdict(settings), "slices": slices},
                   "groups": groups,
                   "sampler_settings": sampler_settings(settings.sampler, inp.family, settings.overrides, settings.nfe),
                   "problem": problem_spec or {}}
    _check_run_file(out, json.loads(json.dumps(fingerprint, default=str)), force)
    if particles < settings.particles:
        log(f"{settings.sampler} is deterministic: running 1 particle instead of {settings.particles}")
    parts = []
    for k, group in enumerate(groups):
        part_file = out / "parts" / f"group_{k:04d}.pt"
        if part_file.exists():
            log(f"slices {group}: done in an earlier run ({part_file.name})")
            parts.append(_load_part(part_file))
            continue
        start = time.perf_counter()
        problem = inp.build(group)
        setup = time.perf_counter() - start
        checkpoint = StepCheckpoint(out / "parts" / f"state_{k:04d}.pt", checkpoint_seconds)
        model = token_prior_for(problem, prior) if spec.token_prior else prior  # lifted to the group's phase
        result = solve_problem(problem, sampler, model, particles,
                               torch.Generator().manual_seed(settings.seed + 1_000_003 * k), settings.device, progress,
                               prior_name, strict, chunk, checkpoint)
        if checkpoint.resumed_step is not None:
            log(f"slices {group}: resumed at step {checkpoint.resumed_step} ({checkpoint.path.name})")
        part = {"slices": group, "target": problem.target, "baseline": problem.baseline,
                "baseline_name": problem.baseline_name, "info": problem.info, "setup_s": setup, **result}
        atomic_write(part_file, lambda tmp, part=part: torch.save(_storable(part), tmp))
        checkpoint.remove()
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
            "setup_s": round(sum(p["setup_s"] for p in parts), 2),
            "prior_warnings": list(dict.fromkeys(w for p in parts for w in p.get("prior_warnings", [])))}
    return SliceResults(
        slices=[s for p in parts for s in p["slices"]], mean=cat("mean"), std=cat("std"), baseline=cat("baseline"),
        target=None if any(t is None for t in targets) else np.concatenate(targets), coverage=coverage, info=info,
        network_evals=sum(p["network_evals"] for p in parts), vjps=sum(p["vjps"] for p in parts),
        wall_time_s=sum(p["wall_time_s"] for p in parts), ess=[e for p in parts for e in p["ess"]],
        particles=parts[0]["particles"])
