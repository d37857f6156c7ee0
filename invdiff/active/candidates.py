"""Candidate measurements of a selection operator: k-space columns (MRI) or pixels (inpainting).

A :class:`Candidates` splits the *fully sampled* measurement of an operator into ``K`` candidates of
``D`` real numbers each, and turns a set of acquired candidates ``(B, K)`` back into the operator's
mask. Any operator with ``candidate_grid()`` (:class:`~invdiff.operators.protocols.CandidateSelection`)
has candidates: invdiff's :class:`~invdiff.operators.MultiCoilMRI`, :class:`~invdiff.operators.SingleCoilMRI`
(Cartesian: a candidate is a phase-encode column, all coils) and :class:`~invdiff.operators.Inpainting`
(a candidate is a pixel, all channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from invdiff.measurement import Measurement

__all__ = ["Candidates", "candidates_for"]


@dataclass(frozen=True)
class Candidates:
    """``kind`` ``"columns"`` (k-space ``(..., H, W)``, candidates along ``W``) or ``"pixels"`` (images
    ``(B, C, H, W)``, candidates the ``H * W`` pixels); ``grid`` is ``(H, W)``."""

    kind: str
    grid: tuple[int, int]

    @property
    def count(self) -> int:
        return self.grid[1] if self.kind == "columns" else self.grid[0] * self.grid[1]

    def split(self, y: Tensor, batch: int) -> Tensor:
        """A full measurement ``(batch * N, ...)`` -> ``(batch, N, K, D)``."""
        n = y.shape[0] // batch
        if self.kind == "columns":
            moved = y.movedim(-1, 1)  # (BN, W, ...)
        else:
            moved = y.flatten(2).movedim(-1, 1)  # (BN, H*W, C)
        return moved.reshape(batch, n, self.count, -1)

    def mask(self, acquired: Tensor) -> Tensor:
        """``(B, K)`` bool -> the operator's per-sample mask: ``(B, 1, W)`` columns or ``(B, 1, H, W)`` pixels."""
        m = acquired.to(torch.float32)
        return m.unsqueeze(1) if self.kind == "columns" else m.reshape(-1, 1, *self.grid)

    def near(self, acquired: Tensor, spacing: int) -> Tensor:
        """``(B, K)`` bool: the candidates closer than ``spacing`` to an acquired one (columns: ``|i - j| <
        spacing``; pixels: the Chebyshev distance on the grid), the acquired ones included.
        ``spacing=1`` gives ``acquired`` itself."""
        if spacing < 1:
            raise ValueError(f"spacing must be >= 1, got {spacing}")
        m = acquired.to(torch.float32)
        if self.kind == "columns":
            m = torch.nn.functional.max_pool1d(m.unsqueeze(1), 2 * spacing - 1, stride=1, padding=spacing - 1)
        else:
            m = torch.nn.functional.max_pool2d(m.reshape(-1, 1, *self.grid), 2 * spacing - 1, stride=1,
                                               padding=spacing - 1)
        return m.reshape(acquired.shape) > 0

    def select(self, y_full: Tensor, acquired: Tensor) -> Tensor:
        """The acquired part of a full measurement ``(B, ...)``, zero elsewhere (the operator's layout)."""
        m = acquired.to(y_full.dtype)
        if self.kind == "columns":
            m = m.reshape(m.shape[0], *([1] * (y_full.dim() - 2)), -1)
        else:
            m = m.reshape(-1, 1, *self.grid)
        return y_full * m


def candidates_for(measurement: Measurement) -> Candidates:
    """The candidates of a measurement whose operator selects them (:meth:`Measurement.candidate_grid`:
    invdiff's MRI and inpainting operators); :class:`~invdiff.measurement.CapabilityError` otherwise."""
    kind, grid = measurement.candidate_grid()
    return Candidates(kind, grid)
