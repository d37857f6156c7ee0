"""Tuned sampler defaults per problem family, as data (``defaults.toml`` beside this module).

A sampler's settings for a run are, from lowest to highest precedence: the registry entry's fixed
arguments (:mod:`invdiff.samplers.registry`: DPS's ``eta``, a baseline's ``kind``), the tuned settings
of the problem's family here, and the run's own overrides (``--set``, a benchmark config's
``settings``). Every tuned entry names its grid, the validation task and budget it was chosen at, and
the run that chose it (:func:`default_entry`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
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
_FIELDS = {"settings", "grid", "validation", "nfe", "chosen_by"}


@dataclass(frozen=True)
class DefaultEntry:
    """The tuned settings of one sampler for one family, and how they were chosen (``defaults.toml``)."""

    sampler: str
    family: str
    settings: dict[str, Any]
    grid: dict[str, list] = field(default_factory=dict)
    validation: str = ""
    nfe: int | None = None
    chosen_by: str = ""


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
            out[(name, family)] = DefaultEntry(name, family, dict(entry["settings"]), dict(entry.get("grid", {})),
                                               entry.get("validation", ""), entry.get("nfe"), entry.get("chosen_by", ""))
    return out


def default_entry(name: str, family: str) -> DefaultEntry | None:
    """The tuned entry of ``name`` for ``family``, or ``None`` when the sampler has no tuned setting there."""
    _check(name, family)
    return load_defaults().get((name, family))


def _check(name: str, family: str) -> None:
    if name not in SAMPLERS:
        raise KeyError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
    if family not in FAMILIES:
        raise KeyError(f"unknown problem family {family!r}; choose from {FAMILIES}")


def sampler_settings(name: str, family: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings of ``name`` on a problem of ``family``: fixed arguments, tuned defaults, ``overrides``
    (module docstring). Names the sampler does not take are the sampler's to refuse."""
    _check(name, family)
    entry = load_defaults().get((name, family))
    return {**SAMPLERS[name].fixed, **(entry.settings if entry else {}), **(overrides or {})}


def configured_sampler(name: str, nfe: int, family: str, overrides: dict[str, Any] | None = None) -> Sampler:
    """Sampler ``name`` with ``nfe`` network evaluations and the settings of :func:`sampler_settings`."""
    _check(name, family)
    entry = load_defaults().get((name, family))
    return make_sampler(name, nfe, {**(entry.settings if entry else {}), **(overrides or {})})
