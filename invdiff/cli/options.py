"""Checks of command-line values, run before any work: argparse types (a bad value exits 2 with
"argument --NAME: ...") and the checks of the output folder, the device and the memory budget."""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

__all__ = ["check_device", "check_output_folder", "finite_float", "nonnegative_int",
           "positive_float", "positive_int"]


def _int(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int(text, 1)


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    return _int(text, 0)


def finite_float(text: str) -> float:
    """A finite number (``nan`` and ``inf`` refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def check_output_folder(out: str, option: str = "--out") -> Path:
    """``out`` as a folder that exists (created) and can be written; ``ValueError`` naming it otherwise."""
    if not out or not out.strip():
        raise ValueError(f"{option} is empty; name an output folder")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {out}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".invdiff-write-check-"):
            pass
    except OSError as err:
        raise ValueError(f"{option} {out}: cannot write there ({err.strerror or err})") from None
    return path


def check_device(text: str) -> str:
    """``text`` as a torch device this machine has (``cpu``, ``cuda``, ``cuda:K``, ``mps``);
    ``ValueError`` naming the option otherwise."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {text!r}: not a device name (cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {text}: this machine has no usable CUDA GPU (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {text}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {text}: invdiff runs on cpu, cuda or mps")
    return text
