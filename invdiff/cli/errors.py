"""The errors a user's input can cause, and the one line each is reported as (:func:`invdiff.cli.main`)."""

from __future__ import annotations

__all__ = ["USER_ERRORS", "error_line"]

#: the errors a user's input can cause: reported in one line, never as a traceback
USER_ERRORS = (ValueError, KeyError, OSError, NotImplementedError, MemoryError)


def error_line(err: BaseException) -> str:
    """The one line a user sees for ``err`` (a ``KeyError``'s message without its quotes)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    if isinstance(err, OSError) and err.filename:  # "PATH: Permission denied", not "[Errno 13] ..."
        text = f"{err.filename}: {err.strerror or text}"
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
