"""A dense matrix as a deepinv ``DecomposablePhysics``: the operator of exact-posterior problems."""

from __future__ import annotations

import math

import deepinv as dinv
import torch
from torch import Tensor


class MatrixOperator(dinv.physics.DecomposablePhysics):
    """``y = A x`` for a dense ``A`` ``(m, d)``, acting on ``x`` of shape ``(B, *in_shape)``.

    Stored through its full SVD ``A = U diag(s) V^T`` so that proximal maps and the pseudo-inverse
    are closed form. ``y`` has shape ``(B, m)``.
    """

    def __init__(self, matrix: Tensor, in_shape: tuple[int, ...] | None = None):
        matrix = torch.as_tensor(matrix)
        if matrix.dim() != 2 or not matrix.is_floating_point():
            raise ValueError(f"matrix must be a real (m, d) tensor, got shape {tuple(matrix.shape)}, {matrix.dtype}")
        m, d = matrix.shape
        in_shape = (d,) if in_shape is None else tuple(int(s) for s in in_shape)
        if math.prod(in_shape) != d:
            raise ValueError(f"in_shape {in_shape} does not hold the matrix's {d} columns")
        u, s, vh = torch.linalg.svd(matrix, full_matrices=True)
        r = s.numel()
        super().__init__(mask=torch.cat([s, s.new_zeros(d - r)]))
        self.in_shape = in_shape
        self.register_buffer("matrix", matrix.clone())
        self.register_buffer("u_r", u[:, :r].contiguous())
        self.register_buffer("v_full", vh.T.contiguous())

    @classmethod
    def random(cls, m: int, d: int, generator: torch.Generator, low: float = 0.0, high: float = 1.0,
               dtype: torch.dtype = torch.float64) -> MatrixOperator:
        """``U diag(s) V^T`` with Haar-random orthogonal ``U``, ``V`` and singular values uniform in
        ``(low, high)`` — the random operators of the MCGdiff Gaussian-mixture benchmark."""
        def haar(n):
            q, r = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=generator))
            return q * torch.sign(torch.diagonal(r)).unsqueeze(0)

        r = min(m, d)
        s = low + (high - low) * torch.rand(r, dtype=torch.float64, generator=generator)
        a = haar(m)[:, :r] @ torch.diag(s) @ haar(d)[:, :r].T
        return cls(a.to(dtype))

    def V_adjoint(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self.v_full

    def V(self, c: Tensor) -> Tensor:
        return (c @ self.v_full.T).reshape(c.shape[0], *self.in_shape)

    def U(self, c: Tensor) -> Tensor:
        return c[:, : self.u_r.shape[1]] @ self.u_r.T

    def U_adjoint(self, y: Tensor) -> Tensor:
        c = y @ self.u_r
        pad = self.v_full.shape[0] - c.shape[1]
        return torch.nn.functional.pad(c, (0, pad)) if pad > 0 else c

    def expand_batch(self, n: int) -> MatrixOperator:
        """The operator for ``n`` particles per sample: itself, as its matrix is shared by every sample
        (its buffers' leading dimensions are the matrix's, not a batch)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        return self
