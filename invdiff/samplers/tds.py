"""The twisted diffusion sampler (TDS; Wu, Trippe, Naesseth, Blei & Cunningham, NeurIPS 2023).

Sequential Monte Carlo over the ancestral (DDPM) chain of the prior, steered by a *twisting function*
``t_sigma(x)`` that approximates ``log p(y | x_sigma)``. In EDM variables, from ``sigma`` to
``sigma' < sigma``, with the ancestral transition ``p(x' | x) = N(mu(x), c^2 I)``,
``mu = D + (sigma'^2 / sigma^2)(x - D)``, ``c^2 = sigma'^2 (1 - sigma'^2 / sigma^2)``:

* propose ``x' ~ N(mu + c^2 G, c^2 I)`` with ``G = grad_x t_sigma(x)`` (the twisted proposal);
* weight ``w' = w p(x' | x) exp(t_sigma'(x')) / (exp(t_sigma(x)) N(x'; mu + c^2 G, c^2))``, which is
  ``log w' = log w + t_sigma'(x') - t_sigma(x) - c G.z - c^2 |G|^2 / 2`` for ``x' = mu + c^2 G + c z``;
* the last step (``sigma' = 0``) returns ``D`` and replaces the twist by the exact likelihood ``l(D)``.

The weights are exact importance weights for any twist, so the weighted particles target the posterior
of the prior's discrete chain as the particle count grows; the twist decides how many particles that
takes. Two twists:

* ``"gaussian"`` (linear operators; the registry's setting for the Gaussian-mixture family):
  ``t_sigma(x) = log N(y; A D, s^2 I + r^2 A A^T)`` up to a constant, the likelihood of ``y`` if
  ``x0 | x_sigma`` were ``N(D(x, sigma), r^2 I)``;
  ``r^2 = sigma^2 c^2 / (sigma^2 + c^2)`` is that posterior variance for a prior of variance ``c^2`` per
  coordinate (ΠGDM's ``r_t``, Song et al. 2023), and ``c^2`` is the prior's own, estimated once per item at
  the first noise level by Tweedie's covariance ``Cov[x0 | x] = sigma^2 dD/dx`` with one Hutchinson probe
  per particle (one network evaluation and VJP more than the steps; refused when the estimate is not positive,
  as for the shipped image priors at their highest level, whose Jacobian there is not a covariance).
  ``G = J^T A^T (s^2 I + r^2 A A^T)^{-1} (y - A D)`` (:func:`~invdiff.samplers.splitting.pseudo_inverse_guidance`, as in :class:`~invdiff.samplers.PiGDM`). Found on the Gaussian-mixture suite:
  the plain twist ``l(D)`` ignores how uncertain ``D`` is at high noise, so its increments there reach
  thousands of nats, every run descends from one particle, and the unobserved coordinates keep the
  spread of that one lineage (docs/results/tds-spread).
* ``"tempered"`` (default): ``t_sigma(x) = kappa_sigma l(D(x, sigma))`` with
  ``kappa_sigma = s^2 / (s^2 + inflation * n * sigma^2)``, ``n = ||A||^2`` with ``operator_norm=True``
  (else 1); ``inflation = 0`` is the paper's plain twist. Works for nonlinear operators.

The initial weights are ``t_sigma_max(x)`` for ``x ~ N(offset, sigma_max^2)``. Each step costs one network
evaluation with one VJP (the twist's gradient), computed at the new particles and kept for the next step.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from invdiff.linalg import batch_dot
from invdiff.measurement import Measurement
from invdiff.particles import effective_sample_size
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import (Sampler, SamplerState, batch_chunks, check_num_steps, extend_state, resolve_sigmas,
                                   start_from_noise)
from invdiff.samplers.smc import adaptive_resample, denoise_and_grad, validate_resampling
from invdiff.samplers.splitting import per_item_norm_sq, pseudo_inverse_guidance
from invdiff.schedule import VPSchedule

__all__ = ["TDS", "TDSState", "TWISTS", "tweedie_variance"]

TWISTS = ("gaussian", "tempered")


def tweedie_variance(denoise, x: Tensor, sigma: float, probe: Tensor, chunk_size: int | None = None) -> Tensor:
    """Hutchinson's estimate of the mean posterior variance per coordinate, ``sigma^2 tr(dD/dx) / n``, per row
    ``(B,)``: ``sigma^2 <probe, J^T probe> / n`` for a Rademacher ``probe`` shaped like ``x`` (Tweedie: the
    covariance of ``x0 | x`` is ``sigma^2 dD/dx``). One network evaluation with one VJP."""
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for sl in batch_chunks(x.shape[0], chunk_size):
        with torch.enable_grad():
            xc = x[sl].detach().requires_grad_(True)
            (jt,) = torch.autograd.grad(denoise(xc, sigma), xc, grad_outputs=probe[sl])
        out[sl] = sigma**2 * batch_dot(probe[sl], jt).to(torch.float64) / probe[0].numel()
    return out


@dataclasses.dataclass(frozen=True)
class TDSState(SamplerState):
    """``measurement`` expanded to ``B * N`` particles; ``denoised``, ``twist`` ``(B*N,)`` and ``twist_grad``
    are ``D(x, sigma)``, ``t_sigma(x)`` and its gradient at the current particles; ``prior_variance``
    ``(B*N,)`` is the Gaussian twist's ``c^2``, one value per item."""

    sigmas: Tensor | None = None
    denoised: Tensor | None = None
    twist: Tensor | None = None
    twist_grad: Tensor | None = None
    norm_sq: Tensor | float = 1.0
    prior_variance: Tensor | None = None


class TDS(Sampler):
    """Twisted SMC with the ancestral chain of the prior (module docstring).

    Args:
        num_steps: steps, one network evaluation and one VJP each.
        twist: ``"gaussian"`` or ``"tempered"`` (module docstring).
        twist_inflation: ``inflation`` of the tempered twist (0: the plain likelihood of the denoised
            estimate, as in the paper's experiments); only with ``twist="tempered"``.
        operator_norm: multiply the inflation by ``||A||^2`` of each item (30 power iterations of
            ``A^T A`` at the start; linear operators only); only with ``twist="tempered"``.
        cg_iterations: the most CG iterations of the Gaussian twist's solve where it is not exact.
        resample_threshold: an item resamples when its ESS falls below this fraction of the particles.
        resampling: ``"systematic"`` or ``"multinomial"``.
        chunk_size: at most this many particles per network forward and backward pass.
        schedule, sigmas: noise levels as for :class:`~invdiff.samplers.DPS`.
    """

    def __init__(self, num_steps: int = 100, twist_inflation: float = 0.0, resample_threshold: float = 0.5,
                 resampling: str = "systematic", chunk_size: int | None = None, schedule: VPSchedule | None = None,
                 sigmas: Tensor | None = None, operator_norm: bool = False, twist: str = "tempered",
                 cg_iterations: int = 50):
        if twist not in TWISTS:
            raise ValueError(f"twist must be one of {TWISTS}, got {twist!r}")
        if not twist_inflation >= 0:
            raise ValueError(f"twist_inflation must be >= 0, got {twist_inflation}")
        if twist == "gaussian" and (twist_inflation or operator_norm):
            raise ValueError("twist_inflation and operator_norm belong to twist='tempered'; the Gaussian twist "
                             "takes its scale from the prior")
        if isinstance(cg_iterations, bool) or not isinstance(cg_iterations, int) or cg_iterations < 1:
            raise ValueError(f"cg_iterations must be an integer >= 1, got {cg_iterations!r}")
        self.twist, self.cg_iterations = twist, cg_iterations
        validate_resampling(resample_threshold, resampling)
        self.num_steps, self.twist_inflation = check_num_steps(num_steps), float(twist_inflation)
        self.resample_threshold, self.resampling, self.chunk_size = float(resample_threshold), resampling, chunk_size
        self.schedule, self._sigmas, self.operator_norm = schedule, sigmas, bool(operator_norm)

    def _norm_sq(self, measurement: Measurement, n_particles: int) -> Tensor | float:
        if not self.operator_norm:
            return 1.0
        if not measurement.is_linear:
            raise ValueError(f"TDS(operator_norm=True) needs a linear operator; {measurement.operator_name} is not")
        return per_item_norm_sq(measurement, n_particles)

    def _twist(self, state: SamplerState, m: Measurement, x: Tensor, sigma: float,
               norm_sq: Tensor | float, prior_variance: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        if self.twist == "gaussian":
            objective = self._gaussian_objective(m, sigma, prior_variance)
        else:
            kappa = m.sigma**2 / (m.sigma**2 + self.twist_inflation * norm_sq * sigma**2)

            def objective(x0: Tensor) -> Tensor:
                return kappa * m.log_likelihood(x0)
        out = denoise_and_grad(state.prior.prior.denoise, x, sigma, objective, self.chunk_size)
        state.diagnostics.network_evals += 1
        state.diagnostics.vjp_evals += 1
        return out

    def _gaussian_objective(self, m: Measurement, sigma: float, prior_variance: Tensor):
        """``x0 -> log N(y; A x0, s^2 I + r^2 A A^T)`` per row (up to a constant) whose value is exact and whose
        gradient ``A^T (s^2 I + r^2 A A^T)^{-1} (y - A x0)`` holds the solve constant (it does not depend
        on ``x0``), so one solve serves the value and the VJP."""
        r2 = sigma**2 * prior_variance / (sigma**2 + prior_variance)

        def objective(x0: Tensor) -> Tensor:
            base = x0.detach()
            direction, value = pseudo_inverse_guidance(m, base, r2, self.cg_iterations, value=True)
            return value + batch_dot(direction, x0 - base)
        return objective

    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        if measurement is None:
            raise ValueError("TDS needs a measurement")
        if self.twist == "gaussian" and not measurement.is_linear:
            raise ValueError(f"TDS(twist='gaussian') needs a linear operator; {measurement.operator_name} is not "
                             "(use twist='tempered')")
        sigmas = resolve_sigmas(prior, self.num_steps, self.schedule, self._sigmas)
        x_init = start_from_noise(prior, float(sigmas[0]), n_particles)

        state = self.initial_state(measurement, prior, n_particles, generator, num_steps=sigmas.numel() - 1,
                                   x_init=x_init, chunk_size=self.chunk_size)
        m = measurement.expand(n_particles)
        norm_sq = self._norm_sq(measurement, n_particles)
        variance = None
        if self.twist == "gaussian":
            probe = torch.sign(state.rng.randn_like(state.x, n_particles))
            rows = tweedie_variance(state.prior.prior.denoise, state.x, float(sigmas[0]), probe, self.chunk_size)
            state.diagnostics.network_evals += 1
            state.diagnostics.vjp_evals += 1
            per_item = rows.reshape(-1, n_particles).mean(1)
            if bool((per_item <= 0).any()):
                raise ValueError(
                    f"TDS(twist='gaussian'): the prior's variance estimated at sigma = {float(sigmas[0]):.4g} is "
                    f"{per_item.min().item():.3g} <= 0 for some item; Tweedie's covariance sigma^2 dD/dx of an exact "
                    "denoiser is positive semi-definite, so this denoiser's Jacobian is not one at that noise "
                    "(a trained network at its highest level: the Gaussian twist would become the plain "
                    "likelihood and its weights diverge); use twist='tempered'")
            variance = per_item.repeat_interleave(n_particles).to(m.sigma.device)
        denoised, twist, grad = self._twist(state, m, state.x, float(sigmas[0]), norm_sq, variance)
        return extend_state(state, TDSState, measurement=m, sigmas=sigmas, denoised=denoised, twist=twist,
                            twist_grad=grad, norm_sq=norm_sq, prior_variance=variance,
                            log_weights=twist.to(torch.float64).reshape(state.log_weights.shape))

    def with_measurement(self, state: TDSState, measurement: Measurement) -> TDSState:
        """The state for new data (an acquisition between steps): the particles stay, the twist is
        re-evaluated for ``measurement`` (one network evaluation and VJP) and the weights are multiplied by
        ``exp(t_new - t_old)``, so they target the twisted path of the new posterior."""
        if state.done:
            raise ValueError("the run is finished; there is no step left to use new data")
        m = measurement.expand(state.n_particles)
        sigma = float(state.sigmas[state.step])
        norm_sq = self._norm_sq(measurement, state.n_particles) if self.operator_norm else state.norm_sq
        d, twist, g = self._twist(state, m, state.x, sigma, norm_sq, state.prior_variance)
        log_w = state.log_weights + (twist - state.twist).to(torch.float64).reshape(state.log_weights.shape)
        return dataclasses.replace(state, measurement=m, denoised=d, twist=twist, twist_grad=g, norm_sq=norm_sq,
                                   log_weights=log_w)

    def step(self, state: TDSState) -> TDSState:
        i = state.step
        sigma, sigma_next = float(state.sigmas[i]), float(state.sigmas[i + 1])
        m, x, d, g = state.measurement, state.x, state.denoised, state.twist_grad
        shape = state.log_weights.shape
        if sigma_next == 0:
            final = m.log_likelihood(d).to(torch.float64) - state.twist.to(torch.float64)
            log_w = state.log_weights + final.reshape(shape)
            state.diagnostics.ess_history.append(effective_sample_size(log_w))
            return dataclasses.replace(state, x=d, log_weights=log_w, step=i + 1)
        ratio = sigma_next**2 / sigma**2
        c = sigma_next * math.sqrt(1.0 - ratio)
        z = state.rng.randn_like(x, state.n_particles)
        x_new = d + ratio * (x - d) + c**2 * g + c * z
        d_new, twist_new, g_new = self._twist(state, m, x_new, sigma_next, state.norm_sq, state.prior_variance)
        increment = (twist_new - state.twist).to(torch.float64) - c * batch_dot(g, z).to(torch.float64) \
            - 0.5 * c**2 * batch_dot(g, g).to(torch.float64)
        log_w = state.log_weights + increment.reshape(shape)
        log_w, kept = adaptive_resample(log_w, {"x": x_new, "denoised": d_new, "twist": twist_new, "grad": g_new},
                                        state.rng, self.resample_threshold, self.resampling, state.diagnostics)
        return dataclasses.replace(state, x=kept["x"], denoised=kept["denoised"], twist=kept["twist"],
                                   twist_grad=kept["grad"], log_weights=log_w, step=i + 1)
