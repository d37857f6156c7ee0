"""Per-sample linear algebra: inner products, batched conjugate gradients, dense operator matrices.

Every reduction here is over the non-batch dimensions only: nothing is reduced across the batch,
so item ``i``'s result never depends on the other items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def batch_view(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample ``(B,)`` tensor to ``(B, 1, ..., 1)`` so it broadcasts against ``like``."""
    return v.reshape(v.shape[0], *([1] * (like.dim() - 1)))


def batch_dot(a: Tensor, b: Tensor) -> Tensor:
    """Real inner product per sample, ``(B,)``; complex tensors use Re<a, b>."""
    prod = a.conj() * b if a.is_complex() else a * b
    return prod.real.flatten(1).sum(1) if prod.is_complex() else prod.flatten(1).sum(1)


def batch_norm(a: Tensor) -> Tensor:
    """Euclidean norm per sample, ``(B,)``."""
    return batch_dot(a, a).clamp_min(0).sqrt()


@dataclass(frozen=True)
class CGInfo:
    """What a conjugate-gradient solve did, per sample."""

    iterations: int
    relative_residual: Tensor  # (B,)
    converged: Tensor  # (B,) bool


def operator_norm_sq(apply: Callable[[Tensor], Tensor], x0: Tensor, iterations: int) -> Tensor:
    """Largest eigenvalue ``(B,)`` of the positive semi-definite ``apply`` (e.g. ``A^T A``), per sample,
    by ``iterations`` power iterations from ``x0``; an underestimate that converges from below."""
    v = x0 / batch_view(batch_dot(x0, x0).sqrt().clamp_min(1e-30), x0)
    lam = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
    for _ in range(iterations):
        w = apply(v)
        lam = batch_dot(v, w)
        v = w / batch_view(batch_dot(w, w).sqrt().clamp_min(1e-30), w)
    return lam


def cg_step(apply: Callable[[Tensor], Tensor], x: Tensor, r: Tensor, p: Tensor, rs: Tensor,
            active: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One conjugate-gradient iteration per sample: iterate ``x``, residual ``r``, direction ``p`` and
    squared residual norm ``rs`` ``(B,)``. Items where ``active`` is false, or whose curvature
    ``p^T apply(p)`` is not positive, stay where they are; returns the new state and that mask ``ok``."""
    ap = apply(p)
    pap = batch_dot(p, ap)
    ok = active & (pap > 0)
    alpha = torch.where(ok, rs / torch.where(ok, pap, torch.ones_like(pap)), torch.zeros_like(rs))
    x = x + batch_view(alpha, x).to(x.dtype) * p
    r = r - batch_view(alpha, r).to(r.dtype) * ap
    rs_new = batch_dot(r, r)
    beta = torch.where(ok, rs_new / torch.where(rs > 0, rs, torch.ones_like(rs)), torch.zeros_like(rs))
    p = r + batch_view(beta, p).to(p.dtype) * p
    return x, r, p, torch.where(ok, rs_new, rs), ok


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> tuple[Tensor, CGInfo]:
    """Solve ``apply(x) = b`` for a symmetric positive (semi-)definite ``apply``, per sample.

    Each item stops updating once ``||b - apply(x)|| <= tol * ||b||``; an item with ``b = 0`` returns
    ``x0`` (zeros by default). Started from zero on a semi-definite system, CG stays in the range of
    the operator, so for normal equations it returns the minimum-norm least-squares solution.
    ``tol`` is floored at 10 machine epsilons of ``b``'s precision: below that the residual is round-off,
    and iterating on divides by it (float32 single-coil MRI reached 3e8 from data of magnitude 1).
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = batch_dot(r, r)
    b_norm = batch_norm(b)
    threshold = (max(tol, 10 * torch.finfo(b.dtype).eps) * b_norm) ** 2
    active = rs > threshold
    it = 0
    while it < max_iter and bool(active.any()):
        x, r, p, rs, ok = cg_step(apply, x, r, p, rs, active)
        active = ok & (rs > threshold)
        it += 1
    rel = rs.sqrt() / torch.where(b_norm > 0, b_norm, torch.ones_like(b_norm))
    return x, CGInfo(iterations=it, relative_residual=rel, converged=~active)


def operator_matrix(apply: Callable[[Tensor], Tensor], in_shape: tuple[int, ...], *,
                    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Tensor:
    """Dense matrix ``(m, d)`` of a linear map acting on tensors of event shape ``in_shape``.

    Applies the map to the ``d = prod(in_shape)`` standard basis vectors as one batch; meant for
    the small problems on which exact posteriors are computed.
    """
    d = 1
    for s in in_shape:
        d *= s
    basis = torch.eye(d, dtype=dtype, device=device).reshape(d, *in_shape)
    out = apply(basis)
    return out.reshape(d, -1).T.contiguous()
