"""Tuned sampler defaults per problem family, as data (``defaults.toml`` beside this module).

A sampler's settings for a run are, from lowest to highest precedence: the registry entry's fixed
arguments (:mod:`invdiff.samplers.registry`: DPS's ``eta``, a baseline's ``kind``), the tuned settings
of the problem's family here, and the run's own overrides (``--set``, a benchmark config's
``settings``). Every tuned entry names its grid, the validation task and budget it was chosen at, and
the run that chose it (:func:`default_entry`).

A setting chosen at one network-evaluation budget need not hold at another (a step size tuned at 100
evaluations can diverge at 30), so an entry may carry settings chosen at other budgets, each a
``[[SAMPLER.FAMILY.budget]]`` table with its own ``nfe``, ``settings`` (those that differ) and provenance.
A run of ``n`` evaluations takes the entry whose budget is nearest to ``n`` by ratio
(:meth:`DefaultEntry.at`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from invdiff.problems.base import FAMILIES
from invdiff.samplers.base import Sampler
from invdiff.samplers.registry import SAMPLERS, make_sampler

__all__ = ["DEFAULTS_FILE", "DefaultEntry", "configured_sampler", "default_entry", "load_defaults", "sampler_settings"]

DEFAULTS_FILE = Path(__file__).resolve().parent / "defaults.toml"
_FIELDS = {"settings", "grid", "validation", "nfe", "chosen_by", "budget"}
_BUDGET_FIELDS = {"settings", "grid", "validation", "nfe", "chosen_by"}


@dataclass(frozen=True)
class DefaultEntry:
    """The tuned settings of one sampler for one family, and how they were chosen (``defaults.toml``);
    ``budgets`` holds the entries chosen at other network-evaluation budgets, each already merged with
    this one (its settings on top of these, this grid where it names none)."""

    sampler: str
    family: str
    settings: dict[str, Any]
    grid: dict[str, list] = field(default_factory=dict)
    validation: str = ""
    nfe: int | None = None
    chosen_by: str = ""
    budgets: tuple[DefaultEntry, ...] = ()

    def at(self, nfe: int | None) -> DefaultEntry:
        """The entry that serves a run of ``nfe`` network evaluations: of this entry (when it records its
        budget) and its per-budget entries, the one whose budget is nearest to ``nfe`` by ratio, a tie going
        to the larger budget. Without per-budget entries, or for ``nfe`` ``None`` or 0 (a classical
        baseline), this entry."""
        if not self.budgets or not nfe or nfe < 1:
            return self
        candidates = ([self] if self.nfe else []) + list(self.budgets)
        return min(candidates, key=lambda e: (abs(math.log(e.nfe / nfe)), -e.nfe))


def _budget_entries(where: str, base: DefaultEntry, raw: Any) -> tuple[DefaultEntry, ...]:
    if not isinstance(raw, list):
        raise ValueError(f"{where}: 'budget' must be an array of tables ([[...budget]]), got {raw!r}")
    out, seen = [], {base.nfe} - {None}
    for k, item in enumerate(raw):
        at = f"{where}.budget[{k}]"
        if not isinstance(item, dict) or not {"settings", "nfe"} <= set(item) or set(item) - _BUDGET_FIELDS:
            raise ValueError(f"{at}: needs 'nfe' and 'settings' and may have "
                             f"{sorted(_BUDGET_FIELDS - {'nfe', 'settings'})}")
        nfe = item["nfe"]
        if not isinstance(item["settings"], dict):
            raise ValueError(f"{at}: settings must be a table, got {item['settings']!r}")
        if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
            raise ValueError(f"{at}: nfe must be an integer >= 1, got {nfe!r}")
        if nfe in seen:
            raise ValueError(f"{at}: a setting at {nfe} network evaluations is already given")
        seen.add(nfe)
        out.append(replace(base, settings={**base.settings, **item["settings"]},
                           grid=dict(item.get("grid", base.grid)), validation=item.get("validation", ""),
                           nfe=nfe, chosen_by=item.get("chosen_by", "")))
    return tuple(sorted(out, key=lambda e: e.nfe))


@lru_cache(maxsize=4)
def load_defaults(path: Path = DEFAULTS_FILE) -> dict[tuple[str, str], DefaultEntry]:
    """``(sampler, family) -> DefaultEntry`` of a defaults file; every error names the file and the entry."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{path}: cannot read the sampler defaults: {err}") from None
    out = {}
    for name, families in raw.items():
        if name not in SAMPLERS:
            raise ValueError(f"{path}: [{name}] is not a registered sampler ({sorted(SAMPLERS)})")
        for family, entry in families.items():
            where = f"{path}: [{name}.{family}]"
            if family not in FAMILIES:
                raise ValueError(f"{where}: unknown family (choose from {FAMILIES})")
            if not isinstance(entry, dict) or "settings" not in entry or set(entry) - _FIELDS:
                raise ValueError(f"{where}: needs 'settings' and may have {sorted(_FIELDS - {'settings'})}")
            base = DefaultEntry(name, family, dict(entry["settings"]), dict(entry.get("grid", {})),
                                entry.get("validation", ""), entry.get("nfe"), entry.get("chosen_by", ""))
            if "budget" in entry:
                base = replace(base, budgets=_budget_entries(where, base, entry["budget"]))
            out[(name, family)] = base
    return out


def default_entry(name: str, family: str, nfe: int | None = None) -> DefaultEntry | None:
    """The tuned entry of ``name`` for ``family`` that serves a run of ``nfe`` network evaluations
    (:meth:`DefaultEntry.at`; ``None``: the family's entry itself), or ``None`` when the sampler has no tuned
    setting there."""
    _check(name, family)
    entry = load_defaults().get((name, family))
    return None if entry is None else entry.at(nfe)


def _check(name: str, family: str) -> None:
    if name not in SAMPLERS:
        raise KeyError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
    if family not in FAMILIES:
        raise KeyError(f"unknown problem family {family!r}; choose from {FAMILIES}")


def sampler_settings(name: str, family: str, overrides: dict[str, Any] | None = None,
                     nfe: int | None = None) -> dict[str, Any]:
    """The settings of ``name`` on a problem of ``family`` at ``nfe`` network evaluations: fixed arguments,
    tuned defaults (those chosen at the nearest budget), ``overrides`` (module docstring). Names the sampler
    does not take are the sampler's to refuse."""
    entry = default_entry(name, family, nfe)
    return {**SAMPLERS[name].fixed, **(entry.settings if entry else {}), **(overrides or {})}


def configured_sampler(name: str, nfe: int, family: str, overrides: dict[str, Any] | None = None) -> Sampler:
    """Sampler ``name`` with ``nfe`` network evaluations and the settings of :func:`sampler_settings`."""
    entry = default_entry(name, family, nfe)
    return make_sampler(name, nfe, {**(entry.settings if entry else {}), **(overrides or {})})
