"""Active subsampling (ADS; Nolan, Stevens, van Nierop & van Sloun, TMLR 2025): choose measurements
while sampling the posterior.

:func:`run_active` drives any particle sampler whose state carries the particles' denoised estimates
(``state.denoised``: :class:`~invdiff.samplers.DPS`, :class:`~invdiff.samplers.TDS`). Between its
steps, at the steps an :class:`AcquisitionPlan` spreads over a window, the policy

1. splits the *full* measurement the particles predict, ``A_full(x0_hat_i)``, into candidates
   (k-space columns, pixels: :mod:`invdiff.active.candidates`),
2. scores each candidate not yet acquired by the entropy of the particles' predictions
   (:func:`invdiff.active.entropy.mixture_entropy_scores`, weighted for SMC samplers),
3. acquires the best ``per_acquisition`` per item from the :class:`Oracle` (retrospective fully
   sampled data), and hands the sampler a new :class:`~invdiff.measurement.Measurement` built with
   ``with_mask`` — never a mutated one. Samplers with ``with_measurement(state, m)`` (TDS: its twist
   and weights depend on the data) are told through it.

The result holds the posterior, the final mask, and the order and step of every acquisition.
``policy="random"`` draws the new candidates uniformly instead (a control at equal budget).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from invdiff.active.candidates import Candidates, candidates_for
from invdiff.active.entropy import auto_width, mixture_entropy_scores, pairwise_sq_distances
from invdiff.measurement import Measurement
from invdiff.particles import normalized_weights
from invdiff.posterior import Posterior
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import Sampler, SamplerState

__all__ = ["AcquisitionPlan", "ActiveResult", "Oracle", "run_active"]


@dataclass(frozen=True)
class AcquisitionPlan:
    """What to acquire and when.

    Attributes:
        initial: ``(K,)`` or ``(B, K)`` bool, the candidates measured before sampling starts (e.g.
            the centre k-space lines); the same number for every item.
        budget: candidates measured per item at the end, initial ones included.
        per_acquisition: candidates acquired at each acquisition step.
        window: the acquisitions are spread evenly over these fractions of the sampler's steps
            (at least step 1, so the particles have a denoised estimate).
        allowed: ``(K,)`` bool, the candidates that can be acquired at all (default: every one; a
            fastMRI file's unacquired edge columns are not).
    """

    initial: Tensor
    budget: int
    per_acquisition: int = 1
    window: tuple[float, float] = (0.0, 0.75)
    allowed: Tensor | None = None

    def __post_init__(self):
        if self.initial.dtype != torch.bool:
            raise ValueError(f"initial must be a bool mask, got {self.initial.dtype}")
        counts = self.initial.reshape(-1, self.initial.shape[-1]).sum(-1)
        if not bool((counts == counts[0]).all()):
            raise ValueError(f"every item must start with as many candidates; got {counts.tolist()}")
        if not int(counts[0]) <= self.budget <= self.initial.shape[-1]:
            raise ValueError(f"budget {self.budget} must lie between the {int(counts[0])} initial candidates "
                             f"and the {self.initial.shape[-1]} candidates")
        if self.allowed is not None and int(self.allowed.sum()) < self.budget:
            raise ValueError(f"budget {self.budget} exceeds the {int(self.allowed.sum())} allowed candidates")
        if self.per_acquisition < 1 or not 0.0 <= self.window[0] <= self.window[1] <= 1.0:
            raise ValueError(f"need per_acquisition >= 1 and 0 <= window[0] <= window[1] <= 1, got "
                             f"{self.per_acquisition}, {self.window}")

    @property
    def new(self) -> int:
        return self.budget - int(self.initial.reshape(-1, self.initial.shape[-1])[0].sum())

    def schedule(self, num_steps: int) -> dict[int, int]:
        """``{step: candidates to acquire after that many sampler steps}``, summing to :attr:`new`."""
        if self.new == 0:
            return {}
        n_acq = math.ceil(self.new / self.per_acquisition)
        lo = max(1, round(self.window[0] * num_steps))
        hi = max(lo, min(num_steps - 1, round(self.window[1] * num_steps)))
        out: dict[int, int] = {}
        for k in range(n_acq):
            step = lo + round(k * (hi - lo) / max(1, n_acq - 1))
            out[step] = out.get(step, 0) + min(self.per_acquisition, self.new - k * self.per_acquisition)
        return out


class Oracle:
    """Retrospective acquisition from fully sampled data ``y_full`` ``(B, ...)`` in the operator's layout
    and the problem's units: acquiring candidates returns ``y_full`` on them and zero elsewhere."""

    def __init__(self, y_full: Tensor):
        self.y_full = y_full.detach()

    def measure(self, candidates: Candidates, acquired: Tensor) -> Tensor:
        return candidates.select(self.y_full, acquired)


@dataclass(frozen=True)
class ActiveResult:
    """``posterior``; ``acquired`` ``(B, K)`` bool, the final mask; ``order`` ``(B, new)`` the candidates in
    the order acquired; ``steps`` the sampler step of each acquisition; ``policy_seconds`` the time spent
    scoring; ``widths`` the kernel width used at each acquisition ``(B,)``."""

    posterior: Posterior
    acquired: Tensor
    order: Tensor
    steps: list[int]
    policy_seconds: float
    widths: list[Tensor]
    measurement: Measurement


def _choose(state: SamplerState, full: Measurement, cands: Candidates, blocked: Tensor, count: int,
            width: float | str, policy: str, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(B, count)`` new candidates (never a ``blocked`` one) and the kernel width used."""
    b = blocked.shape[0]
    if policy == "random":
        keys = torch.rand(blocked.shape, generator=generator, dtype=torch.float64)
        keys[blocked] = -1.0
        return keys.topk(count, dim=1).indices, torch.zeros(b)
    denoised = getattr(state, "denoised", None)
    if denoised is None:
        raise ValueError(f"{type(state).__name__} carries no denoised estimate for the policy to score")
    pred = cands.split(full.physics.A(denoised), b)  # (B, N, K, D)
    weights = normalized_weights(state.log_weights)
    if width == "auto":
        w = auto_width(pairwise_sq_distances(pred), floor=float(full.sigma.max()))
    else:
        w = torch.full((b,), float(width), dtype=torch.float64)
    scores = mixture_entropy_scores(pred, w, weights)
    scores[blocked] = -math.inf
    return scores.topk(count, dim=1).indices, w


def run_active(sampler: Sampler, measurement: Measurement, prior: Denoiser, oracle: Oracle, plan: AcquisitionPlan,
               *, n_particles: int, generator: torch.Generator, width: float | str = "auto",
               policy: str = "entropy", progress: bool = True) -> ActiveResult:
    """Sample while acquiring (module docstring).

    ``measurement`` supplies the operator (coil maps, image size) and the noise level; its own mask and
    data are replaced by ``plan.initial`` and the oracle's data. ``width``: the kernel standard deviation
    per real entry of a candidate, or ``"auto"`` (:func:`invdiff.active.entropy.auto_width`, at least the
    noise level).
    """
    if policy not in ("entropy", "random"):
        raise ValueError(f"policy must be 'entropy' or 'random', got {policy!r}")
    cands = candidates_for(measurement.physics)
    b = measurement.batch_size
    if plan.initial.shape[-1] != cands.count:
        raise ValueError(f"plan has {plan.initial.shape[-1]} candidates, the operator {cands.count}")
    acquired = plan.initial.expand(b, -1).clone() if plan.initial.dim() == 1 else plan.initial.clone()
    if acquired.shape[0] != b:
        raise ValueError(f"plan.initial is for {acquired.shape[0]} items, the measurement has {b}")
    start = time.perf_counter()
    m = measurement.with_mask(cands.mask(acquired), y=oracle.measure(cands, acquired))
    full = measurement.with_mask(cands.mask(torch.ones_like(acquired))).expand(n_particles)
    state = sampler.init(m, prior, n_particles, generator)
    schedule = plan.schedule(state.num_steps)
    order, steps, widths, policy_seconds = [], [], [], 0.0
    with torch.no_grad(), tqdm(total=state.num_steps, desc=f"ADS/{type(sampler).__name__}", disable=not progress,
                               leave=False) as bar:
        while not state.done:
            state = sampler.step(state)
            bar.update(1)
            count = schedule.get(state.step, 0)
            if count and not state.done:
                t0 = time.perf_counter()
                blocked = acquired if plan.allowed is None else acquired | ~plan.allowed.to(acquired.device)
                chosen, w = _choose(state, full, cands, blocked, count, width, policy, generator)
                policy_seconds += time.perf_counter() - t0
                acquired = acquired.scatter(1, chosen, True)
                order.append(chosen)
                steps += [state.step] * count
                widths.append(w)
                m = measurement.with_mask(cands.mask(acquired), y=oracle.measure(cands, acquired))
                if hasattr(sampler, "with_measurement"):
                    state = sampler.with_measurement(state, m)
                else:
                    state = dataclasses.replace(state, measurement=m.expand(n_particles))
    posterior = sampler.result(state)
    posterior.diagnostics.wall_time = time.perf_counter() - start
    order_t = torch.cat(order, dim=1) if order else torch.zeros(b, 0, dtype=torch.long)
    return ActiveResult(posterior, acquired, order_t, steps, policy_seconds, widths, m)
