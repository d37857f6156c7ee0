"""Volumes solved as one problem: a 2-D prior per slice, the slices coupled by total variation along z.

The samplers here read the batch as a volume: item ``b`` is slice ``b``, in order, and every slice is
measured by the same kind of operator (a CT projector, an MRI mask) with its own data. They are the
one place where items depend on their batch mates, by design. Particles stay independent: particle
``n`` of every slice together is one volume (the item-major layout ``(B * N, ...)`` of
:mod:`invdiff.samplers.base`).

z-coupling is the ADMM of DiffusionMBIR (Chung, Kim, Kim, Ye, CVPR 2023, "Solving 3D inverse problems
using pre-trained 2D diffusion models") on ::

    min_x  (w / 2) ||A x - y||^2  [+ ||x - v||^2 / 2]  +  lam ||D_z x||_1

with ``D_z`` the forward difference between neighbouring slices (no wrap-around: the first and last
slices have one neighbour; the reference code wraps the volume into a ring), split as ``d = D_z x``
with the scaled dual ``u``. One ADMM iteration is ::

    x <- CG_M on (w A^T A [+ I] + rho D_z^T D_z) x = w A^T y [+ v] + rho D_z^T (d - u), from x
    d <- shrink(D_z x + u, lam / rho)
    u <- u + D_z x - d

and, as in both reference codes, ``d`` and ``u`` persist across the diffusion steps (one ADMM iteration
per step converges along the reverse diffusion instead of within each step). ``w = 1 / ||A||^2`` makes
``rho`` unit-free (relative to the data term's largest curvature); ``lam / rho`` is the shrinkage
threshold in data units. The CG inner products are over the whole volume, per particle.

* :class:`DDSVolume`: DDS's volume form (Chung, Lee, Ye, ICLR 2024, Sec. 4 and its ``solver_3d``): the
  DDIM step of :class:`~invdiff.samplers.DDS` whose data step on the denoised estimate is the ADMM above.
* :class:`DiffusionMBIR`: the reverse-diffusion predictor and Langevin corrector of the VE SDE (Song et
  al. 2021) on each slice, then the ADMM above on the sample itself (DiffusionMBIR's ``pc_radon``).
* :class:`TotalVariation3D`: isotropic 3-D TV least squares by PDHG, the classical volume baseline.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import Tensor

from invdiff.linalg import batch_view
from invdiff.measurement import Measurement
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import Sampler, SamplerState, check_num_steps, extend_state, resolve_sigmas, start_from_noise
from invdiff.samplers.classical import PDHGState, _Deterministic, _needs_linear
from invdiff.samplers.dds import DDS, DDSState
from invdiff.samplers.splitting import per_item_norm_sq
from invdiff.schedule import VPSchedule

__all__ = ["DDSVolume", "DiffusionMBIR", "TotalVariation3D", "ZTV", "gradient_3d", "gradient_3d_adjoint",
           "volume_cg", "volume_dot", "z_diff", "z_diff_adjoint"]


def z_diff(x: Tensor, n_particles: int) -> Tensor:
    """Forward differences between neighbouring slices: ``(B * N, ...)`` -> ``((B - 1) * N, ...)``,
    entry ``(b, n)`` = slice ``b + 1`` minus slice ``b`` of particle ``n``."""
    v = x.reshape(-1, n_particles, *x.shape[1:])
    return (v[1:] - v[:-1]).reshape(-1, *x.shape[1:])


def z_diff_adjoint(d: Tensor, n_particles: int) -> Tensor:
    """The exact adjoint of :func:`z_diff`: ``((B - 1) * N, ...)`` -> ``(B * N, ...)``."""
    v = d.reshape(-1, n_particles, *d.shape[1:])
    out = v.new_zeros(v.shape[0] + 1, *v.shape[1:])
    out[:-1] -= v
    out[1:] += v
    return out.reshape(-1, *d.shape[1:])


def volume_dot(a: Tensor, b: Tensor, n_particles: int) -> Tensor:
    """``(N,)``: the inner product of each particle's whole volume (all slices, all pixels)."""
    prod = (a * b).reshape(-1, n_particles, *a.shape[1:])
    return prod.transpose(0, 1).reshape(n_particles, -1).sum(1)


def _per_item(v: Tensor, like: Tensor, n_particles: int) -> Tensor:
    """A per-particle ``(N,)`` value broadcast over ``like`` ``(B * N, ...)``."""
    items = like.shape[0] // n_particles
    return batch_view(v.repeat(items), like).to(like.dtype)


def volume_cg(apply: Callable[[Tensor], Tensor], rhs: Tensor, x0: Tensor, iterations: int,
              n_particles: int) -> Tensor:
    """``iterations`` conjugate-gradient iterations on ``apply(x) = rhs`` from ``x0``, with inner
    products over each particle's whole volume (the system couples the slices). A particle stops once its
    residual is round-off (10 machine epsilons of the larger of ``rhs``'s and the first residual's norms)."""
    x, r = x0.clone(), rhs - apply(x0)
    p, rs = r.clone(), volume_dot(r, r, n_particles)
    floor = (10 * torch.finfo(rhs.dtype).eps) ** 2 * torch.maximum(volume_dot(rhs, rhs, n_particles), rs)
    for _ in range(iterations):
        ap = apply(p)
        pap = volume_dot(p, ap, n_particles)
        ok = (pap > 0) & (rs > floor)
        alpha = torch.where(ok, rs / torch.where(ok, pap, torch.ones_like(pap)), torch.zeros_like(rs))
        x = x + _per_item(alpha, x, n_particles) * p
        r = r - _per_item(alpha, r, n_particles) * ap
        rs_new = volume_dot(r, r, n_particles)
        beta = torch.where(ok, rs_new / torch.where(rs > 0, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = r + _per_item(beta, p, n_particles) * p
        rs = rs_new
    return x


@dataclasses.dataclass(frozen=True)
class ZTV:
    """The ADMM of the module docstring: ``rho`` (unit-free), ``lam`` (``lam / rho``: the shrinkage threshold
    in data units), ``cg_iterations`` per ADMM iteration, ``admm_iterations`` per diffusion step."""

    rho: float = 1.0
    lam: float = 0.1
    cg_iterations: int = 5
    admm_iterations: int = 1

    def __post_init__(self):
        if not self.rho > 0 or not math.isfinite(self.rho):
            raise ValueError(f"rho must be a finite number > 0, got {self.rho}")
        if not self.lam >= 0 or not math.isfinite(self.lam):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam}")
        for name in ("cg_iterations", "admm_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def solve(self, m: Measurement, aty: Tensor, weight: Tensor, start: Tensor, d: Tensor, u: Tensor,
              n_particles: int, anchor: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``admm_iterations`` iterations from ``start`` with splitting variable ``d`` and scaled dual
        ``u``; ``weight`` ``(B * N,)`` is ``w`` per item; with ``anchor`` the proximal term
        ``||x - anchor||^2 / 2`` is added. Returns the new ``(x, d, u)``."""
        w = batch_view(weight.to(start.dtype), start)
        rho, threshold = self.rho, self.lam / self.rho

        def apply(v: Tensor) -> Tensor:
            out = w * m.normal(v) + rho * z_diff_adjoint(z_diff(v, n_particles), n_particles)
            return out if anchor is None else out + v

        x = start
        for _ in range(self.admm_iterations):
            rhs = w * aty + rho * z_diff_adjoint(d - u, n_particles)
            if anchor is not None:
                rhs = rhs + anchor
            x = volume_cg(apply, rhs, x, self.cg_iterations, n_particles)
            dx = z_diff(x, n_particles)
            d = torch.sign(dx + u) * (dx + u).abs().sub(threshold).clamp_min(0)
            u = u + dx - d
        return x, d, u


def _check_volume(measurement: Measurement | None, name: str) -> Measurement:
    if measurement is None or not measurement.is_linear:
        raise ValueError(f"{name} needs a linear measurement of a volume's slices (its data step is conjugate "
                         "gradients on A^T A coupled along z)")
    return measurement


@dataclasses.dataclass(frozen=True)
class VolumeState(DDSState):
    """:class:`~invdiff.samplers.dds.DDSState` with the ADMM's splitting variable ``d`` and scaled dual
    ``u``, ``((B - 1) * N, ...)``, kept across steps."""

    d: Tensor | None = None
    u: Tensor | None = None


class DDSVolume(DDS):
    """DDS on a volume (module docstring): :class:`~invdiff.samplers.DDS`'s DDIM step, with the data step on
    the denoised estimate replaced by ``admm_iterations`` iterations of the z-TV ADMM, each with
    ``cg_iterations`` CG iterations started at the denoised estimate (the Krylov subspace around it).

    Args:
        num_steps, eta, schedule, sigmas: as :class:`~invdiff.samplers.DDS`.
        gamma: ``inf`` (default, the reference's form): the data term alone, ``w = 1 / ||A||^2``; finite:
            ``w = gamma / ||A||^2`` and the proximal term ``||x - x0_hat||^2 / 2``, DDS's noisy form.
        rho, lam, cg_iterations, admm_iterations: the ADMM (:class:`ZTV`). ``lam = 0`` removes the coupling:
            each slice then takes DDS's hard-data-consistency step (with ``rho`` only shaping CG's system).
    """

    def __init__(self, num_steps: int = 50, eta: float = 0.85, gamma: float = math.inf, rho: float = 1.0,
                 lam: float = 0.1, cg_iterations: int = 5, admm_iterations: int = 1,
                 schedule: VPSchedule | None = None, sigmas: Tensor | None = None):
        super().__init__(num_steps, eta, gamma, cg_iterations, schedule, sigmas)
        self.admm = ZTV(float(rho), float(lam), cg_iterations, admm_iterations)

    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        state = super().init(_check_volume(measurement, "DDSVolume"), prior, n_particles, generator)
        weight = torch.where(torch.isinf(state.weight), torch.ones_like(state.weight), state.weight)
        weight = weight / (per_item_norm_sq(measurement, n_particles).to(weight) if math.isinf(self.gamma) else 1.0)
        zeros = z_diff(state.x, n_particles).zero_()
        fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
        return VolumeState(**{**fields, "weight": weight, "d": zeros, "u": zeros.clone()})

    def refine(self, state: VolumeState, x0: Tensor) -> tuple[Tensor, dict]:
        anchor = None if math.isinf(self.gamma) else x0
        x, d, u = self.admm.solve(state.measurement, state.aty, state.weight, x0, state.d, state.u,
                                  state.n_particles, anchor)
        return x, {"d": d, "u": u}


@dataclasses.dataclass(frozen=True)
class MBIRState(VolumeState):
    """:class:`VolumeState` (``denoised``: the last step's ``D(x, sigma)``)."""


class DiffusionMBIR(Sampler):
    """DiffusionMBIR (module docstring) with ``num_steps`` predictor steps; each is one network evaluation,
    plus one for the corrector when ``corrector_snr > 0`` (the budget counts both: ``num_steps`` predictor
    steps take ``2 num_steps - 1`` evaluations with the corrector, none after the last step).

    In EDM variables (``x = x0 + sigma n``), from ``sigma_i`` to ``sigma_{i+1}``::

        x <- x + (sigma_i^2 - sigma_{i+1}^2) s(x, sigma_i) + (sigma_{i+1} / sigma_i) sqrt(sigma_i^2 - sigma_{i+1}^2) z
        x <- x + e s(x, sigma_{i+1}) + sqrt(2 e) z,  e = 2 (snr ||z|| / ||s||)^2                 corrector
        x <- ADMM (module docstring, data term alone, w = 1 / ||A||^2) on x

    The ADMM runs on the noisy sample with its variables kept across steps, so its z-term must stay weak
    beside the data term: with ``rho`` of order 1 it pulls the unobserved components' slice differences
    back to the previous, noisier steps' (measured on a toy volume: mean squared error 2.4 at ``rho = 1``
    against 0.02 at 0.1). Defaults: ``rho = 0.1``, threshold ``lam / rho = 0.1``, one CG iteration (the
    paper's). With ``s = (D(x, sigma) - x) / sigma^2`` (Tweedie) and norms per slice, as the reference code's
    batch of slices. The predictor is score-SDE's ancestral step for the VE SDE (the exact reverse of the
    forward process given ``x0``), not the reverse-diffusion (Euler-Maruyama) step the reference code takes:
    both agree over the reference's 2000 steps, but over a hundred the latter adds ``(sigma_i / sigma_{i+1})^2``
    times too much noise per step and never reaches the data. The last predictor step lands on ``D(x, sigma_last)``. The paper runs 2000 VE steps
    with one ADMM iteration of one CG iteration each; with the hundred-odd steps a CPU affords, more CG
    iterations per step (``cg_iterations``) make up for it.
    """

    def __init__(self, num_steps: int = 100, corrector_snr: float = 0.16, rho: float = 0.1, lam: float = 0.01,
                 cg_iterations: int = 1, admm_iterations: int = 1, schedule: VPSchedule | None = None,
                 sigmas: Tensor | None = None):
        if not corrector_snr >= 0 or not math.isfinite(corrector_snr):
            raise ValueError(f"corrector_snr must be a finite number >= 0 (0: no corrector), got {corrector_snr}")
        self.num_steps, self.corrector_snr = check_num_steps(num_steps), float(corrector_snr)
        self.admm = ZTV(float(rho), float(lam), cg_iterations, admm_iterations)
        self.schedule, self._sigmas = schedule, sigmas

    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        m0 = _check_volume(measurement, "DiffusionMBIR")
        steps = self.num_steps if self.corrector_snr == 0 else max(1, (self.num_steps + 1) // 2)
        sigmas = resolve_sigmas(prior, steps, self.schedule, self._sigmas)
        state = self.initial_state(m0, prior, n_particles, generator, num_steps=sigmas.numel() - 1,
                                   x_init=start_from_noise(prior, float(sigmas[0]), n_particles))
        m = m0.expand(n_particles)
        zeros = z_diff(state.x, n_particles).zero_()
        return extend_state(state, MBIRState, measurement=m, sigmas=sigmas, aty=m.adjoint(m.y),
                            weight=1.0 / per_item_norm_sq(m0, n_particles).to(m.sigma), d=zeros, u=zeros.clone())

    def step(self, state: MBIRState) -> MBIRState:
        i = state.step
        sigma, sigma_next = float(state.sigmas[i]), float(state.sigmas[i + 1])
        x0 = state.prior.denoise(state.x, sigma)
        if sigma_next == 0:
            return dataclasses.replace(state, x=x0, step=i + 1, denoised=x0)
        keep = (sigma_next / sigma) ** 2
        std = sigma_next * math.sqrt(1.0 - keep)
        x = keep * state.x + (1.0 - keep) * x0 + std * state.rng.randn_like(state.x, state.n_particles)
        if self.corrector_snr > 0:
            score = (state.prior.denoise(x, sigma_next) - x) / sigma_next**2
            z = state.rng.randn_like(x, state.n_particles)
            ratio = z.flatten(1).norm(dim=1) / score.flatten(1).norm(dim=1).clamp_min(1e-30)
            e = batch_view(2 * (self.corrector_snr * ratio) ** 2, x)
            x = x + e * score + (2 * e).sqrt() * z
        x, d, u = self.admm.solve(state.measurement, state.aty, state.weight, x, state.d, state.u, state.n_particles)
        return dataclasses.replace(state, x=x, d=d, u=u, step=i + 1, denoised=x0)


def gradient_3d(x: Tensor, n_particles: int, z_weight: float = 1.0) -> Tensor:
    """In-plane forward differences (:func:`~invdiff.samplers.classical.gradient_2d`'s convention) and
    ``z_weight`` times the difference to the next slice (zero on the last): ``(B * N, ...)`` ->
    ``(B * N, 3, ...)``."""
    from invdiff.samplers.classical import gradient_2d

    g = x.new_zeros(x.shape[0], 3, *x.shape[1:])
    g[:, :2] = gradient_2d(x)
    dz = z_diff(x, n_particles)
    g[: dz.shape[0], 2] = z_weight * dz
    return g


def gradient_3d_adjoint(g: Tensor, n_particles: int, z_weight: float = 1.0) -> Tensor:
    """The exact adjoint of :func:`gradient_3d`."""
    from invdiff.samplers.classical import gradient_2d_adjoint

    out = gradient_2d_adjoint(g[:, :2])
    rows = g.shape[0] - n_particles
    if rows > 0:
        out = out + z_weight * z_diff_adjoint(g[:rows, 2], n_particles)
    return out


class TotalVariation3D(_Deterministic):
    """Isotropic 3-D TV least squares on a volume's slices, by PDHG (Chambolle & Pock 2011).

    Minimises ``||A x - y||^2 / 2 + lam sum_voxels ||grad_3 x||_2`` over the whole volume, with ``grad_3``
    :func:`gradient_3d` (``z_weight``: the z difference's weight, e.g. the in-plane pixel size over the
    slice spacing for anisotropic voxels). The same scaling, start and step rule as
    :class:`~invdiff.samplers.TotalVariation`, with ``||grad_3||^2 <= 12`` and the step from the whole
    volume's power iteration (one step size for all slices).
    """

    def __init__(self, lam: float, iterations: int = 300, z_weight: float = 1.0):
        if lam < 0 or iterations < 1 or not z_weight >= 0:
            raise ValueError(f"need lam >= 0, iterations >= 1 and z_weight >= 0, got {lam}, {iterations}, {z_weight}")
        self.lam, self.iterations, self.z_weight = float(lam), iterations, float(z_weight)

    def init(self, measurement: Measurement | None, prior: Denoiser | None, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        m = _needs_linear(measurement, "TotalVariation3D")
        aty = m.adjoint(m.y)
        if aty.dim() < 3:
            raise ValueError(f"TotalVariation3D needs images (B, ..., H, W), got unknowns of shape {tuple(aty.shape)}")
        a_aty = m.forward(aty)
        c = aty.pow(2).flatten(1).sum(1).sum() / a_aty.abs().pow(2).flatten(1).sum(1).sum().clamp_min(1e-30)
        x0 = c * aty
        state = self._state(m, prior, n_particles, generator, self.iterations, x0, PDHGState)
        start = torch.randn(aty.shape, generator=torch.Generator().manual_seed(0), dtype=aty.dtype).to(aty.device)
        a2 = (m.operator_norm_sq(30, start).max() / 12.0).clamp_min(1e-30)
        a = a2.sqrt().expand(aty.shape[0]).clone()
        grad = lambda v: gradient_3d(v, 1, self.z_weight)  # noqa: E731 - the unknowns are one volume
        grad_t = lambda g: gradient_3d_adjoint(g, 1, self.z_weight)  # noqa: E731
        v = start / start.norm()
        k2 = torch.zeros((), dtype=aty.dtype)
        for _ in range(30):  # power iteration over the whole volume: one step size for all slices
            w = m.normal(v) / a2 + grad_t(grad(v))
            k2 = (v * w).sum()
            v = w / w.norm().clamp_min(1e-30)
        tau = (0.99 / (1.05 * k2).sqrt()).expand(aty.shape[0]).clone()
        return dataclasses.replace(state, dual_data=torch.zeros_like(m.y), dual_grad=torch.zeros_like(grad(x0)),
                                   x_bar=x0.clone(), tau=tau, a=a)

    def step(self, state: PDHGState) -> PDHGState:
        m, x, x_bar = state.measurement, state.x, state.x_bar
        a, s = state.a, state.tau
        w = state.dual_data + batch_view(s / a, m.y) * m.forward(x_bar)
        dual_data = (w - batch_view(s / a, m.y) * m.y) / batch_view(1 + s / a**2, m.y)
        q = state.dual_grad + batch_view(s, state.dual_grad) * gradient_3d(x_bar, 1, self.z_weight)
        norm = q.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()
        dual_grad = q / torch.clamp(norm / self.lam, min=1.0) if self.lam > 0 else torch.zeros_like(q)
        x_new = x - batch_view(s, x) * (m.adjoint(dual_data) / batch_view(a, x)
                                         + gradient_3d_adjoint(dual_grad, 1, self.z_weight))
        return dataclasses.replace(state, x=x_new, x_bar=2 * x_new - x, dual_data=dual_data, dual_grad=dual_grad,
                                   step=state.step + 1)

    def objective(self, measurement: Measurement, x: Tensor) -> Tensor:
        """``||A x - y||^2 / 2 + lam TV_3(x)`` of the whole volume (a scalar)."""
        data = 0.5 * measurement.residual(x).pow(2).sum()
        return data + self.lam * gradient_3d(x, 1, self.z_weight).pow(2).sum(dim=(1, 2)).sqrt().sum()
