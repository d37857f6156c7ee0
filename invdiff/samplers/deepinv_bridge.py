"""deepinv's diffusion solvers (DiffPIR, DDRM, DPS, ΠGDM) driven with an invdiff prior, returning a ``Posterior``.

deepinv's solvers assume images in ``[0, 1]`` (they work internally on ``2 u - 1``), a physics that
carries its own Gaussian noise model, and the global random generator. :class:`UnitRangeView`
restates an invdiff problem in that convention without changing it: with the prior's
``data_range = (lo, hi)`` and ``w = hi - lo``, ``u = (x - lo) / w`` and, for a linear ``A``,

    y_u = (y - A(lo 1)) / w,    sigma_u = sigma / w,    D_u(u, s) = (D(lo + w u, w s) - lo) / w,

so ``y_u = A u + sigma_u n`` exactly. The result is mapped back to data units. For the shipped priors
``2 u - 1`` is exactly their model space, so deepinv's ``[-1, 1]`` clipping clips where they were trained.

:class:`DeepinvSampler` runs one whole deepinv solve as a single step of the runner on all ``B * N``
particles at once, counting network evaluations through the prior. deepinv draws its noise from the
global generator over the whole batch; the step seeds it from the run's generator inside
:func:`~invdiff.rng.private_global_stream`, so runs repeat and the caller's generators (CPU and CUDA)
are untouched, but a particle's draws depend on the batch it runs in (unlike invdiff's own samplers).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import deepinv as dinv
import torch
from torch import Tensor

from invdiff.measurement import Measurement
from invdiff.priors.adapters import AsDeepinvDenoiser
from invdiff.priors.base import Denoiser, sigma_per_sample
from invdiff.rng import private_global_stream
from invdiff.samplers.base import Sampler, SamplerState, check_num_steps, extend_state, prior_sigmas

__all__ = ["DDRM", "DeepinvPiGDM", "DeepinvSampler", "DiffPIR", "UnitRangeView", "ddrm_supports"]

Algorithm = Literal["diffpir", "ddrm", "dps", "pigdm"]


class _UnitRangePrior(Denoiser):
    def __init__(self, prior: Denoiser, lo: float, width: float):
        self.prior, self.lo, self.width = prior, lo, width
        self.event_shape = tuple(prior.event_shape)
        self.data_range = (0.0, 1.0)

    def denoise(self, u: Tensor, sigma: float | Tensor) -> Tensor:
        s = sigma_per_sample(sigma, u) * self.width
        return (self.prior.denoise(self.lo + self.width * u, s) - self.lo) / self.width


class _DelegatingLinear(dinv.physics.LinearPhysics):
    """A linear measurement as a deepinv physics with a Gaussian noise model of its own; ``prox_l2`` is the
    operator's own (:meth:`Measurement.prox` with ``method="physics"``: deepinv's CG for operators without a
    closed form), or the measurement's exact solver where one is attached (deepinv's fast-override pattern)."""

    def __init__(self, measurement: Measurement):
        super().__init__(A=measurement.forward, A_adjoint=measurement.adjoint,
                         noise_model=dinv.physics.GaussianNoise(float(measurement.sigma[0])))
        self._measurement = [measurement]  # a list, so nothing is registered (or copied) as a child module

    def prox_l2(self, z, y, gamma, **kwargs):
        m = self._measurement[0]
        method = "auto" if m.solver is not None else "physics"
        return m.with_y(y).prox(z, gamma * float(m.sigma[0]) ** 2, method=method)


def _delegating_decomposable(measurement: Measurement) -> dinv.physics.DecomposablePhysics:
    """The measurement's SVD as a deepinv physics with its own noise model; the singular values are
    broadcast to one item's full spectral shape, as deepinv's DDRM indexes them with it."""
    svd, y = measurement.svd(), measurement.y
    spectral = svd.U_adjoint(y[:1])
    mask = svd.s.to(y.device).expand(1, *spectral.shape[1:])
    return dinv.physics.DecomposablePhysics(U=svd.U, U_adjoint=svd.U_adjoint, V=svd.V, V_adjoint=svd.V_adjoint,
                                            mask=mask, noise_model=dinv.physics.GaussianNoise(float(measurement.sigma[0])))


@dataclasses.dataclass(frozen=True)
class UnitRangeView:
    """A linear measurement and a prior restated on ``u = (x - lo) / width`` (module docstring)."""

    lo: float
    width: float
    prior: Denoiser
    physics: dinv.physics.LinearPhysics
    y: Tensor
    sigma: float

    @classmethod
    def of(cls, measurement: Measurement, prior: Denoiser, keep_svd: bool = False) -> UnitRangeView:
        """The view of ``measurement`` under ``prior``'s data range; ``keep_svd`` keeps the operator's SVD
        (for DDRM; deepinv's other solvers would take its complex singular values for real ones)."""
        if not measurement.is_linear:
            raise ValueError(f"deepinv's DiffPIR/DDRM need a linear operator; {measurement.operator_name} is not")
        if prior.data_range is None:
            raise ValueError("the prior has no data_range, so its [0, 1] view is undefined")
        sig = measurement.sigma
        if bool((sig != sig[0]).any()):
            raise ValueError(f"deepinv's solvers take one noise level per batch, got {sig.tolist()}")
        lo, hi = (float(v) for v in prior.data_range)
        view = measurement.rescaled(lo, hi - lo)
        physics = _delegating_decomposable(view) if keep_svd and view.is_decomposable else _DelegatingLinear(view)
        return cls(lo, hi - lo, _UnitRangePrior(prior, lo, hi - lo), physics, view.y, float(view.sigma[0]))

    def to_data(self, u: Tensor) -> Tensor:
        return self.lo + self.width * u


def ddrm_supports(measurement: Measurement) -> bool:
    """Whether deepinv's DDRM can run on ``measurement``: an SVD with real singular vectors (masking,
    single-coil MRI in real form); Fourier-diagonal operators such as :class:`CircularBlur` have complex ones."""
    if not measurement.is_decomposable:
        return False
    with torch.no_grad():
        return not measurement.svd().U_adjoint(measurement.y[:1]).is_complex()


@dataclasses.dataclass(frozen=True)
class DeepinvState(SamplerState):
    seed: int = 0


class DeepinvSampler(Sampler):
    """One of deepinv's diffusion solvers with an invdiff prior, as a one-step sampler.

    Args:
        algorithm: ``"diffpir"`` (Zhu et al. 2023; deepinv's ``DiffPIR``, linear operators, proximal
            data steps), ``"ddrm"`` (Kawar et al. 2022; ``DDRM``, operators with an SVD only) or
            ``"dps"`` (deepinv's ``DPS``, for the head-to-head comparison with :class:`~invdiff.samplers.DPS`)
            or ``"pigdm"`` (deepinv's ``PosteriorDiffusion`` with ``PiGDMDataFidelity``, clipped to the data
            range, on a variance-exploding SDE over the prior's noise range, ``num_steps`` Euler steps of one
            network evaluation and one VJP each: the peer of :class:`~invdiff.samplers.PiGDM`).
        num_steps: network evaluations (DDRM: noise levels; the prior's own schedule is used).
        exact_prox: DiffPIR only: its proximal data steps by the exact row-block solver where the operator has
            one (:func:`~invdiff.samplers.splitting.with_exact_solver`: Cartesian multi-coil MRI) instead of the
            physics' own ``prox_l2`` (deepinv's CG: at most 50 iterations, tolerance 1e-4). On 320 x 320,
            15-coil slices a CG prox cost 1-4 s per slice and differed from the exact one by up to 3e-3
            (relative), the exact one about 0.5 s after a one-off eigendecomposition (about 20 s per slice).
            ``False`` (the default) is deepinv's DiffPIR as it comes.
        **options: passed to the deepinv class: DiffPIR ``zeta`` and ``lambda_``; DDRM ``eta`` and
            ``etab``; DPS ``weight``, ``solver``, ``guidance``; ΠGDM ``weight`` (of the data term) and
            ``alpha`` (the reverse SDE's stochasticity, deepinv's default 0.25).
    """

    exact_solver_setting = "exact_prox"

    def __init__(self, algorithm: Algorithm, num_steps: int = 100, exact_prox: bool = False, **options):
        if algorithm not in ("diffpir", "ddrm", "dps", "pigdm"):
            raise ValueError(f"algorithm must be 'diffpir', 'ddrm', 'dps' or 'pigdm', got {algorithm!r}")
        if exact_prox and algorithm != "diffpir":
            raise ValueError(f"exact_prox applies to DiffPIR's proximal steps; {algorithm} takes none")
        self.algorithm, self.num_steps, self.options = algorithm, check_num_steps(num_steps, 2), options
        self.exact_prox = bool(exact_prox)

    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        if measurement is None:
            raise ValueError(f"{self.algorithm} needs a measurement")
        if self.algorithm == "ddrm" and not measurement.is_decomposable:
            raise ValueError(f"DDRM needs an operator with an SVD; {measurement.operator_name} has none")
        if self.algorithm == "ddrm" and not ddrm_supports(measurement):
            raise ValueError(f"deepinv's DDRM needs a real SVD; {measurement.operator_name}'s is complex")
        measurement = self.with_solver(measurement)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        state = self.initial_state(measurement, prior, n_particles, generator, num_steps=1,
                                   x_init=lambda rng, dtype: torch.zeros(measurement.batch_size, n_particles,
                                                                         *prior.event_shape, dtype=dtype))
        return extend_state(state, DeepinvState, measurement=measurement.expand(n_particles), seed=seed)


    def _solver(self, view: UnitRangeView, prior: Denoiser):
        denoiser = AsDeepinvDenoiser(view.prior)
        if self.algorithm == "diffpir":
            return dinv.sampling.DiffPIR(denoiser, dinv.optim.L2(), sigma=view.sigma, max_iter=self.num_steps,
                                         **self.options)
        if self.algorithm == "ddrm":
            sigmas = prior_sigmas(prior, self.num_steps)[:-1] / view.width
            return dinv.sampling.DDRM(denoiser, sigmas=sigmas.numpy(), **self.options)
        if self.algorithm == "pigdm":
            return self._pigdm(view, prior, denoiser)
        return dinv.sampling.DPS(denoiser, num_steps=self.num_steps, dtype=torch.float32, **self.options)

    def _pigdm(self, view: UnitRangeView, prior: Denoiser, denoiser) -> dinv.sampling.PosteriorDiffusion:
        from invdiff.samplers.splitting import prior_sigma_range

        low, high = (s / view.width for s in prior_sigma_range(prior))
        options = dict(self.options)
        sde = dinv.sampling.VarianceExplodingDiffusion(sigma_min=low, sigma_max=high, alpha=options.pop("alpha", 0.25),
                                                       dtype=torch.float32)
        solver = dinv.sampling.EulerSolver(timesteps=torch.linspace(1.0, 0.0, self.num_steps + 1), rng=torch.Generator())
        fidelity = dinv.sampling.PiGDMDataFidelity(clip=(0.0, 1.0), **options)
        return dinv.sampling.PosteriorDiffusion(data_fidelity=fidelity, denoiser=denoiser, sde=sde, solver=solver,
                                                dtype=torch.float32, minus_one_one=False)

    def step(self, state: DeepinvState) -> DeepinvState:
        view = UnitRangeView.of(state.measurement, state.prior, keep_svd=self.algorithm == "ddrm")
        solver = self._solver(view, state.prior.prior)
        if self.algorithm == "pigdm":
            with torch.enable_grad():
                u = solver(view.y, view.physics, x_init=tuple(state.x.shape), seed=state.seed % 2**31,
                           denoise_output=False)
            state.diagnostics.vjp_evals += self.num_steps
            return dataclasses.replace(state, x=view.to_data(u.detach()).to(state.x.dtype), step=1)
        with private_global_stream(state.seed, state.x.device):
            if self.algorithm == "dps":
                with torch.enable_grad():
                    u = solver(view.y, view.physics)
            else:
                u = solver(view.y, view.physics)
        if self.algorithm == "dps":
            state.diagnostics.vjp_evals += self.num_steps
        x = view.to_data(u.detach()).to(state.x.dtype)
        return dataclasses.replace(state, x=x, step=1)


class DiffPIR(DeepinvSampler):
    """deepinv's DiffPIR (Zhu et al. 2023) with an invdiff prior: ``DeepinvSampler("diffpir", ...)``."""

    def __init__(self, num_steps: int = 100, exact_prox: bool = False, **options):
        super().__init__("diffpir", num_steps, exact_prox, **options)


class DDRM(DeepinvSampler):
    """deepinv's DDRM (Kawar et al. 2022) with an invdiff prior: ``DeepinvSampler("ddrm", ...)``."""

    def __init__(self, num_steps: int = 100, **options):
        super().__init__("ddrm", num_steps, **options)


class DeepinvPiGDM(DeepinvSampler):
    """deepinv's ΠGDM (``PosteriorDiffusion`` + ``PiGDMDataFidelity``) with an invdiff prior:
    ``DeepinvSampler("pigdm", ...)``; the peer of :class:`~invdiff.samplers.PiGDM`."""

    def __init__(self, num_steps: int = 100, **options):
        super().__init__("pigdm", num_steps, **options)
