"""The plain-dict round trip every family's network config shares (checkpoints and ``--config`` JSON)."""

from __future__ import annotations

from dataclasses import asdict

__all__ = ["PlainConfig"]


class PlainConfig:
    """Mixin for a frozen dataclass of numbers, strings and tuples: ``to_dict`` (tuples as lists) and
    ``from_dict``, which names unknown fields. ``family`` names the config in errors."""

    family = "network"

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{cls.family} config: unknown fields {unknown} (known: {sorted(known)})")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
