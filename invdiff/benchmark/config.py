"""Benchmark configurations (TOML) and the grid of cells they define.

A configuration names samplers, problems, data, seeds and network-evaluation budgets; the grid is
their product (data belong to a problem)::

    [benchmark]
    name = "ct-sparse-view"
    seeds = [0, 1, 2]          # the sampler's seed; the measurement of a problem is fixed
    nfe = [50, 100]            # network-evaluation budgets (steps)
    particles = 1              # default particles per item

    [[problem]]
    name = "ct-30"
    data = ["shepp-logan"]     # inputs as for `invdiff reconstruct`
    operator = "ct"            # any ProblemSpec field: views, geometry, acceleration, noise_sigma, ...
    views = 30
    slices = [0]               # optional: which slices of each input (default: all)
    prior = "ct_128"           # optional: a shipped prior or a prior.pt (default: the operator's)

    [[problem]]                # the Gaussian-mixture exact-posterior suite
    name = "gmm-d8-m1"
    kind = "gmm"
    dim = 8
    observations = 1
    noise_sigma = 0.1
    instance_seed = 0          # draws the prior grid, operator and x0

    [[sampler]]
    name = "dps"               # a name of invdiff.samplers.registry.SAMPLERS
    label = "DPS"              # optional, default: name
    particles = 4              # optional, overrides the default
    settings = { step_size = 0.03 }   # optional, overrides the registry defaults
    only = ["ct-30"]           # optional: the problems it runs on

Classical baselines (``uses_prior = False``) run once per problem, data and seed, at budget 0.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from invdiff.problems.inputs import ProblemSpec

__all__ = ["BenchmarkConfig", "Cell", "ConfigError", "ProblemConfig", "SamplerConfig", "load_config"]


class ConfigError(ValueError):
    """A bad configuration; the message names the file and the key."""


@dataclass(frozen=True)
class ProblemConfig:
    name: str
    kind: str  # "image" (any reconstruct input) or "gmm"
    data: tuple[str, ...]
    spec: dict[str, Any]
    slices: tuple[int, ...] | None = None
    prior: str | None = None


@dataclass(frozen=True)
class SamplerConfig:
    name: str
    label: str
    particles: int
    settings: dict[str, Any] = field(default_factory=dict)
    only: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Cell:
    """One unit of work: a sampler on one datum of one problem, at one seed and budget."""

    problem: ProblemConfig
    data: str
    sampler: SamplerConfig
    nfe: int
    seed: int

    @property
    def family(self) -> str:
        """The sampler-defaults family of the problem (``mri``, ``ct``, ``image`` or ``gmm``)."""
        from invdiff.problems.inputs import FAMILY, resolve_operator

        if self.problem.kind == "gmm":
            return "gmm"
        return FAMILY[resolve_operator(self.data, self.problem.spec.get("operator", "auto"))]

    @property
    def sampler_settings(self) -> dict[str, Any]:
        """The sampler's settings: the registry's defaults for the family, updated by the config's."""
        from invdiff.samplers.registry import sampler_settings

        return sampler_settings(self.sampler.name, self.family, self.sampler.settings)

    @property
    def fingerprint(self) -> str:
        """8 hex digits of a hash of everything that defines the cell's result beyond its name: the
        problem's settings, slices and prior, the datum, and the sampler's name, resolved settings
        (defaults included, so a changed default is a new cell) and particles."""
        what = {"problem": [self.problem.kind, self.problem.spec, self.problem.slices, self.problem.prior],
                "data": self.data, "sampler": [self.sampler.name, self.sampler_settings, self.sampler.particles]}
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:8]

    @property
    def key(self) -> str:
        """A file-name-safe unique name; editing a problem or sampler in the config gives new keys, so a
        rerun never mistakes a result of the old settings for one of the new."""
        data = re.sub(r"[^A-Za-z0-9.-]+", "-", Path(self.data).name.removesuffix(".gz"))
        label = re.sub(r"[^A-Za-z0-9.-]+", "-", self.sampler.label)
        return f"{self.problem.name}__{data}__{label}__nfe{self.nfe}__seed{self.seed}__{self.fingerprint}"


@dataclass(frozen=True)
class BenchmarkConfig:
    name: str
    path: Path
    seeds: tuple[int, ...]
    nfe: tuple[int, ...]
    problems: tuple[ProblemConfig, ...]
    samplers: tuple[SamplerConfig, ...]
    gpus_per_task: float = 0.0

    def cells(self) -> list[Cell]:
        """The grid, in a fixed order (problem, data, sampler, budget, seed)."""
        from invdiff.samplers.registry import SAMPLERS

        out = []
        for p in self.problems:
            for d in p.data:
                for s in self.samplers:
                    if s.only is not None and p.name not in s.only:
                        continue
                    budgets = self.nfe if SAMPLERS[s.name].uses_prior else (0,)
                    out += [Cell(p, d, s, n, seed) for n in budgets for seed in self.seeds]
        return out


_GMM_KEYS = {"dim", "observations", "noise_sigma", "instance_seed"}
_SPEC_KEYS = {f.name for f in fields(ProblemSpec)}


def _ints(path: Path, key: str, value: Any, minimum: int) -> tuple[int, ...]:
    if isinstance(value, int):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and v >= minimum for v in value):
        raise ConfigError(f"{path}: {key} must be a non-empty list of integers >= {minimum}, got {value!r}")
    return tuple(value)


def _problem(path: Path, i: int, raw: dict) -> ProblemConfig:
    where = f"{path}: problem[{i}]"
    raw = dict(raw)
    name = raw.pop("name", None)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9.-]+", name):
        raise ConfigError(f"{where}: 'name' must be letters, digits, '.' or '-', got {name!r}")
    kind = raw.pop("kind", "image")
    if kind == "gmm":
        unknown = set(raw) - _GMM_KEYS
        if unknown or not {"dim", "observations", "noise_sigma"} <= set(raw):
            raise ConfigError(f"{where} ({name}): a gmm problem takes dim, observations, noise_sigma and "
                              f"instance_seed; unknown {sorted(unknown)}, given {sorted(raw)}")
        return ProblemConfig(name, kind, ("exact",), {"instance_seed": 0, **raw})
    if kind != "image":
        raise ConfigError(f"{where} ({name}): kind must be 'image' or 'gmm', got {kind!r}")
    data = raw.pop("data", None)
    if isinstance(data, str):
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(d, str) for d in data):
        raise ConfigError(f"{where} ({name}): 'data' must be a list of inputs, got {data!r}")
    data = [d if d in ("demo", "shepp-logan") or Path(d).is_absolute() else str((path.parent / d).resolve())
            if (path.parent / d).exists() else d for d in data]
    slices = raw.pop("slices", None)
    prior = raw.pop("prior", None)
    if prior is not None and not isinstance(prior, str):
        raise ConfigError(f"{where} ({name}): 'prior' must be a shipped prior's name or a file, got {prior!r}")
    if prior is not None and (path.parent / prior).is_file():
        prior = str((path.parent / prior).resolve())
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise ConfigError(f"{where} ({name}): unknown keys {sorted(unknown)}; a problem takes name, data, slices, "
                          f"prior, kind and {sorted(_SPEC_KEYS)}")
    try:
        ProblemSpec(**raw)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} ({name}): {err}") from None
    return ProblemConfig(name, kind, tuple(data), raw,
                         None if slices is None else _ints(path, f"problem[{i}].slices", slices, 0), prior)


def _sampler(path: Path, i: int, raw: dict, particles: int) -> SamplerConfig:
    from invdiff.samplers.registry import SAMPLERS

    where = f"{path}: sampler[{i}]"
    raw = dict(raw)
    name = raw.pop("name", None)
    if name not in SAMPLERS:
        raise ConfigError(f"{where}: unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
    label = raw.pop("label", name)
    n = raw.pop("particles", particles)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"{where} ({label}): particles must be an integer >= 1, got {n!r}")
    settings = raw.pop("settings", {})
    only = raw.pop("only", None)
    if raw:
        raise ConfigError(f"{where} ({label}): unknown keys {sorted(raw)}; a sampler takes name, label, particles, "
                          "settings and only")
    if not isinstance(settings, dict):
        raise ConfigError(f"{where} ({label}): settings must be a table, got {settings!r}")
    return SamplerConfig(name, label, n, settings, None if only is None else tuple(only))


def load_config(path: str | Path) -> BenchmarkConfig:
    """Read and validate a configuration (module docstring); every error names the file and the key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    head = raw.get("benchmark", {})
    unknown = set(raw) - {"benchmark", "problem", "sampler"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}; expected [benchmark], [[problem]], [[sampler]]")
    if not raw.get("problem") or not raw.get("sampler"):
        raise ConfigError(f"{path}: needs at least one [[problem]] and one [[sampler]]")
    particles = head.get("particles", 1)
    problems = tuple(_problem(path, i, p) for i, p in enumerate(raw["problem"]))
    names = [p.name for p in problems]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: problem names must be unique, got {names}")
    samplers = tuple(_sampler(path, i, s, particles) for i, s in enumerate(raw["sampler"]))
    labels = [s.label for s in samplers]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: sampler labels must be unique, got {labels}")
    for s in samplers:
        if s.only and set(s.only) - set(names):
            raise ConfigError(f"{path}: sampler {s.label!r}: 'only' names unknown problems {sorted(set(s.only) - set(names))}")
    return BenchmarkConfig(name=head.get("name", path.stem), path=path,
                           seeds=_ints(path, "benchmark.seeds", head.get("seeds", [0]), 0),
                           nfe=_ints(path, "benchmark.nfe", head.get("nfe", [100]), 1),
                           problems=problems, samplers=samplers,
                           gpus_per_task=float(head.get("gpus_per_task", 0.0)))
