"""``Measurement``: the only door between samplers and data.

A measurement is an operator ``A`` (any deepinv :class:`~deepinv.physics.Physics`), an observation
``y = A(x) + n`` and the standard deviation ``sigma`` of the white Gaussian noise ``n`` on each real
entry of ``y`` (for complex data stored as 2 real channels, on each channel). It is frozen: every
method is a pure function of ``x`` and the stored ``(physics, y, sigma)``.

Linear operators get closed forms (gradient, pseudo-inverse, proximal map, hard consistency);
operators that expose an SVD (:class:`~deepinv.physics.DecomposablePhysics`) get them without
iterations; a measurement with an exact normal-equation solver attached (:meth:`Measurement.with_normal_solver`:
Cartesian multi-coil MRI, sparse-view CT) gets them from a one-off float64 eigendecomposition; other
linear operators use per-sample conjugate gradients; non-linear operators get the likelihood and its
gradient by autograd. Capabilities an operator lacks raise
:class:`CapabilityError` with the operator's name.

Samplers, policies and metrics use only the methods here (``forward``, ``adjoint``, ``normal``,
``operator_norm_sq``, the likelihood, the proximal solvers); ``physics`` is for the code that builds
problems and for handing the operator to deepinv.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import deepinv as dinv
import torch
from torch import Tensor

from invdiff.linalg import batch_view, conjugate_gradient, operator_norm_sq
from invdiff.normal_solvers import GRAM_MAX_MEASUREMENTS, NormalSolver, normal_solver
from invdiff.operators.protocols import BatchExpandable, CandidateSelection, WithMask

__all__ = ["SVD", "CapabilityError", "Measurement"]


class CapabilityError(NotImplementedError):
    """The operator behind a measurement does not offer the requested capability."""


def _as_sigma(sigma: float | Tensor, batch: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    s = torch.as_tensor(sigma, dtype=dtype, device=device)
    if s.dim() == 0:
        s = s.expand(batch).clone()
    elif s.dim() != 1 or s.shape[0] != batch:
        raise ValueError(
            f"sigma must be a scalar or a tensor of shape ({batch},) (one per sample), "
            f"got shape {tuple(s.shape)}"
        )
    if not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
        raise ValueError(f"sigma must be finite and > 0 for every sample, got {s.tolist()}")
    return s


@dataclass(frozen=True)
class SVD:
    """``A = U diag(s) V^T`` of a decomposable operator: ``U``, ``U_adjoint``, ``V``, ``V_adjoint`` as
    callables and the singular values ``s`` (broadcastable to the spectral domain)."""

    U: Callable[[Tensor], Tensor]
    U_adjoint: Callable[[Tensor], Tensor]
    V: Callable[[Tensor], Tensor]
    V_adjoint: Callable[[Tensor], Tensor]
    s: Tensor


class Measurement:
    """A frozen Gaussian measurement ``y = A(x) + sigma * n``, ``n ~ N(0, I)``, per sample.

    Args:
        physics: a deepinv ``Physics``; only its noiseless ``A`` (and ``A_adjoint``) are used, never
            its noise model: the noise level is ``sigma``.
        y: observation, batch-first ``(B, ...)``, in the operator's output layout (complex data as
            2 real channels on dim 1, as in deepinv). Must be finite.
        sigma: noise standard deviation in the units of ``y``; a scalar or one value per sample
            ``(B,)``; strictly positive.
        x_shape: shape ``(B, ...)`` of the unknown. Inferred as the shape of ``A^T y`` for linear
            operators; required to validate ``y`` against a non-linear operator.
        solver: an exact solver of the regularised normal equations for this operator and batch
            (:mod:`invdiff.normal_solvers`); :meth:`with_normal_solver` builds one. Used by
            :meth:`prox` and :meth:`pinv` instead of conjugate gradients.

    Raises:
        ValueError: ``y`` contains NaN/Inf, ``sigma`` is not positive or has the wrong shape, or
            ``y``'s shape does not fit the operator.
    """

    __slots__ = ("_physics", "_y", "_sigma", "_x_shape", "_solver")

    def __init__(self, physics: dinv.physics.Physics, y: Tensor, sigma: float | Tensor,
                 x_shape: Sequence[int] | None = None, solver: NormalSolver | None = None):
        if not isinstance(physics, dinv.physics.Physics):
            raise TypeError(f"physics must be a deepinv Physics, got {type(physics).__name__}")
        if not isinstance(y, Tensor) or y.dim() < 1:
            raise ValueError(f"y must be a batch-first tensor (B, ...), got {type(y).__name__}")
        if not bool(torch.isfinite(y).all()):
            bad = int((~torch.isfinite(y)).sum())
            raise ValueError(f"y of shape {tuple(y.shape)} contains {bad} NaN or Inf entries")
        y = y.detach()
        real_dtype = y.real.dtype
        sigma_t = _as_sigma(sigma, y.shape[0], real_dtype, y.device)
        object.__setattr__(self, "_physics", physics)
        object.__setattr__(self, "_y", y)
        object.__setattr__(self, "_sigma", sigma_t)
        object.__setattr__(self, "_x_shape", self._infer_x_shape(x_shape))
        if solver is not None and solver.batch != y.shape[0]:
            raise ValueError(f"solver serves a batch of {solver.batch}, y has {y.shape[0]}")
        object.__setattr__(self, "_solver", solver)

    def _infer_x_shape(self, x_shape: Sequence[int] | None) -> tuple[int, ...] | None:
        name = type(self._physics).__name__
        y = self._y
        try:
            with torch.no_grad():
                if x_shape is not None:
                    x_shape = tuple(int(s) for s in x_shape)
                    if x_shape[0] != y.shape[0]:
                        raise ValueError(f"batch of x_shape {x_shape} differs from y's batch {y.shape[0]}")
                    y_pred = self._physics.A(torch.zeros(x_shape, dtype=y.real.dtype, device=y.device))
                elif self.is_linear:
                    xt = self._physics.A_adjoint(y)
                    x_shape = tuple(xt.shape)
                    y_pred = self._physics.A(xt)
                else:
                    return None
        except (RuntimeError, ValueError, IndexError) as err:
            raise ValueError(
                f"y of shape {tuple(y.shape)} does not fit the operator {name}: {err}"
            ) from err
        if tuple(y_pred.shape) != tuple(y.shape):
            raise ValueError(
                f"y has shape {tuple(y.shape)} but {name} maps x of shape {x_shape} "
                f"to shape {tuple(y_pred.shape)}"
            )
        return x_shape

    def __setattr__(self, name, value):
        raise AttributeError("Measurement is frozen; build a new one (with_mask, expand, ...)")

    def __repr__(self) -> str:
        solver = "" if self._solver is None else f", solver={type(self._solver).__name__}"
        return (f"Measurement({type(self._physics).__name__}, y={tuple(self._y.shape)}, "
                f"x={self._x_shape}, sigma={self._sigma.tolist()}{solver})")

    # ----- read-only state -------------------------------------------------------------------
    @property
    def physics(self) -> dinv.physics.Physics:
        """The operator, for code that builds problems or hands it to deepinv; samplers use the methods."""
        return self._physics

    @property
    def operator_name(self) -> str:
        """The operator's class name, for messages."""
        return type(self._physics).__name__

    @property
    def y(self) -> Tensor:
        return self._y

    @property
    def sigma(self) -> Tensor:
        """Noise standard deviation per sample, ``(B,)``."""
        return self._sigma

    @property
    def batch_size(self) -> int:
        return int(self._y.shape[0])

    @property
    def x_shape(self) -> tuple[int, ...] | None:
        """Shape ``(B, ...)`` of the unknown, when known."""
        return self._x_shape

    @property
    def solver(self) -> NormalSolver | None:
        """The exact normal-equation solver, when one was attached."""
        return self._solver

    @property
    def couples_batch(self) -> bool:
        """Whether the operator mixes the batch's items (a 3-D acquisition over a volume's slices,
        :class:`~invdiff.operators.mri3d.Cartesian3DMRI`): then only samplers that treat the batch as one
        volume (:mod:`invdiff.samplers.volume`) solve it correctly."""
        return bool(getattr(self._physics, "couples_batch", False))

    @property
    def is_linear(self) -> bool:
        return isinstance(self._physics, dinv.physics.LinearPhysics)

    @property
    def is_decomposable(self) -> bool:
        return isinstance(self._physics, dinv.physics.DecomposablePhysics)

    # ----- the operator --------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """``A(x)``, shaped like ``y`` (noiseless)."""
        return self._physics.A(x)

    def adjoint(self, r: Tensor) -> Tensor:
        """``A^T r`` for a y-shaped ``r`` (linear operators), x-shaped."""
        self._require_linear("adjoint")
        return self._physics.A_adjoint(r)

    def normal(self, x: Tensor) -> Tensor:
        """``A^T A x`` (linear operators)."""
        self._require_linear("normal")
        return self._physics.A_adjoint_A(x)

    def operator_norm_sq(self, iterations: int = 30, start: Tensor | None = None) -> Tensor:
        """``||A||_2^2`` per item ``(B,)``, by ``iterations`` power iterations on ``A^T A`` (linear operators).

        ``start``: the first iterate, ``(B, ...)`` or one item's shape ``(...)`` shared by the batch; by
        default a fixed standard normal draw (``torch.Generator().manual_seed(0)``), so the estimate is
        reproducible. The estimate approaches the norm from below.
        """
        self._require_linear("operator_norm_sq")
        if self._x_shape is None:
            raise CapabilityError(f"operator_norm_sq needs the unknown's shape; {self.operator_name} gave none")
        if start is None:
            start = torch.randn(self._x_shape, generator=torch.Generator().manual_seed(0), dtype=self._y.real.dtype)
        start = start.to(self._y.device)
        if self.couples_batch:  # one operator over the whole batch: one norm, every item's
            flat = start.expand(self._x_shape).reshape(1, -1)
            lam = operator_norm_sq(lambda v: self._physics.A_adjoint_A(v.reshape(self._x_shape)).reshape(1, -1),
                                   flat, iterations)
            return lam.expand(self.batch_size)
        return operator_norm_sq(self._physics.A_adjoint_A, start, iterations)

    # ----- likelihood --------------------------------------------------------------------------
    def residual(self, x: Tensor) -> Tensor:
        """``y - A(x)``, shaped like ``y``; ``x`` has the measurement's batch (no broadcasting)."""
        self._check_batch(x, "x")
        return self._y - self._physics.A(x)

    def _check_batch(self, x: Tensor, what: str) -> None:
        if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] != self._y.shape[0]:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{what} of shape {shape} does not match the measurement's batch of "
                             f"{self._y.shape[0]} (y {tuple(self._y.shape)}); for N particles per item use "
                             "measurement.expand(N)")

    def log_likelihood(self, x: Tensor) -> Tensor:
        """Gaussian log-likelihood per sample, ``(B,)``: ``-||y - A(x)||^2 / (2 sigma^2)``.

        The additive constant ``-m/2 log(2 pi sigma^2)`` is omitted: it does not depend on ``x``.
        Differentiable in ``x``.
        """
        r = self.residual(x)
        sq = (r.abs() ** 2 if r.is_complex() else r * r).flatten(1).sum(1)
        return -0.5 * sq / self._sigma**2

    def grad_log_likelihood(self, x: Tensor) -> Tensor:
        """Gradient of :meth:`log_likelihood` with respect to ``x``, shaped like ``x``.

        Closed form ``A^T (y - A x) / sigma^2`` for linear operators; autograd otherwise.
        """
        if self.is_linear:
            return self.residual_gradient(self.residual(x))
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.log_likelihood(xg).sum(), xg)
        return g

    def residual_gradient(self, r: Tensor) -> Tensor:
        """``A^T r / sigma^2`` for a y-shaped ``r``: the log-likelihood's gradient at ``x`` when
        ``r = residual(x)`` (linear operators), for callers that keep the residual anyway."""
        self._require_linear("residual_gradient")
        return self._physics.A_adjoint(r / batch_view(self._sigma**2, r))

    # ----- linear capabilities -------------------------------------------------------------------
    def _require_linear(self, what: str) -> None:
        if not self.is_linear:
            raise CapabilityError(f"{what} needs a linear operator; {self.operator_name} is not")

    def _spectrum_solve(self, b: Tensor, shift: Tensor | None, rtol: float = 1e-6) -> Tensor:
        """``V diag(1 / (|s|^2 / sigma^2 + shift)) V^T b`` for a decomposable operator.

        With ``shift=None`` it applies the pseudo-inverse of ``diag(|s|^2)`` instead (zero where
        ``|s|`` is below ``rtol * max|s|``): ``(A^T A)^+ b``.
        """
        p = self._physics
        vb = p.V_adjoint(b)
        s2 = torch.as_tensor(p.mask, device=vb.device)
        s2 = (s2.conj() * s2).real if s2.is_complex() else s2 * s2
        s2 = s2.to(vb.real.dtype)
        if shift is None:
            thr = rtol**2 * s2.max()  # |s| below rtol max|s| counts as zero
            inv = torch.where(s2 > thr, 1.0 / torch.where(s2 > thr, s2, torch.ones_like(s2)), torch.zeros_like(s2))
            return p.V(vb * inv)
        sig2 = batch_view(self._sigma**2, vb).to(vb.real.dtype)
        return p.V(vb / (s2 / sig2 + batch_view(shift, vb).to(vb.real.dtype)))

    def pinv(self, method: Literal["auto", "cg", "physics"] = "auto", tol: float = 1e-10,
             max_iter: int = 500, rtol: float = 1e-6) -> Tensor:
        """``A^+ y``: the minimum-norm least-squares solution, x-shaped.

        ``"auto"``: closed form through the SVD for decomposable operators (zero-filling for MRI
        and inpainting), conjugate gradients on the normal equations otherwise. ``"cg"`` forces CG.
        ``"physics"`` returns the operator's own ``A_dagger`` (FBP for deepinv's ``Tomography``),
        which is not always an exact least-squares solution. ``rtol``: with the SVD, singular values
        below ``rtol * max|s|`` count as zero (a truncated-SVD pseudo-inverse for large ``rtol``).
        """
        return self._pinv_of(self._y, method, tol, max_iter, rtol)

    def fbp(self, filter: str = "ramp") -> Tensor:
        """Filtered back-projection of ``y`` (the analytic CT reconstruction), x-shaped: for operators with
        an ``fbp(y, filter)`` method (:class:`~operators.ParallelBeamCT`, :class:`~operators.FanBeamCT`);
        :class:`CapabilityError` otherwise. Unlike :meth:`pinv` it is no least-squares solve."""
        fbp = getattr(self._physics, "fbp", None)
        if not callable(fbp):
            raise CapabilityError(f"{type(self._physics).__name__} has no filtered back-projection (fbp is for CT "
                                  "operators); use pinv or the adjoint")
        return fbp(self._y, filter)

    def _pinv_of(self, y: Tensor, method: str, tol: float, max_iter: int, rtol: float = 1e-6) -> Tensor:
        self._require_linear("pinv")
        if method not in ("auto", "cg", "physics"):
            raise ValueError(f"method must be 'auto', 'cg' or 'physics', got {method!r}")
        p = self._physics
        if method == "physics":
            return p.A_dagger(y)
        if method == "auto" and self._solver is not None:
            return self._solver.update(p, y, self._sigma, None)
        aty = p.A_adjoint(y)
        if method == "auto" and self.is_decomposable:
            return self._spectrum_solve(aty, None, rtol)
        x, _ = conjugate_gradient(p.A_adjoint_A, aty, tol=tol, max_iter=max_iter)
        return x

    def prox(self, z: Tensor, gamma: float | Tensor, tol: float = 1e-10, max_iter: int = 500,
             method: Literal["auto", "physics"] = "auto") -> Tensor:
        """``argmin_x ||y - A x||^2 / (2 sigma^2) + ||x - z||^2 / (2 gamma)``, per sample.

        ``gamma`` is a scalar or ``(B,)``, in squared units of ``x``. ``"auto"``:
        ``z + solve_regularised(y - A z, gamma)`` (closed form, exact solver, or CG to ``tol``).
        ``"physics"``: the operator's own ``prox_l2`` (deepinv's convention ``argmin ||A x - y||^2 / 2 +
        ||x - z||^2 / (2 g)``, called with ``g = gamma / sigma^2``; one noise level per batch).
        """
        self._require_linear("prox")
        if method == "physics":
            sig = self._sigma
            if bool((sig != sig[0]).any()):
                raise ValueError(f"prox(method='physics') takes one noise level per batch, got {sig.tolist()}")
            return self._physics.prox_l2(z, self._y, gamma / float(sig[0]) ** 2)
        if method != "auto":
            raise ValueError(f"method must be 'auto' or 'physics', got {method!r}")
        return z + self.solve_regularised(self.residual(z), gamma, tol, max_iter)

    def solve_regularised(self, r: Tensor, gamma: float | Tensor, tol: float = 1e-10, max_iter: int = 500) -> Tensor:
        """``(A^T A / sigma^2 + I / gamma)^{-1} A^T r / sigma^2`` for a y-shaped ``r``, x-shaped.

        With ``r = y - A z`` it is the step from ``z`` to ``prox(z, gamma)``; with a sum of residuals it
        takes a Crank-Nicolson step ``prox(u + gamma grad l(x))`` as ``u + solve(r(x) + r(u))`` without
        forming ``gamma grad l``, which at ``gamma / sigma^2 ~ 1e9`` loses every digit of float32.
        Closed form for decomposable operators and with a solver (:meth:`with_normal_solver`); conjugate
        gradients from zero (``tol``, ``max_iter``) otherwise.
        """
        self._require_linear("solve_regularised")
        gamma_t = _as_sigma(gamma, r.shape[0], self._sigma.dtype, self._sigma.device)
        p = self._physics
        if self._solver is not None:
            return self._solver.update(p, r, self._sigma, gamma_t)
        b = p.A_adjoint(r / batch_view(self._sigma**2, r))
        if self.is_decomposable:
            return self._spectrum_solve(b, 1.0 / gamma_t)
        inv_s2 = 1.0 / self._sigma**2
        inv_g = 1.0 / gamma_t

        def normal(v: Tensor) -> Tensor:
            return batch_view(inv_s2, v) * p.A_adjoint_A(v) + batch_view(inv_g, v) * v

        x, _ = conjugate_gradient(normal, b, tol=tol, max_iter=max_iter)
        return x

    def consistent(self, x: Tensor, tol: float = 1e-10, max_iter: int = 500) -> Tensor:
        """Hard data consistency: the closest point to ``x`` with ``A x' = P y``, ``x + A^+(y - A x)``.

        ``P`` projects onto the range of ``A`` (``P y = y`` for noiseless data). For operators that
        select entries (Cartesian MRI, inpainting) this replaces the measured entries by ``y``.
        """
        self._require_linear("consistent")
        return x + self._pinv_of(self.residual(x), "auto", tol, max_iter)

    # ----- particles and optional capabilities --------------------------------------------------------
    def expand(self, n: int) -> Measurement:
        """The same measurement for ``n`` particles per item: batch ``B * n``, item-major.

        Operators whose parameters are shared across the batch are reused as is. Operators with
        per-sample parameters (a buffer whose leading dimension is ``B > 1``) must provide
        ``expand_batch(n)``; otherwise :class:`CapabilityError` is raised rather than silently
        pairing particles with the wrong item's parameters.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if n == 1:
            return self
        b = self.batch_size
        physics = self._physics
        per_sample = b > 1 and any(
            t.dim() > 0 and t.shape[0] == b for t in list(physics.buffers()) + list(physics.parameters())
        )
        if per_sample:
            if not isinstance(physics, BatchExpandable):
                raise CapabilityError(
                    f"{self.operator_name} holds per-sample parameters (leading dimension {b}) and "
                    "has no expand_batch(n); expand its parameters and build a new Measurement"
                )
            physics = physics.expand_batch(n)
        x_shape = None if self._x_shape is None else (b * n, *self._x_shape[1:])
        solver = None if self._solver is None else self._solver.expand(n)
        return Measurement(physics, self._y.repeat_interleave(n, dim=0),
                           self._sigma.repeat_interleave(n, dim=0), x_shape=x_shape, solver=solver)

    def with_y(self, y: Tensor) -> Measurement:
        """The same operator, noise level and solver with another finite observation of the same shape."""
        if not isinstance(y, Tensor) or tuple(y.shape) != tuple(self._y.shape):
            raise ValueError(f"y must keep the shape {tuple(self._y.shape)}, got {tuple(getattr(y, 'shape', ()))}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"y of shape {tuple(y.shape)} contains NaN or Inf entries")
        return self._replaced(_y=y.detach())  # the operator already maps x_shape to this shape: no re-check

    def with_sigma(self, sigma: float | Tensor) -> Measurement:
        """The same operator, observation and solver with another noise level (a scalar or ``(B,)``,
        finite and positive): e.g. a likelihood tempered for model error the noise level does not hold."""
        return self._replaced(_sigma=_as_sigma(sigma, self._y.shape[0], self._y.real.dtype, self._y.device))

    def _replaced(self, **slots) -> Measurement:
        """A copy with the given slots replaced, without the constructor's checks (the caller's to make)."""
        twin = object.__new__(Measurement)
        for name in self.__slots__:
            object.__setattr__(twin, name, slots.get(name, getattr(self, name)))
        return twin

    def with_normal_solver(self, max_measurements: int = GRAM_MAX_MEASUREMENTS,
                           max_bytes: int | None = None) -> Measurement:
        """This measurement with an exact normal-equation solver attached, when the operator has one
        (:func:`invdiff.normal_solvers.normal_solver`, with its limits); otherwise, and for decomposable
        operators, itself."""
        if self._solver is not None or not self.is_linear or self.is_decomposable:
            return self
        solver = normal_solver(self._physics, tuple(self._y.shape), max_measurements, max_bytes)
        if solver is None:
            return self
        return Measurement(self._physics, self._y, self._sigma, x_shape=self._x_shape, solver=solver)

    def with_mask(self, mask: Tensor, y: Tensor | None = None) -> Measurement:
        """A new measurement with the operator's mask replaced (the stored operator is unchanged).

        Requires an operator with ``with_mask`` (invdiff's MRI and inpainting operators). ``y`` is the
        observation under the new mask; by default the current ``y`` is re-masked, which is only
        right when the new mask selects a subset of the old one.
        """
        if not isinstance(self._physics, WithMask):
            raise CapabilityError(f"{self.operator_name} has no with_mask(mask)")
        physics = self._physics.with_mask(mask)
        if y is None:
            y = physics.A(physics.A_adjoint(self._y))
        return Measurement(physics, y, self._sigma, x_shape=self._x_shape)

    def candidate_grid(self) -> tuple[str, tuple[int, int]]:
        """The operator's acquirable candidates (:class:`~invdiff.operators.protocols.CandidateSelection`):
        ``("columns", (H, W))`` or ``("pixels", (H, W))``; :class:`CapabilityError` for other operators."""
        if not isinstance(self._physics, CandidateSelection):
            raise CapabilityError(f"{self.operator_name} does not select candidates (k-space columns or pixels)")
        kind, grid = self._physics.candidate_grid()
        return kind, tuple(int(g) for g in grid)

    def svd(self) -> SVD:
        """The singular value decomposition of a decomposable operator (:class:`SVD`)."""
        if not self.is_decomposable:
            raise CapabilityError(f"{self.operator_name} exposes no SVD (not a DecomposablePhysics)")
        p = self._physics
        return SVD(p.U, p.U_adjoint, p.V, p.V_adjoint, torch.as_tensor(p.mask))

    def rescaled(self, offset: float, width: float) -> Measurement:
        """The same measurement of ``u = (x - offset) / width`` (linear operators): ``y_u = (y - A(offset 1))
        / width``, ``sigma_u = sigma / width``, so ``y_u = A u + sigma_u n`` exactly. An exact solver stays
        attached (it depends on ``A`` alone)."""
        self._require_linear("rescaled")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        x_offset = torch.full(self._x_shape, float(offset), dtype=self._y.real.dtype, device=self._y.device)
        return Measurement(self._physics, (self._y - self._physics.A(x_offset)) / width, self._sigma / width,
                           x_shape=self._x_shape, solver=self._solver)

    def to(self, device: str | torch.device) -> Measurement:
        """This measurement on ``device``: a new one with a copy of the operator (this one is unchanged);
        an exact normal-equation solver is rebuilt there. Itself when it is there already."""
        device = torch.device(device)
        here = self._y.device
        if here.type == device.type and device.index in (None, here.index):
            return self
        moved = Measurement(copy.deepcopy(self._physics).to(device), self._y.to(device), self._sigma.to(device),
                            x_shape=self._x_shape)
        return moved.with_normal_solver() if self._solver is not None else moved
