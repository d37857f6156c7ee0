"""Optional operator capabilities, declared as protocols.

Every invdiff operator is a deepinv ``LinearPhysics`` (``A``, ``A_adjoint``); some offer more. Code
that needs a capability checks for its protocol (``isinstance(op, WithMask)``) instead of probing
attribute names, so a third-party operator gains the capability by implementing the method.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["BatchExpandable", "CandidateSelection", "DtypeConvertible", "RowBlockGram", "WithMask", "WithSupport"]


@runtime_checkable
class WithMask(Protocol):
    """A selection operator whose mask can be replaced: ``with_mask(mask)`` returns a new operator."""

    def with_mask(self, mask: Tensor) -> WithMask: ...


@runtime_checkable
class BatchExpandable(Protocol):
    """An operator with per-sample parameters: ``expand_batch(n)`` repeats them for ``n`` particles per
    sample, item-major."""

    def expand_batch(self, n: int) -> BatchExpandable: ...


@runtime_checkable
class WithSupport(Protocol):
    """An operator that sees only part of the image: ``support()`` is 1 where it does (coil-map support)."""

    def support(self) -> Tensor: ...


@runtime_checkable
class CandidateSelection(Protocol):
    """A selection operator whose measurements split into acquirable candidates:
    ``candidate_grid()`` is ``("columns", (H, W))`` (k-space columns along ``W``) or
    ``("pixels", (H, W))`` (image pixels, all channels)."""

    def candidate_grid(self) -> tuple[Literal["columns", "pixels"], tuple[int, int]]: ...


@runtime_checkable
class RowBlockGram(Protocol):
    """An operator whose ``A^T A`` is block diagonal over image rows: ``row_gram_blocks(rows)`` returns the
    blocks of the image rows ``rows`` (a slice; ``None``: all) (Cartesian multi-coil MRI with a column mask),
    for exact normal-equation solvers; ``row_gram_shape()`` their count and size ``(Bm, h, w)`` (all the
    blocks are ``(Bm, h, w, w)``), known before they are built."""

    def row_gram_blocks(self, rows: slice | None = None) -> Tensor: ...

    def row_gram_shape(self) -> tuple[int, int, int]: ...


@runtime_checkable
class DtypeConvertible(Protocol):
    """An operator that can be rebuilt in another floating dtype (``with_dtype(torch.float64)``)."""

    def with_dtype(self, dtype: torch.dtype) -> DtypeConvertible: ...
