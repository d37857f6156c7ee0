"""One error type for bad input files, so callers can catch every data problem at once."""

from __future__ import annotations

__all__ = ["DataFormatError"]


class DataFormatError(ValueError):
    """An input file is unreadable, lacks a key, or holds data of the wrong shape or value.

    The message always starts with the file's path and names the key or field that is wrong.
    """
