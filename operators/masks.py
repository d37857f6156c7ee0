"""fastMRI Cartesian mask functions, reproduced from the published definitions.

A mask selects phase-encode columns (the last image dimension). Each function keeps a fully sampled
centre of ``n_low = round(W * center_fraction)`` columns starting at ``(W - n_low + 1) // 2`` and adds
outer columns:

* ``random``: each column with probability ``(W / R - n_low) / (W - n_low)``;
* ``equispaced``: every ``R``-th column from an offset drawn in ``[0, R)``;
* ``equispaced_fraction``: spacing ``R' = R (n_low - W) / (n_low R - W)`` from an offset in
  ``[0, round(R'))``, so that the total is ``W / R`` columns (fastMRI's multi-coil public data).

Random draws follow fastMRI exactly, with ``numpy.random.RandomState(seed)``: first the
(centre fraction, acceleration) pair, then the outer columns (or the given ``offset`` of an
equispaced mask). The seed is required (``None`` is refused) — a fresh ``RandomState`` per call, never
a shared stream — and :func:`file_seed` gives fastMRI's per-file convention
``tuple(map(ord, filename))``, so masks are bit-identical to fastMRI's for a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

MaskType = Literal["random", "equispaced", "equispaced_fraction"]
Seed = int | Sequence[int]


def file_seed(filename: str) -> tuple[int, ...]:
    """fastMRI's per-file seed: the code points of the file name (e.g. ``"file1000001.h5"``)."""
    return tuple(map(ord, filename))


def center_columns(num_cols: int, num_low: int) -> Tensor:
    """Boolean ``(W,)`` with ``num_low`` contiguous columns from ``(W - num_low + 1) // 2``."""
    mask = torch.zeros(num_cols, dtype=torch.bool)
    pad = (num_cols - num_low + 1) // 2
    mask[pad : pad + num_low] = True
    return mask


@dataclass(frozen=True)
class CartesianMask:
    """A sampled column mask and the parameters that produced it."""

    columns: Tensor  # (W,) float32 of 0/1
    num_low_frequencies: int
    center_fraction: float
    acceleration: float


@dataclass(frozen=True)
class MaskFunc:
    """A fastMRI mask function.

    Args:
        mask_type: ``"random"``, ``"equispaced"`` or ``"equispaced_fraction"``.
        center_fractions: fraction of columns kept in the centre, paired with ``accelerations``.
        accelerations: undersampling factors ``R``.
        allow_any_combination: draw the centre fraction and the acceleration independently instead
            of as pairs (fastMRI's option of the same name).
    """

    mask_type: MaskType
    center_fractions: tuple[float, ...]
    accelerations: tuple[float, ...]
    allow_any_combination: bool = False

    def __post_init__(self):
        if self.mask_type not in ("random", "equispaced", "equispaced_fraction"):
            raise ValueError(f"mask_type must be random, equispaced or equispaced_fraction, got {self.mask_type!r}")
        object.__setattr__(self, "center_fractions", tuple(float(c) for c in self.center_fractions))
        object.__setattr__(self, "accelerations", tuple(self.accelerations))
        if not self.center_fractions or (len(self.center_fractions) != len(self.accelerations)
                                         and not self.allow_any_combination):
            raise ValueError(f"need as many center_fractions as accelerations, got {self.center_fractions} "
                             f"and {self.accelerations}")
        if any(not 0 < c < 1 for c in self.center_fractions) or any(a <= 1 for a in self.accelerations):
            raise ValueError("center fractions must lie in (0, 1) and accelerations exceed 1")
        if self.mask_type == "equispaced" and any(int(a) != a for a in self.accelerations):
            raise ValueError(f"equispaced masks need integer accelerations, got {self.accelerations}")

    def __call__(self, num_cols: int, seed: Seed, offset: int | None = None) -> CartesianMask:
        """The mask for ``num_cols`` phase-encode columns under ``seed`` (int or tuple of ints;
        :func:`file_seed` for fastMRI's per-file masks). ``offset`` (equispaced masks) fixes the first
        outer column instead of drawing it, as fastMRI's ``offset`` argument does; the draw of the
        (centre fraction, acceleration) pair still happens, so the stream stays aligned.

        ``seed=None`` is refused: fastMRI would draw from its object's stream, seeded from the operating
        system, and two calls would give two masks; here every mask names its seed.
        """
        if num_cols < 2:
            raise ValueError(f"num_cols must be >= 2, got {num_cols}")
        if seed is None:
            raise ValueError("MaskFunc needs a seed (an int, or fastMRI's per-file file_seed(name)); "
                             "None would draw a different mask on every call")
        if offset is not None and self.mask_type == "random":
            raise ValueError("offset applies to the equispaced masks, not to 'random'")
        rng = np.random.RandomState(seed)
        if self.allow_any_combination:
            cf, acc = rng.choice(self.center_fractions), rng.choice(self.accelerations)
        else:
            k = rng.randint(0, len(self.accelerations))
            cf, acc = self.center_fractions[k], self.accelerations[k]
        num_low = int(round(num_cols * cf))
        outer = np.zeros(num_cols, dtype=bool)
        if self.mask_type == "random":
            prob = (num_cols / acc - num_low) / (num_cols - num_low)
            outer = rng.uniform(size=num_cols) < prob
        elif self.mask_type == "equispaced":
            offset = _offset(rng, round(acc), offset)
            outer[offset :: int(acc)] = True
        else:
            adjusted = (acc * (num_low - num_cols)) / (num_low * acc - num_cols)
            offset = _offset(rng, round(adjusted), offset)
            outer[np.around(np.arange(offset, num_cols - 1, adjusted)).astype(np.uint64)] = True
        columns = center_columns(num_cols, num_low) | torch.from_numpy(outer)
        return CartesianMask(columns.to(torch.float32), num_low, float(cf), float(acc))


def _offset(rng: np.random.RandomState, high: int, offset: int | None) -> int:
    """fastMRI's offset: drawn in ``[0, high)`` unless given (then checked to lie there)."""
    if offset is None:
        return int(rng.randint(0, high=high))
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or not 0 <= offset < high:
        raise ValueError(f"offset must be an integer in [0, {high}) for this mask, got {offset!r}")
    return int(offset)
