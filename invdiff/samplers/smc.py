"""Shared pieces of the sequential Monte Carlo samplers: adaptive resampling, chunked network calls.

Particles are item-major ``(B * N, ...)`` with float64 log-weights ``(B, N)``. Everything is per item:
item ``i`` resamples when *its own* effective sample size falls below the threshold, from its own
random stream, so its particles never depend on its batch mates.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from invdiff.particles import RESAMPLERS, effective_sample_size, gather_particles
from invdiff.posterior import Diagnostics
from invdiff.rng import BatchGenerator
from invdiff.samplers.base import batch_chunks

__all__ = ["adaptive_exponent", "adaptive_resample", "conditional_ess", "denoise_and_grad", "validate_resampling"]


def validate_resampling(threshold: float, method: str) -> None:
    """Raise ``ValueError`` for an ESS-fraction threshold outside [0, 1] or an unknown method."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"resample_threshold is a fraction of the particle count in [0, 1], got {threshold}")
    if method not in RESAMPLERS:
        raise ValueError(f"resampling must be one of {sorted(RESAMPLERS)}, got {method!r}")


def adaptive_resample(log_weights: Tensor, tensors: dict[str, Tensor], rng: BatchGenerator, threshold: float,
                      method: str, diagnostics: Diagnostics) -> tuple[Tensor, dict[str, Tensor]]:
    """Resample the items whose ESS is below ``threshold * N``; the others are left as they are.

    ``tensors`` are per-particle ``(B * N, ...)`` tensors that travel with the particles (positions,
    cached denoised estimates, ...). Appends the pre-resampling ESS ``(B,)`` to
    ``diagnostics.ess_history`` and the ``(B,)`` resampled-or-not mask to ``diagnostics.resampled``.
    The uniforms are drawn for every item whether it resamples or not, so an item's stream advances
    the same way whatever its batch mates do. Returns new log-weights (zero for resampled items) and tensors.

    A particle whose log-weight is NaN gets weight zero (``-inf``: it is never drawn again);
    ``FloatingPointError`` when an item has no particle with a finite log-weight, or one at ``+inf``
    (its proposal or twist overflowed: the run could only return NaN).
    """
    b, n = log_weights.shape
    log_weights = torch.where(torch.isnan(log_weights), torch.full_like(log_weights, -torch.inf), log_weights)
    broken = ~torch.isfinite(log_weights).any(-1) | (log_weights == torch.inf).any(-1)
    if bool(broken.any()):
        step = len(diagnostics.ess_history)
        raise FloatingPointError(
            f"SMC weights diverged at step {step}: item(s) {torch.nonzero(broken).flatten().tolist()} have no particle "
            "with a finite log-weight (the proposal or the twist overflowed). On a sharp likelihood, temper the "
            "twist (TDS: twist_inflation > 0 with operator_norm=True, the registry's settings) or take more steps")
    ess = effective_sample_size(log_weights)
    diagnostics.ess_history.append(ess)
    do = ess < threshold * n
    diagnostics.resampled.append(do)
    idx = RESAMPLERS[method](log_weights, rng)
    if not bool(do.any()):
        return log_weights, tensors
    keep = torch.arange(n, device=idx.device).expand(b, n)
    idx = torch.where(do.unsqueeze(-1).to(idx.device), idx, keep)
    log_weights = torch.where(do.unsqueeze(-1), torch.zeros_like(log_weights), log_weights)
    return log_weights, {k: gather_particles(v, idx) for k, v in tensors.items()}


def conditional_ess(log_weights: Tensor, increment: Tensor) -> Tensor:
    """The conditional ESS of an incremental weight (Zhou, Johansen & Aston 2016, eq. 3.16):
    ``N (sum_i W_i v_i)^2 / sum_i W_i v_i^2`` per row, ``W`` the normalised current weights and ``v = exp(increment)``;
    ``(B, N)`` log-weights and log-increments, float64 ``(B,)`` in ``[1, N]``. With equal current weights it is
    the ESS of ``v``; it measures what the increment costs, whatever the current weights have already lost."""
    n = log_weights.shape[-1]
    lw = log_weights.to(torch.float64)
    lw = lw - torch.logsumexp(lw, -1, keepdim=True)
    inc = increment.to(torch.float64)
    return n * torch.exp(2 * torch.logsumexp(lw + inc, -1) - torch.logsumexp(lw + 2 * inc, -1))


def adaptive_exponent(log_weights: Tensor, increment: Tensor, target: float, iterations: int = 60) -> Tensor:
    """The exponent ``beta`` in ``[0, 1]`` per item at which the tempered increment ``beta * increment``
    keeps a conditional ESS (:func:`conditional_ess`) of at least ``target * N``: 1 where the whole increment
    does, else found by bisection (``beta = 0`` always does: its conditional ESS is ``N``), all items at once.

    The conditional ESS need not be monotone in ``beta``; bisection returns an exponent at which it is at
    least the target, within ``2^-iterations`` of where it crosses the target. ``(B, N)`` current
    log-weights and log-increments; returns float64 ``(B,)``.
    """
    n = log_weights.shape[-1]
    increment = increment.to(torch.float64)

    def ok(beta: Tensor) -> Tensor:
        return conditional_ess(log_weights, beta.unsqueeze(-1) * increment) >= target * n

    one = torch.ones(log_weights.shape[0], dtype=torch.float64, device=log_weights.device)
    lo, hi = torch.zeros_like(one), one.clone()
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        good = ok(mid)
        lo, hi = torch.where(good, mid, lo), torch.where(good, hi, mid)
    return torch.where(ok(one), one, lo)


def denoise_and_grad(denoise: Callable[[Tensor, float], Tensor], x: Tensor, sigma: float,
                     objective: Callable[[Tensor], Tensor], chunk_size: int | None = None,
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """``x0 = denoise(x, sigma)``, ``f = objective(x0)`` ``(B*N,)`` and ``grad_x f`` per particle.

    ``objective`` must be per sample (row ``i`` of its output depends on row ``i`` of its input only;
    every :class:`~invdiff.measurement.Measurement` likelihood is). With ``chunk_size`` the network's
    forward and backward pass run over ``chunk_size`` particles at a time, so only one chunk's graph
    is alive at once: the objective sees the whole batch, with the chunk's rows attached to the graph
    and the other rows as constants (their values do not enter the chunk's rows). ``denoise`` is
    called once per chunk; the caller counts the whole call as one network evaluation and one VJP.
    Returns detached ``(x0, f, grad)``.
    """
    x = x.detach()
    x0_all = x.clone()  # placeholder rows for chunks not yet computed: any value serves
    f_all = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    grad_all = torch.empty_like(x)
    for sl in batch_chunks(x.shape[0], chunk_size):
        with torch.enable_grad():
            xc = x[sl].requires_grad_(True)
            x0c = denoise(xc, sigma)
            full = torch.cat([x0_all[: sl.start], x0c, x0_all[sl.stop:]])
            fc = objective(full)[sl]
            (gc,) = torch.autograd.grad(fc.sum(), xc)
        x0_all[sl] = x0c.detach()
        f_all[sl] = fc.detach().to(f_all.dtype)
        grad_all[sl] = gc
    return x0_all, f_all, grad_all
