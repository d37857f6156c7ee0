"""Classical reconstructions as samplers, so that every baseline returns the same :class:`Posterior`.

They use no prior (pass ``prior=None``; ``network_evals`` stays 0) and are deterministic: the ``N`` particles of an
item are identical copies. Each iteration is one :meth:`~Sampler.step`, so the shared runner shows
progress and a run can be stopped at any iteration count.

* :class:`DirectReconstruction`: one step; ``"adjoint"`` is ``A^T y`` (zero-filled / coil-combined
  for MRI), ``"fbp"`` filtered back-projection (CT operators, :meth:`Measurement.fbp`), ``"physics"``
  the operator's own ``A_dagger`` (deepinv's iterative least-squares solve where the operator defines
  none, as invdiff's CT operators do), ``"pinv"`` the exact minimum-norm least-squares solution
  (:meth:`Measurement.pinv`).
* :class:`ConjugateGradient`: CG on the normal equations ``(A^T A + damping I) x = A^T y`` from zero,
  per sample; for multi-coil MRI this is CG-SENSE, whose iteration count is the regulariser.
* :class:`TotalVariation`: ``argmin_x ||A x - y||^2 / 2 + lam TV(x)`` with isotropic TV (the
  gradient's norm is taken over both directions and all channels, so the two channels of a complex
  image share edges), solved by the primal-dual algorithm of Chambolle & Pock (2011).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor

from invdiff.linalg import batch_dot, batch_view, cg_step, operator_norm_sq
from invdiff.measurement import Measurement
from invdiff.posterior import Posterior
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import Sampler, SamplerState, extend_state

__all__ = ["ConjugateGradient", "DirectReconstruction", "TotalVariation", "gradient_2d", "gradient_2d_adjoint"]


def _replicate(x: Tensor, n: int) -> Tensor:
    """``(B, ...)`` -> ``(B, N, ...)`` copies."""
    return x.unsqueeze(1).expand(x.shape[0], n, *x.shape[1:])


def _needs_linear(measurement: Measurement | None, name: str) -> Measurement:
    if measurement is None or not measurement.is_linear:
        raise ValueError(f"{name} needs a measurement with a linear operator")
    return measurement


class _Deterministic(Sampler):
    """Shared set-up: the iteration runs on the ``B`` items, the result is copied to the particles."""

    uses_prior = False

    def _state(self, measurement: Measurement, prior: Denoiser | None, n_particles: int, generator: torch.Generator,
               num_steps: int, x0: Tensor, cls: type[DeterministicState]) -> DeterministicState:
        state = self.initial_state(measurement, prior, 1, generator, num_steps=num_steps,
                                   x_init=lambda rng, dtype: x0.unsqueeze(1))
        return extend_state(state, cls, copies=n_particles)

    def result(self, state: DeterministicState) -> Posterior:
        post = super().result(state)
        n = state.copies
        return dataclasses.replace(post, samples=post.samples.expand(-1, n, *post.samples.shape[2:]).clone(),
                                   log_weights=post.log_weights.expand(-1, n).clone())


@dataclasses.dataclass(frozen=True)
class DeterministicState(SamplerState):
    """``x`` holds one iterate per item; ``copies`` particles are returned per item."""

    copies: int = 1


@dataclasses.dataclass(frozen=True)
class CGState(DeterministicState):
    """Residual ``r``, direction ``p``, squared residual norm ``rs`` and stopping ``threshold``, per item."""

    r: Tensor | None = None
    p: Tensor | None = None
    rs: Tensor | None = None
    threshold: Tensor | None = None


@dataclasses.dataclass(frozen=True)
class PDHGState(DeterministicState):
    """Duals of the data block (``dual_data``, y-shaped) and of the gradient block (``dual_grad``), the
    extrapolated primal ``x_bar``, the step ``tau`` and the data block's scale ``a`` (both ``(B,)``)."""

    dual_data: Tensor | None = None
    dual_grad: Tensor | None = None
    x_bar: Tensor | None = None
    tau: Tensor | None = None
    a: Tensor | None = None


class DirectReconstruction(_Deterministic):
    """One-step reconstruction: ``"adjoint"`` (``A^T y``), ``"fbp"`` (filtered back-projection, ramp
    filter; CT only), ``"physics"`` (the operator's ``A_dagger``) or ``"pinv"`` (exact least squares,
    CG to ``tol`` for operators without an SVD)."""

    def __init__(self, kind: Literal["adjoint", "fbp", "physics", "pinv"] = "adjoint", max_iter: int = 500):
        if kind not in ("adjoint", "fbp", "physics", "pinv"):
            raise ValueError(f"kind must be 'adjoint', 'fbp', 'physics' or 'pinv', got {kind!r}")
        self.kind, self.max_iter = kind, max_iter

    def init(self, measurement: Measurement | None, prior: Denoiser | None, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        m = _needs_linear(measurement, "DirectReconstruction")
        return self._state(m, prior, n_particles, generator, 1, torch.zeros(m.x_shape, dtype=m.y.real.dtype),
                           DeterministicState)

    def step(self, state: DeterministicState) -> DeterministicState:
        m = state.measurement
        if self.kind == "adjoint":
            x = m.adjoint(m.y)
        elif self.kind == "fbp":
            x = m.fbp()
        elif self.kind == "physics":
            x = m.pinv("physics")
        else:
            x = m.pinv("auto", max_iter=self.max_iter)
        return dataclasses.replace(state, x=x.to(state.x.dtype), step=1)


class ConjugateGradient(_Deterministic):
    """``iterations`` CG steps on ``(A^T A + damping I) x = A^T y`` from ``x = 0`` (CG-SENSE for MRI).

    Early stopping is the regulariser: the iterate after ``k`` steps minimises the residual over the
    ``k``-dimensional Krylov space. ``damping`` (Tikhonov, in units of ``A^T A``) adds ``damping ||x||^2 / 2``.
    An item stops moving once ``||A^T y - (A^T A + damping) x|| <= tol ||A^T y||`` (converged), with
    ``tol`` at least 10 machine epsilons of the data's precision (below that the residual is round-off).

    ``discrepancy = tau > 0`` adds Morozov's discrepancy principle, a stopping rule that adapts to the
    data's noise: an item stops at the first iterate whose data residual satisfies
    ``||y - A x||^2 <= tau^2 m sigma^2``, ``m`` the number of measured real entries of ``y`` (its
    nonzero entries: unsampled k-space is stored as 0) and ``sigma`` the measurement's noise level;
    ``iterations`` is then a cap. ``tau`` slightly above 1 is the classical choice.
    """

    def __init__(self, iterations: int = 10, damping: float = 0.0, tol: float = 1e-10, discrepancy: float = 0.0):
        if iterations < 1 or damping < 0 or tol < 0 or discrepancy < 0:
            raise ValueError(f"need iterations >= 1 and damping, tol, discrepancy >= 0, got {iterations}, {damping}, "
                             f"{tol}, {discrepancy}")
        self.iterations, self.damping, self.tol = iterations, float(damping), float(tol)
        self.discrepancy = float(discrepancy)

    def _normal(self, m: Measurement, v: Tensor) -> Tensor:
        out = m.normal(v)
        return out + self.damping * v if self.damping else out

    def init(self, measurement: Measurement | None, prior: Denoiser | None, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        m = _needs_linear(measurement, "ConjugateGradient")
        b = m.adjoint(m.y)
        state = self._state(m, prior, n_particles, generator, self.iterations, torch.zeros_like(b), CGState)
        rs = batch_dot(b, b)
        # below about 10 machine epsilons of the working precision the residual is round-off: iterating
        # on would divide by it (float32 CG-SENSE on a well-conditioned single-coil problem blew up to 1e9)
        floor = 10 * torch.finfo(b.dtype).eps
        return dataclasses.replace(state, r=b, p=b.clone(), rs=rs, threshold=max(self.tol, floor) ** 2 * rs)

    def step(self, state: CGState) -> CGState:
        active = state.rs > state.threshold
        if self.discrepancy > 0:
            m = state.measurement
            misfit = m.residual(state.x).flatten(1)
            measured = (m.y.flatten(1) != 0).sum(1).to(misfit.real.dtype)
            noise = self.discrepancy**2 * measured * m.sigma.to(misfit.real.dtype) ** 2
            active = active & ((misfit.abs() ** 2).sum(1) > noise).to(active.device)
        x, r, p, rs, _ = cg_step(lambda v: self._normal(state.measurement, v), state.x, state.r, state.p, state.rs,
                                 active)
        return dataclasses.replace(state, x=x, r=r, p=p, rs=rs, step=state.step + 1)


def gradient_2d(x: Tensor) -> Tensor:
    """Forward differences over the last two dims with a zero last row/column: ``(B, ...)`` -> ``(B, 2, ...)``."""
    g = x.new_zeros(x.shape[0], 2, *x.shape[1:])
    g[:, 0, ..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    g[:, 1, ..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return g


def gradient_2d_adjoint(g: Tensor) -> Tensor:
    """The exact adjoint of :func:`gradient_2d` (minus the divergence)."""
    gv, gh = g[:, 0], g[:, 1]
    out = torch.zeros_like(gv)
    out[..., :-1, :] -= gv[..., :-1, :]
    out[..., 1:, :] += gv[..., :-1, :]
    out[..., :, :-1] -= gh[..., :, :-1]
    out[..., :, 1:] += gh[..., :, :-1]
    return out


class TotalVariation(_Deterministic):
    """Isotropic TV-regularised least squares by primal-dual hybrid gradient (Chambolle & Pock 2011).

    Minimises ``||A x - y||^2 / 2 + lam * sum_pixels ||grad x||_2`` per sample, with ``lam`` in units
    of ``y^2 / x`` (the data term carries no noise level, as in sigpy's and deepinv's TV solvers).
    The operator is ``K = [A / a; grad]`` with ``a = ||A|| / ||grad||`` so both blocks have unit-order
    norm; steps ``tau = s = 0.99 / ||K||`` with ``||K||`` from 30 power iterations from a fixed start.

    Args:
        lam: regularisation weight.
        iterations: PDHG iterations (one ``A`` and one ``A^T`` each).
        init: ``"scaled-adjoint"`` starts at ``c A^T y`` with the least-squares multiple
            ``c = ||A^T y||^2 / ||A A^T y||^2`` (``c = 1`` for masked Fourier operators; ``~1/||A||^2``
            for CT, where the bare adjoint starts ~10^6 above the optimum in objective and PDHG needs
            hundreds of iterations to come back), ``"adjoint"`` at ``A^T y``, ``"zeros"`` at 0.
    """

    def __init__(self, lam: float, iterations: int = 200,
                 init: Literal["scaled-adjoint", "adjoint", "zeros"] = "scaled-adjoint"):
        if lam < 0 or iterations < 1:
            raise ValueError(f"need lam >= 0 and iterations >= 1, got {lam}, {iterations}")
        if init not in ("scaled-adjoint", "adjoint", "zeros"):
            raise ValueError(f"init must be 'scaled-adjoint', 'adjoint' or 'zeros', got {init!r}")
        self.lam, self.iterations, self.init_kind = float(lam), iterations, init

    def init(self, measurement: Measurement | None, prior: Denoiser | None, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        m = _needs_linear(measurement, "TotalVariation")
        aty = m.adjoint(m.y)
        if self.init_kind == "zeros":
            x0 = torch.zeros_like(aty)
        elif self.init_kind == "adjoint":
            x0 = aty
        else:
            a_aty = m.forward(aty)
            c = aty.abs().pow(2).flatten(1).sum(1) / a_aty.abs().pow(2).flatten(1).sum(1).clamp_min(1e-30)
            x0 = batch_view(c, aty) * aty
        state = self._state(m, prior, n_particles, generator, self.iterations, x0, PDHGState)
        if aty.dim() < 3:
            raise ValueError(f"TotalVariation needs images (B, ..., H, W), got unknowns of shape {tuple(aty.shape)}")
        # a fixed start, so the step (and the result after a finite number of iterations) depends on the
        # problem only, not on the run's seed; row i is the same whatever the batch
        start = torch.randn(aty.shape, generator=torch.Generator().manual_seed(0), dtype=aty.dtype).to(aty.device)
        a2 = m.operator_norm_sq(30, start) / 8.0  # ||grad||^2 <= 8 in 2-D
        a = a2.clamp_min(1e-30).sqrt()
        k2 = operator_norm_sq(lambda v: m.normal(v) / batch_view(a2, v)
                               + gradient_2d_adjoint(gradient_2d(v)), start, 30)
        tau = 0.99 / (1.05 * k2).sqrt()  # 5 % margin on the power-iteration estimate
        return dataclasses.replace(state, dual_data=torch.zeros_like(m.y), dual_grad=torch.zeros_like(gradient_2d(x0)),
                                   x_bar=x0.clone(), tau=tau, a=a)

    def gradient(self, x: Tensor) -> Tensor:
        """The regulariser's gradient operator (:func:`gradient_2d`; 3-D in the volume form)."""
        return gradient_2d(x)

    def gradient_adjoint(self, g: Tensor) -> Tensor:
        """The exact adjoint of :meth:`gradient`."""
        return gradient_2d_adjoint(g)

    def step(self, state: PDHGState) -> PDHGState:
        m, x, x_bar = state.measurement, state.x, state.x_bar
        a, s = state.a, state.tau
        # dual of F1(u) = ||a u - y||^2 / 2 at u = A x / a: prox of s F1* is (w - s y / a) / (1 + s / a^2)
        w = state.dual_data + batch_view(s / a, m.y) * m.forward(x_bar)
        dual_data = (w - batch_view(s / a, m.y) * m.y) / batch_view(1 + s / a**2, m.y)
        # dual of lam ||.||_{2,1}: projection onto the pointwise ball of radius lam (norm over directions and channels)
        q = state.dual_grad + batch_view(s, state.dual_grad) * self.gradient(x_bar)
        norm = q.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()
        dual_grad = q / torch.clamp(norm / self.lam, min=1.0) if self.lam > 0 else torch.zeros_like(q)
        x_new = x - batch_view(s, x) * (m.adjoint(dual_data) / batch_view(a, x) + self.gradient_adjoint(dual_grad))
        return dataclasses.replace(state, x=x_new, x_bar=2 * x_new - x, dual_data=dual_data, dual_grad=dual_grad,
                                   step=state.step + 1)

    @staticmethod
    def objective(measurement: Measurement, x: Tensor, lam: float) -> Tensor:
        """``||A x - y||^2 / 2 + lam TV(x)`` per sample, ``(B,)``."""
        data = 0.5 * measurement.residual(x).pow(2).flatten(1).sum(1)
        tv = gradient_2d(x).pow(2).sum(dim=(1, 2)).sqrt().flatten(1).sum(1)
        return data + lam * tv
