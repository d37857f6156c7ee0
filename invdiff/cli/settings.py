"""``KEY=VALUE`` sampler settings from the command line."""

from __future__ import annotations

from typing import Any

__all__ = ["parse_overrides"]


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lam=512", "lr=0.1"]`` -> ``{"lam": 512, "lr": 0.1}`` (ints, floats, true/false, else strings;
    dashes in keys become underscores)."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"sampler setting {item!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = _value(text.strip())
    return out
