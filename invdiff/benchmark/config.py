"""Benchmark configurations (TOML) and the grid of cells they define.

A configuration names samplers, problems, data, seeds and network-evaluation budgets; the grid is
their product (data belong to a problem)::

    [benchmark]
    name = "ct-sparse-view"
    seeds = [0, 1, 2]          # the sampler's seed; the measurement of a problem is fixed
    nfe = [50, 100]            # network-evaluation budgets (steps)
    particles = 1              # default particles per item
    tune = false               # true: tune each sampler on the problem's validation data, then test
    settings_from_budget = { 500 = 100 }   # tune = true: budget 500 takes the settings chosen at 100
                                           # (a grid too costly to search at 500); reports say so

    [[problem]]
    name = "ct-30"
    data = ["shepp-logan"]     # inputs as for `invdiff reconstruct`
    operator = "ct"            # any ProblemSpec field: views, geometry, acceleration, noise_sigma, ...
    views = 30
    slices = [0]               # optional: which slices of each input (default: all)
    prior = "ct_128"           # optional: a shipped prior or a prior.pt (default: the operator's)
    validation = { data = ["ellipses:1:7"], slices = [0], seed = 1 }   # for tune = true
    calibration = { data = ["ellipses:20:8"], seed = 2 }   # optional: conformal calibration slices

    [[problem]]                # a named task of invdiff.problems.image_tasks: its test problem is
    name = "mri-4x"            # scored, its validation problem tunes
    kind = "task"
    task = "mri-4x"
    calib_rows = 48            # optional, MRI: how the coil maps are estimated (TASK_OVERRIDES), same data

    [[problem]]                # the Gaussian-mixture exact-posterior suite
    name = "gmm-d8-m1"
    kind = "gmm"
    dim = 8
    observations = 1
    noise_sigma = 0.1
    instance_seed = 0          # draws the prior grid, operator and x0
    validation = { instance_seed = 100 }   # an independent draw, for tune = true

    [[sampler]]
    name = "dps"               # a name of invdiff.samplers.registry.SAMPLERS
    label = "DPS"              # optional, default: name
    particles = 4              # optional, overrides the default
    settings = { step_size = 0.03 }   # optional, overrides the defaults (invdiff/problems/defaults.toml)
    grid = { step_size = [0.01, 0.03, 0.1] }   # tune = true: searched on validation (default: the
                                               # grid in defaults.toml for the problem's family;
                                               # {} keeps the defaults)
    extend = 2                 # a 1-D grid is extended this many times past an edge (0 for bounded ones)
    nfe = [32]                 # optional: this sampler's budgets instead of the benchmark's
    prior = "mri_brain_tokens_128"    # optional: this sampler's prior instead of the problem's
    any_pixel_size = true      # optional: apply the prior off its declared pixel range (an ablation; warned)
    only = ["ct-30"]           # optional: the problems it runs on

Classical baselines (``uses_prior = False``) run once per problem, data and seed, at budget 0.
With ``tune = true`` a sampler with a grid is first run on the problem's validation data for every
grid point (the first seed; a 1-D grid is extended while its best value sits at an edge) and its
test cells take the best setting (highest PSNR; lowest sliced Wasserstein distance for ``gmm``).
With a ``calibration`` table, every test cell of a sampler with several particles also runs on those slices
(same settings and budget; at least 9 slices for the 90 % level, 19 for 95 %), fits conformal intervals on
them and reports their coverage and width on the test slices (:mod:`invdiff.benchmark.cells`).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from invdiff.io import content_hash
from invdiff.problems import FAMILY, ProblemSpec, default_entry, resolve_operator, sampler_settings
from invdiff.problems.image_tasks import TASK_SPECS
from invdiff.samplers.registry import SAMPLERS, check_settings

__all__ = ["BenchmarkConfig", "Cell", "ConfigError", "ProblemConfig", "SamplerConfig", "load_config"]


class ConfigError(ValueError):
    """A bad configuration; the message names the file and the key."""


@dataclass(frozen=True)
class ProblemConfig:
    name: str
    kind: str  # "image" (any reconstruct input), "task" (a named image task) or "gmm"
    data: tuple[str, ...]
    spec: dict[str, Any]
    slices: tuple[int, ...] | None = None
    prior: str | None = None
    validation: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None

    @property
    def tunable(self) -> bool:
        return self.kind == "task" or self.validation is not None

    def family(self, data: str) -> str:
        """The sampler-defaults family on ``data`` (``mri``, ``ct``, ``image`` or ``gmm``)."""
        if self.kind == "gmm":
            return "gmm"
        if self.kind == "task":
            return FAMILY[TASK_SPECS[self.spec["task"]].operator]
        return FAMILY[resolve_operator(data, self.spec.get("operator", "auto"))]


@dataclass(frozen=True)
class SamplerConfig:
    name: str
    label: str
    particles: int
    settings: dict[str, Any] = field(default_factory=dict)
    only: tuple[str, ...] | None = None
    grid: dict[str, list] | None = None
    nfe: tuple[int, ...] | None = None
    prior: str | None = None
    extend: int = 2
    any_pixel_size: bool = False

    def tuning_grid(self, family: str, nfe: int | None = None) -> dict[str, list]:
        """The grid to search on validation: the config's, else the defaults file's for ``family`` at
        budget ``nfe``."""
        if self.grid is not None:
            return self.grid
        entry = default_entry(self.name, family, nfe)
        return {} if entry is None else {k: v for k, v in entry.grid.items() if k not in self.settings}


@dataclass(frozen=True)
class Cell:
    """One unit of work: a sampler on one datum of one problem, at one seed and budget; ``tuned`` holds
    the settings chosen on validation data (empty without tuning)."""

    problem: ProblemConfig
    data: str
    sampler: SamplerConfig
    nfe: int
    seed: int
    tuned: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        """The sampler-defaults family of the problem (``mri``, ``ct``, ``image`` or ``gmm``)."""
        return self.problem.family(self.data)

    @property
    def sampler_settings(self) -> dict[str, Any]:
        """The sampler's settings: its defaults for the family at this budget (:mod:`invdiff.problems.defaults`),
        updated by the config's, then by the tuned ones."""
        return sampler_settings(self.sampler.name, self.family, {**self.sampler.settings, **self.tuned}, self.nfe)

    @property
    def prior(self) -> str | None:
        """The prior named by the sampler or the problem (``None``: the problem's default)."""
        return self.sampler.prior or self.problem.prior

    @property
    def fingerprint(self) -> str:
        """8 hex digits of a hash of everything that defines the cell's result beyond its name: the
        problem's settings, slices and prior, the datum (and a file's content hash), and the sampler's name,
        resolved settings (defaults included, so a changed default is a new cell), particles and prior."""
        sampler = [self.sampler.name, self.sampler_settings, self.sampler.particles]
        if self.sampler.prior is not None:
            sampler.append(self.sampler.prior)
        if self.sampler.any_pixel_size:
            sampler.append("any_pixel_size")
        what = {"problem": [self.problem.kind, self.problem.spec, self.problem.slices, self.problem.prior],
                "data": self.data, "sampler": sampler}
        if self.problem.calibration is not None:
            what["calibration"] = self.problem.calibration
        if _is_path(self.data):  # a file's bytes, not its name, identify it (named inputs are fixed)
            what["data_sha256"] = _content_hash(self.data, *_stamp(self.data))
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
    tune: bool = False
    settings_from_budget: dict[int, int] = field(default_factory=dict)
    only_budgets: tuple[int, ...] | None = None
    only_problems: tuple[str, ...] | None = None

    def tuning_budget(self, nfe: int) -> int:
        """The budget whose validation search chooses the settings of budget ``nfe`` (itself unless
        ``settings_from_budget`` carries another's choice to it)."""
        return self.settings_from_budget.get(nfe, nfe)

    def budgets(self, sampler: SamplerConfig) -> tuple[int, ...]:
        """The budgets ``sampler`` runs at (0 for the classical baselines), within ``only_budgets`` if set."""
        if not SAMPLERS[sampler.name].uses_prior:
            return (0,)
        own = sampler.nfe or self.nfe
        return own if self.only_budgets is None else tuple(n for n in own if n in self.only_budgets)

    @property
    def all_budgets(self) -> tuple[int, ...]:
        """Every network-evaluation budget the configuration names (the benchmark's and the samplers' own)."""
        return tuple(sorted(set(self.nfe) | {n for s in self.samplers for n in (s.nfe or ())}))

    def restricted(self, budgets: tuple[int, ...] | None = None, problems: tuple[str, ...] | None = None
                   ) -> BenchmarkConfig:
        """This grid at the given network-evaluation ``budgets`` and for the named ``problems`` only (a part
        of a long benchmark, run now, or beside another part in a second process on the same ``--out``; the
        cells and tuning records keep their keys, so a later run of the whole finds them done). ``None``
        keeps all. Every budget and problem must be one of the config's."""
        config = self
        if budgets is not None:
            known = self.all_budgets
            unknown = sorted(set(budgets) - set(known))
            if unknown:
                raise ConfigError(f"{self.path}: budgets {unknown} are not in the configuration (it has {list(known)})")
            config = replace(config, only_budgets=tuple(sorted(set(budgets))))
        if problems is not None:
            names = [p.name for p in self.problems]
            unknown_names = sorted(set(problems) - set(names))
            if unknown_names:
                raise ConfigError(f"{self.path}: problems {unknown_names} are not in the configuration (it has {names})")
            config = replace(config, problems=tuple(p for p in self.problems if p.name in problems),
                             only_problems=tuple(n for n in names if n in problems))
        return config

    def pairs(self) -> list[tuple[ProblemConfig, SamplerConfig]]:
        """The (problem, sampler) pairs of the grid, in order."""
        return [(p, s) for p in self.problems for s in self.samplers if s.only is None or p.name in s.only]

    def cells(self, tuned: dict[tuple[str, str, int], dict[str, Any]] | None = None) -> list[Cell]:
        """The grid, in a fixed order (problem, data, sampler, budget, seed); ``tuned`` maps
        ``(problem, sampler label, budget)`` to the settings chosen on validation."""
        tuned = tuned or {}
        out = []
        for p, s in self.pairs():
            for d in p.data:
                for n in self.budgets(s):
                    out += [Cell(p, d, s, n, seed, tuned.get((p.name, s.label, n), {})) for seed in self.seeds]
        return out


_GMM_KEYS = {"dim", "observations", "noise_sigma", "instance_seed"}
_SPEC_KEYS = {f.name for f in fields(ProblemSpec)}
#: the ProblemSpec fields a task problem may change: how the operator is estimated from the same data
TASK_OVERRIDES = ("calib_rows", "espirit_crop", "support_margin")


def _ints(path: Path, key: str, value: Any, minimum: int) -> tuple[int, ...]:
    if isinstance(value, int):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and v >= minimum for v in value):
        raise ConfigError(f"{path}: {key} must be a non-empty list of integers >= {minimum}, got {value!r}")
    return tuple(value)


def _resolve_data(path: Path, data: list[str]) -> list[str]:
    return [d if d in ("demo", "shepp-logan") or ":" in d or Path(d).is_absolute() else
            str((path.parent / d).resolve()) if (path.parent / d).exists() else d for d in data]


def _named(datum: str) -> bool:
    """A named input (the demo scan, a phantom, offline anatomy), not a file or folder."""
    return datum in ("demo", "shepp-logan") or datum.startswith(("ellipses:", "anatomy:"))


def _is_path(datum: str) -> bool:
    return not _named(datum) and Path(datum).exists()


def _stamp(datum: str) -> tuple[int, int]:
    st = Path(datum).stat()
    return st.st_mtime_ns, st.st_size


@lru_cache(maxsize=256)
def _content_hash(datum: str, mtime_ns: int, size: int) -> str:
    """The datum's content hash, cached while its modification time and size stay the same."""
    return content_hash(datum)


def _check_inputs(where: str, name: str, data: list[str]) -> None:
    """Every input that names a file or folder exists (named inputs such as ``shepp-logan`` and
    ``anatomy:NAME`` are checked when they are opened)."""
    for d in data:
        if not _named(d) and not Path(d).exists():
            raise ConfigError(f"{where} ({name}): data {d!r}: no such file or folder")


def _held_out(path: Path, where: str, name: str, kind: str, raw: Any, what: str = "validation"
              ) -> dict[str, Any] | None:
    """A problem's ``validation`` or ``calibration`` table (the latter for image problems only)."""
    if raw is None:
        return None
    if what == "calibration" and kind != "image":
        raise ConfigError(f"{where} ({name}): 'calibration' is for image problems (data, slices, seed); "
                          f"this problem is kind {kind!r}")
    allowed = {"instance_seed"} if kind == "gmm" else {"data", "slices", "seed"}
    if not isinstance(raw, dict) or set(raw) - allowed or not raw:
        raise ConfigError(f"{where} ({name}): '{what}' must be a table of {sorted(allowed)}, got {raw!r}")
    out = dict(raw)
    if kind != "gmm":
        data = out.get("data")
        if isinstance(data, str):
            data = [data]
        if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], str):
            raise ConfigError(f"{where} ({name}): {what}.data must name one input, got {data!r}")
        out["data"] = _resolve_data(path, data)[0]
        _check_inputs(f"{where}.{what}", name, [out["data"]])
        if "slices" in out:
            out["slices"] = list(_ints(path, f"{where}.{what}.slices", out["slices"], 0))
    return out


def _problem(path: Path, i: int, raw: dict) -> ProblemConfig:
    where = f"{path}: problem[{i}]"
    raw = dict(raw)
    name = raw.pop("name", None)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9.-]+", name):
        raise ConfigError(f"{where}: 'name' must be letters, digits, '.' or '-', got {name!r}")
    kind = raw.pop("kind", "image")
    validation = _held_out(path, where, name, kind, raw.pop("validation", None))
    calibration = _held_out(path, where, name, kind, raw.pop("calibration", None), "calibration")
    if kind == "gmm":
        unknown = set(raw) - _GMM_KEYS
        if unknown or not {"dim", "observations", "noise_sigma"} <= set(raw):
            raise ConfigError(f"{where} ({name}): a gmm problem takes dim, observations, noise_sigma, "
                              f"instance_seed and validation; unknown {sorted(unknown)}, given {sorted(raw)}")
        return ProblemConfig(name, kind, ("exact",), {"instance_seed": 0, **raw}, validation=validation)
    if kind == "task":
        task = raw.pop("task", None)
        prior = raw.pop("prior", None)
        overrides = {k: raw.pop(k) for k in TASK_OVERRIDES if k in raw}
        if task not in TASK_SPECS or raw:
            raise ConfigError(f"{where} ({name}): a task problem takes task (one of {sorted(TASK_SPECS)}), prior and "
                              f"the operator choices {list(TASK_OVERRIDES)}; got task {task!r} and {sorted(raw)}")
        if overrides and TASK_SPECS[task].operator != "mri":
            raise ConfigError(f"{where} ({name}): {sorted(overrides)} are multi-coil MRI choices; task {task!r} is not MRI")
        try:
            replace(TASK_SPECS[task], **overrides)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where} ({name}): {err}") from None
        return ProblemConfig(name, kind, ("test",), {"task": task, **overrides}, prior=prior)
    if kind != "image":
        raise ConfigError(f"{where} ({name}): kind must be 'image', 'task' or 'gmm', got {kind!r}")
    data = raw.pop("data", None)
    if isinstance(data, str):
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(d, str) for d in data):
        raise ConfigError(f"{where} ({name}): 'data' must be a list of inputs, got {data!r}")
    data = _resolve_data(path, data)
    _check_inputs(where, name, data)
    slices = raw.pop("slices", None)
    prior = raw.pop("prior", None)
    if prior is not None and not isinstance(prior, str):
        raise ConfigError(f"{where} ({name}): 'prior' must be a shipped prior's name or a file, got {prior!r}")
    if prior is not None and (path.parent / prior).is_file():
        prior = str((path.parent / prior).resolve())
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise ConfigError(f"{where} ({name}): unknown keys {sorted(unknown)}; a problem takes name, data, slices, "
                          f"prior, kind, validation, calibration and {sorted(_SPEC_KEYS)}")
    try:
        ProblemSpec(**raw)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} ({name}): {err}") from None
    return ProblemConfig(name, kind, tuple(data), raw,
                         None if slices is None else _ints(path, f"problem[{i}].slices", slices, 0), prior, validation,
                         calibration)


def _sampler(path: Path, i: int, raw: dict, particles: int) -> SamplerConfig:
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
    grid = raw.pop("grid", None)
    nfe = raw.pop("nfe", None)
    prior = raw.pop("prior", None)
    extend = raw.pop("extend", 2)
    any_pixel = raw.pop("any_pixel_size", False)
    if raw:
        raise ConfigError(f"{where} ({label}): unknown keys {sorted(raw)}; a sampler takes name, label, particles, "
                          "settings, grid, extend, nfe, prior, any_pixel_size and only")
    if not isinstance(any_pixel, bool):
        raise ConfigError(f"{where} ({label}): any_pixel_size must be true or false, got {any_pixel!r}")
    if not isinstance(extend, int) or extend < 0:
        raise ConfigError(f"{where} ({label}): extend must be an integer >= 0, got {extend!r}")
    if not isinstance(settings, dict):
        raise ConfigError(f"{where} ({label}): settings must be a table, got {settings!r}")
    if grid is not None and (not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values())):
        raise ConfigError(f"{where} ({label}): grid must be a table of non-empty lists ({{}}: no tuning), got {grid!r}")
    if grid and extend and len(grid) == 1 and any(isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0
                                                  for v in next(iter(grid.values()))):
        raise ConfigError(f"{where} ({label}): grid {grid} holds a value <= 0, which a geometric extension cannot "
                          f"go past; set extend = 0 for it")
    if prior is not None and (path.parent / prior).is_file():
        prior = str((path.parent / prior).resolve())
    try:
        check_settings(name, settings)
        for key, values in (grid or {}).items():
            for value in values:
                check_settings(name, {**settings, key: value})
    except ValueError as err:
        raise ConfigError(f"{where} ({label}): {err}") from None
    return SamplerConfig(name, label, n, settings, None if only is None else tuple(only), grid,
                         None if nfe is None else _ints(path, f"sampler[{i}].nfe", nfe, 1), prior, extend, any_pixel)


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
    tune = head.get("tune", False)
    if not isinstance(tune, bool):
        raise ConfigError(f"{path}: benchmark.tune must be true or false, got {tune!r}")
    if tune:
        untunable = [p.name for p in problems if not p.tunable]
        if untunable:
            raise ConfigError(f"{path}: tune = true needs validation data for every problem; {untunable} have none "
                              "(add validation = {...}, or use kind = \"task\")")
    nfe = _ints(path, "benchmark.nfe", head.get("nfe", [100]), 1)
    carried = _settings_from_budget(path, head.get("settings_from_budget", {}), tune,
                                    set(nfe) | {n for s in samplers for n in (s.nfe or ())})
    return BenchmarkConfig(name=head.get("name", path.stem), path=path,
                           seeds=_ints(path, "benchmark.seeds", head.get("seeds", [0]), 0), nfe=nfe,
                           problems=problems, samplers=samplers,
                           gpus_per_task=float(head.get("gpus_per_task", 0.0)), tune=tune,
                           settings_from_budget=carried)


def _settings_from_budget(path: Path, raw: Any, tune: bool, budgets: set[int]) -> dict[int, int]:
    """``benchmark.settings_from_budget``: ``{budget: budget whose choice it takes}``, both of the config's
    budgets, the source searched itself (no chains); only with ``tune = true``."""
    key = "benchmark.settings_from_budget"
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {key} must be a table {{budget = budget}}, got {raw!r}")
    if raw and not tune:
        raise ConfigError(f"{path}: {key} carries settings chosen on validation; it needs tune = true")
    out = {}
    for target, source in raw.items():
        if not (str(target).isdigit() and isinstance(source, int) and not isinstance(source, bool)):
            raise ConfigError(f"{path}: {key}: {target} = {source!r} must map a budget to a budget (integers)")
        out[int(target)] = source
    unknown = sorted({n for pair in out.items() for n in pair} - budgets)
    if unknown:
        raise ConfigError(f"{path}: {key} names budgets {unknown} the configuration does not run "
                          f"(it has {sorted(budgets)})")
    chained = sorted(n for n, source in out.items() if source in out or source == n)
    if chained:
        raise ConfigError(f"{path}: {key}: budgets {chained} take settings from a budget that is not searched "
                          "itself; name the searched budget")
    return out
