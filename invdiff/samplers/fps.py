"""Filtering posterior sampling (FPS-SMC; Dou & Song, ICLR 2024, "Diffusion posterior sampling for linear
inverse problem solving: a filtering perspective"): a particle filter whose observations are a diffused
copy of the data, so that no step needs the network's Jacobian and every proposal is an exact Gaussian.

In EDM variables (``x_sigma = x0 + sigma e``) the measurement is diffused with the same kernel in
measurement space: ``y_sigma = A x_sigma + n = y + sigma A e``. FPS draws one such path per item,
backwards from ``y_sigma_max = y + sigma_max A e`` to ``y_0 = y``, with the Gaussian bridge of the forward
process (the ancestral kernel with ``y`` as the clean end)::

    y_sigma' = y + (sigma'^2 / sigma^2) (y_sigma - y) + c A e',   c^2 = sigma'^2 (1 - sigma'^2 / sigma^2)

and treats each ``y_sigma`` as an observation of ``x_sigma`` with the data's noise,
``p(y_sigma | x_sigma) = N(A x_sigma, s^2 I)``. From ``sigma`` to ``sigma'``, with the prior's ancestral
transition ``p(x' | x) = N(mu(x), c^2 I)``, ``mu = D + (sigma'^2 / sigma^2)(x - D)``:

* weight each particle by its predictive likelihood (the auxiliary particle filter's look-ahead; FPS eq. 13)
  ``log w += log N(y_sigma'; A mu, c^2 A A^T + s^2 I)``, and resample when the ESS falls below the threshold;
* move it by the exact conditional ``x' ~ N(x'; mu, c^2 I) N(y_sigma'; A x', s^2 I)``
  (:func:`~invdiff.samplers.splitting.gaussian_likelihood_sample`: exact for decomposable operators and with
  the row-block solver of multi-coil MRI, CG otherwise).

At ``sigma' = 0`` the path has reached ``y``, ``c = 0`` and the move is the denoised estimate ``D``, weighted by
``N(y; A D, s^2 I)`` (the paper's last step returns ``D`` unweighted; the weight keeps the filter's target).
Each step costs one network evaluation and no VJP; the weights involve only measurement-space residuals, so
they stay flat at high noise (``c^2 A A^T`` dominates) where a twist through the denoiser's Jacobian
(:class:`~invdiff.samplers.TDS`) is least reliable. The particles initially are an exact draw of
``N(x; offset, sigma_max^2 I) N(y_sigma_max; A x, s^2 I)``, the prior at ``sigma_max`` being that Gaussian.

Not exact: the observations ``y_sigma`` share the one noise ``n`` of the data (in the forward process
``y_sigma - A x_sigma = n`` at every level, so the path fixes ``A (x_sigma' - x_sigma)`` exactly), which the
filter counts as a fresh noise at each level. The error grows with the number of steps: on the
Gaussian-mixture suite (docs/results/gmm-fidelity-fps, 1000 particles) the sliced Wasserstein test passes
on 2 of 6 problems at 200 steps and on none at 1000 (d8-m1: mean error 0.04 at 200, 0.58 at 1000 of the
posterior's spread). The filter of the exact relation, in which each particle carries the noise its first
draw implies (``y_sigma_max - A x``) and every later move is conditioned on ``A x' = y_sigma' - n_i`` (the path's
increments without noise, up to a 1e-3 jitter), was tried and is worse: on the contract's 2-d Gaussian at
2000 particles and 100 steps its ESS fell to 1 and the mean error was 1.0-1.4 over seeds 0-2, since at
low noise the ancestral transition's discretisation error dwarfs the transition's own spread ``c``.

Adaptive tempering (``tempering=tau``), after the SMC literature's remedy for weight degeneracy (Jasra et al.
2011, "Inference for Lévy-driven stochastic volatility models via adaptive sequential Monte Carlo"; Del Moral,
Doucet & Jasra 2012): each step's predictive weight is raised to its own exponent ``beta_k`` in ``[0, 1]``, the
largest whose conditional ESS (Zhou, Johansen & Aston 2016: the increment's cost given the current weights) is
``tau N`` or more (:func:`~invdiff.samplers.smc.adaptive_exponent`); resampling then follows
``resample_threshold`` as without tempering. (Tempering to the total ESS instead, with ``tau`` at the
resampling threshold, deadlocks: the ESS sits at the threshold, nothing resamples and every later exponent
is 0.) The output is then ``q_K prod_k w_k^beta_k`` (``q_K``: the moves' path density), between the moves
alone (``beta = 0``, every particle equally weighted) and FPS's target (``beta = 1``): a heuristic that trades
the weights' correction for live particles, not a posterior. ``temper_final=True`` takes the last step's
weight (``N(y; A D, s^2 I)``) at exponent 1. ``Diagnostics.exponent_history`` records ``beta`` per step. The
consistent form, a non-decreasing exponent on the accumulated weight (targets ``q_k W_k^lam_k``), does nothing
here: FPS's first weights are flat (ESS N at the first levels), so its exponent reaches 1 at the first step
and can never fall again.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from invdiff.linalg import batch_dot
from invdiff.measurement import Measurement
from invdiff.particles import effective_sample_size
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import (Sampler, SamplerState, check_num_steps, extend_state, resolve_sigmas)
from invdiff.samplers.smc import adaptive_exponent, adaptive_resample, validate_resampling
from invdiff.samplers.splitting import gaussian_likelihood_sample, pseudo_inverse_guidance
from invdiff.schedule import VPSchedule

__all__ = ["FPS", "FPSState"]


@dataclasses.dataclass(frozen=True)
class FPSState(SamplerState):
    """``measurement``: the data expanded to the ``B * N`` particles; ``y_path``: the diffused observation at
    the current level, one per item ``(B, ...)``; ``items``: the data, one per item (the bridge's ``A e``);
    ``sigmas``: the levels, ending at 0."""

    rebuilt_fields: ClassVar[tuple[str, ...]] = ("items",)
    items: Measurement | None = None
    sigmas: Tensor | None = None
    y_path: Tensor | None = None


class FPS(Sampler):
    """FPS-SMC for linear Gaussian measurements (module docstring).

    Args:
        num_steps: steps, one network evaluation each (no VJP).
        resample_threshold: an item resamples when its ESS falls below this fraction of the particles
            (the paper resamples at every step: 1.0).
        resampling: ``"systematic"`` or ``"multinomial"``.
        exact_solve: the moves' Gaussian draws use the exact row-block solver where the operator has one
            (:func:`~invdiff.samplers.splitting.with_exact_solver`).
        cg_iterations: the most CG iterations of a weight's solve where it is not exact.
        tempering: ``None`` (FPS's weights) or the conditional-ESS fraction in (0, 1] that adaptive
            tempering keeps at each step (module docstring).
        temper_final: with tempering, the last step's weight is taken at exponent 1.
        schedule, sigmas: noise levels as for :class:`~invdiff.samplers.DPS`.
    """

    exact_solver_setting = "exact_solve"

    def __init__(self, num_steps: int = 100, resample_threshold: float = 0.5, resampling: str = "systematic",
                 exact_solve: bool = True, cg_iterations: int = 100, tempering: float | None = None,
                 temper_final: bool = False, schedule: VPSchedule | None = None, sigmas: Tensor | None = None):
        validate_resampling(resample_threshold, resampling)
        if tempering is not None and (isinstance(tempering, bool) or not 0.0 < float(tempering) <= 1.0):
            raise ValueError(f"tempering is a conditional-ESS fraction in (0, 1] or None, got {tempering!r}")
        self.tempering = None if tempering is None else float(tempering)
        self.temper_final = bool(temper_final)
        if isinstance(cg_iterations, bool) or not isinstance(cg_iterations, int) or cg_iterations < 1:
            raise ValueError(f"cg_iterations must be an integer >= 1, got {cg_iterations!r}")
        self.num_steps = check_num_steps(num_steps)
        self.resample_threshold, self.resampling = float(resample_threshold), resampling
        self.exact_solve, self.cg_iterations = bool(exact_solve), cg_iterations
        self.schedule, self._sigmas = schedule, sigmas

    def _prepared(self, measurement: Measurement | None) -> Measurement:
        if measurement is None or not measurement.is_linear:
            raise ValueError("FPS needs a linear measurement: its moves are exact Gaussian draws")
        return self.with_solver(measurement)

    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        measurement = self._prepared(measurement)
        sigmas = resolve_sigmas(prior, self.num_steps, self.schedule, self._sigmas)
        sigma0 = float(sigmas[0])
        offset = float(prior.offset)

        def x_init(rng, dtype):
            return torch.full((measurement.batch_size, n_particles, *prior.event_shape), offset, dtype=dtype,
                              device=measurement.y.device)

        state = self.initial_state(measurement, prior, n_particles, generator, num_steps=sigmas.numel() - 1,
                                   x_init=x_init)
        e = state.rng.randn(*prior.event_shape, dtype=state.x.dtype)
        y_path = measurement.y + sigma0 * measurement.forward(e)
        m = measurement.expand(n_particles)
        x = gaussian_likelihood_sample(self._observed(m, y_path, n_particles), state.x, sigma0**2, state.rng,
                                       n_particles)
        return extend_state(state, FPSState, x=x, measurement=m, items=measurement, sigmas=sigmas, y_path=y_path)

    @staticmethod
    def _observed(m: Measurement, y_path: Tensor, n_particles: int) -> Measurement:
        return m.with_y(y_path.repeat_interleave(n_particles, dim=0))

    def with_measurement(self, state: FPSState, measurement: Measurement) -> FPSState:
        """New data between steps: the observation path restarts from the new data at the current level
        (a fresh bridge noise), and the particles keep their weights."""
        if state.done:
            raise ValueError("the run is finished; there is no step left to use new data")
        measurement = self._prepared(measurement)
        sigma = float(state.sigmas[state.step])
        e = state.rng.randn(*state.x.shape[1:], dtype=state.x.dtype)
        return dataclasses.replace(state, measurement=measurement.expand(state.n_particles), items=measurement,
                                   y_path=measurement.y + sigma * measurement.forward(e))

    def _log_predictive(self, m: Measurement, mu: Tensor, c2: float, n: int, items: Measurement) -> Tensor:
        """``log N(y; A mu, c2 A A^T + s^2 I)`` per particle ``(B*N,)``, up to a constant per item.

        Expanded about the item's mean particle ``m0`` (``d = mu - m0``, ``S = c2 A A^T + s^2 I``), the exact
        quadratic ``<g, d> - <d, A^T S^-1 A d> / 2`` with ``g = A^T S^-1 (y - A m0)``: both terms are solves
        with :meth:`Measurement.solve_regularised` (``g`` once per item, on ``items``: the same data unexpanded).
        The direct form ``r^T S^-1 r`` subtracts two numbers that
        agree to ``s^2 / (c2 ||A||^2)`` (1e-9 at the first levels of the MRI task), below float32's precision.
        """
        b = mu.shape[0] // n
        grouped = mu.reshape(b, n, *mu.shape[1:])
        ref = grouped.mean(1)
        g, _ = pseudo_inverse_guidance(items, ref, c2, self.cg_iterations)
        g = g.repeat_interleave(n, dim=0)
        d = mu - ref.repeat_interleave(n, dim=0)
        h = m.solve_regularised(m.forward(d), c2, tol=1e-6, max_iter=self.cg_iterations) / c2
        return batch_dot(g, d) - 0.5 * batch_dot(d, h)

    def step(self, state: FPSState) -> FPSState:
        i = state.step
        sigma, sigma_next = float(state.sigmas[i]), float(state.sigmas[i + 1])
        m, x, n = state.measurement, state.x, state.n_particles
        y = state.items.y
        d = state.prior.denoise(x, sigma)
        ratio = sigma_next**2 / sigma**2
        c2 = sigma_next**2 * (1.0 - ratio)
        if sigma_next > 0:
            e = state.rng.randn(*x.shape[1:], dtype=x.dtype)
            y_next = y + ratio * (state.y_path - y) + c2**0.5 * state.items.forward(e)
        else:
            y_next = y
        observed = self._observed(m, y_next, n)
        mu = d + ratio * (x - d)
        if c2 > 0:
            log_pred = self._log_predictive(observed, mu, c2, n, state.items.with_y(y_next))
        else:
            log_pred = observed.log_likelihood(mu)
        increment = log_pred.to(torch.float64).reshape(state.log_weights.shape)
        if self.tempering is None:
            log_w = state.log_weights + increment
        else:
            beta = (torch.ones_like(state.log_weights[:, 0]) if sigma_next == 0 and self.temper_final
                    else adaptive_exponent(state.log_weights, increment, self.tempering))
            log_w = state.log_weights + beta.unsqueeze(-1) * increment
            state.diagnostics.exponent_history.append(beta)
        if sigma_next == 0:
            state.diagnostics.ess_history.append(effective_sample_size(log_w))
            return dataclasses.replace(state, x=mu, log_weights=log_w, y_path=y_next, step=i + 1)
        log_w, kept = adaptive_resample(log_w, {"mu": mu}, state.rng, self.resample_threshold, self.resampling,
                                        state.diagnostics)
        x_next = gaussian_likelihood_sample(observed, kept["mu"], c2, state.rng, n)
        return dataclasses.replace(state, x=x_next, log_weights=log_w, y_path=y_next, step=i + 1)
