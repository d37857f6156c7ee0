"""Active subsampling (ADS; Nolan, Stevens, van Nierop & van Sloun, TMLR 2025): choose measurements
while sampling the posterior, as a policy that runs between a sampler's steps.

:class:`ActiveSubsampling` is a :class:`~invdiff.samplers.base.StepHook` for
:func:`invdiff.samplers.run` (``between_steps=policy``); it works with any particle sampler whose
state carries the particles' denoised estimates (:class:`~invdiff.samplers.base.DenoisedEstimate`:
:class:`~invdiff.samplers.DPS`, :class:`~invdiff.samplers.TDS`). At the steps an
:class:`AcquisitionPlan` spreads over a window, it

1. splits the *full* measurement the particles predict, ``A_full(x0_hat_i)``, into candidates
   (k-space columns, pixels: :mod:`invdiff.active.candidates`),
2. scores each candidate not yet acquired by the entropy of the particles' predictions
   (:func:`invdiff.active.entropy.mixture_entropy_scores`, weighted for SMC samplers),
3. acquires the best ``per_acquisition`` per item from the :class:`Oracle` (retrospective fully
   sampled data), and hands the sampler a new :class:`~invdiff.measurement.Measurement` built with
   ``with_mask`` — never a mutated one — through ``sampler.with_measurement(state, m)`` (TDS
   re-evaluates its twist and weights there).

``policy="random"`` draws the new candidates uniformly instead (a control at equal budget);
``policy="oracle"`` acquires where the particles' weighted mean prediction is farthest from the oracle's
data — it reads the answer, so it is not a method but the bound a policy that only sees the particles
could reach with the same sampler and schedule (the greedy oracle of active-acquisition studies).
:func:`run_active` is the one-call form: the policy, :func:`~invdiff.samplers.run`, and an
:class:`ActiveResult` (the posterior, the final mask, and the order and step of every acquisition).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from invdiff.active.candidates import Candidates, candidates_for
from invdiff.active.entropy import (auto_width, gaussian_gain_scores, mixture_entropy_scores, pairwise_sq_distances,
                                   predicted_moments)
from invdiff.measurement import Measurement
from invdiff.particles import normalized_weights
from invdiff.posterior import Posterior
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import DenoisedEstimate, Sampler, SamplerState, run

__all__ = ["AcquisitionPlan", "ActiveResult", "ActiveSubsampling", "Oracle", "POLICIES", "budget_spacing", "run_active"]

POLICIES = ("entropy", "gaussian", "oracle", "random")


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


def budget_spacing(plan: AcquisitionPlan, fraction: float, kind: str = "columns") -> int:
    """The ``min_spacing`` of :class:`ActiveSubsampling` as a ``fraction`` of the spacing the plan's new
    candidates would have if spread evenly over the free ones: ``ceil(fraction * free / new)`` columns
    (``kind="columns"``) or ``ceil(fraction * sqrt(free / new))`` pixels (``"pixels"``), at least 1.
    At 8x on a 128-column scan with 10 centre lines (6 new lines over 118 free columns) ``fraction=0.25``
    gives 5 columns; at 4x (22 new lines) 2."""
    if fraction < 0 or kind not in ("columns", "pixels"):
        raise ValueError(f"need fraction >= 0 and kind 'columns' or 'pixels', got {fraction}, {kind!r}")
    allowed = plan.initial.shape[-1] if plan.allowed is None else int(plan.allowed.sum())
    free = allowed - (plan.budget - plan.new)
    if plan.new == 0:
        return 1
    ratio = free / plan.new if kind == "columns" else math.sqrt(free / plan.new)
    return max(1, math.ceil(fraction * ratio))


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
    scoring; ``widths`` the kernel width used at each acquisition ``(B,)``; ``measurement`` the final one;
    ``records`` what a ``record=True`` policy kept (:attr:`ActiveSubsampling.records`), else empty."""

    posterior: Posterior
    acquired: Tensor
    order: Tensor
    steps: list[int]
    policy_seconds: float
    widths: list[Tensor]
    measurement: Measurement
    records: list[dict] = field(default_factory=list)


class ActiveSubsampling:
    """The acquisition policy of the module docstring, for one run (it records what it acquires).

    Args:
        template: supplies the operator (coil maps, image size) and the noise level; its own mask and
            data are replaced by ``plan.initial`` and the oracle's data.
        oracle: the fully sampled data acquisitions read from.
        plan: what to acquire, and when.
        width: the kernel standard deviation per real entry of a candidate, or ``"auto"``
            (:func:`invdiff.active.entropy.auto_width`, at least the noise level).
        policy: ``"entropy"`` (the mixture entropy score), ``"gaussian"`` (the Gaussian information gain,
            :func:`invdiff.active.entropy.gaussian_gain_scores`, at the measurement's noise level; ``width``
            is not used), ``"oracle"`` (the module docstring's bound: reads the oracle's data) or ``"random"``.
        generator: the random policy's draws.
        variance_scale: ``(K,)`` a factor on each candidate's predicted variance before the ``"entropy"``
            and ``"gaussian"`` scores (the particles' deviations from their mean scaled by its square root):
            a calibration fitted on validation scans (:func:`invdiff.active.calibration.fit_column_scale`).
        min_spacing: a new candidate is chosen at least this far (in columns; in pixels, Chebyshev) from
            every measured one while any such candidate is left (1: no constraint). Neighbouring k-space
            columns carry overlapping information through the smooth coil maps, which a few particles do not
            represent; :func:`budget_spacing` sets it from the line budget.
        record: keep, at each acquisition, the particles' predicted variance of every candidate, the squared
            error of their mean prediction against the oracle and the candidates measured (``(B, K)`` each,
            in :attr:`records`): what :func:`invdiff.active.calibration.fit_records` fits a
            ``variance_scale`` on (on validation scans, never on the scan it is then used for).

    :attr:`measurement` is the measurement to start the sampler on (the initial candidates).
    """

    def __init__(self, template: Measurement, oracle: Oracle, plan: AcquisitionPlan, *, width: float | str = "auto",
                 policy: str = "entropy", generator: torch.Generator | None = None,
                 variance_scale: Tensor | None = None, min_spacing: int = 1, record: bool = False):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if policy == "random" and generator is None:
            raise ValueError("the random policy needs a generator")
        self.candidates = candidates_for(template)
        b = template.batch_size
        if plan.initial.shape[-1] != self.candidates.count:
            raise ValueError(f"plan has {plan.initial.shape[-1]} candidates, the operator {self.candidates.count}")
        acquired = plan.initial.expand(b, -1).clone() if plan.initial.dim() == 1 else plan.initial.clone()
        if acquired.shape[0] != b:
            raise ValueError(f"plan.initial is for {acquired.shape[0]} items, the measurement has {b}")
        self.template, self.oracle, self.plan = template, oracle, plan
        if variance_scale is not None:
            if policy not in ("entropy", "gaussian"):
                raise ValueError(f"variance_scale applies to the 'entropy' and 'gaussian' policies, not {policy!r}")
            if variance_scale.shape != (self.candidates.count,) or not bool((variance_scale > 0).all()):
                low = f", smallest {float(variance_scale.min()):g}" if variance_scale.numel() else ""
                raise ValueError(f"variance_scale must be ({self.candidates.count},) positive factors, one per "
                                 f"candidate, got shape {tuple(variance_scale.shape)}{low}")
            variance_scale = variance_scale.detach().to(torch.float64)
        self.width, self.policy, self.generator = width, policy, generator
        if min_spacing < 1:
            raise ValueError(f"min_spacing must be >= 1 candidate, got {min_spacing}")
        self.variance_scale, self.min_spacing = variance_scale, int(min_spacing)
        self.record, self.records = bool(record), []
        self.acquired = acquired
        self.measurement = self._measured(acquired)
        self.order: list[Tensor] = []
        self.steps: list[int] = []
        self.widths: list[Tensor] = []
        self.policy_seconds = 0.0
        self._schedule: dict[int, int] | None = None
        self._full: Measurement | None = None

    def _measured(self, acquired: Tensor) -> Measurement:
        return self.template.with_mask(self.candidates.mask(acquired), y=self.oracle.measure(self.candidates, acquired))

    def __call__(self, sampler: Sampler, state: SamplerState) -> SamplerState:
        if self._schedule is None:
            self._schedule = self.plan.schedule(state.num_steps)
            full = self.template.with_mask(self.candidates.mask(torch.ones_like(self.acquired)))
            self._full = full.expand(state.n_particles)
        count = self._schedule.get(state.step, 0)
        if not count:
            return state
        t0 = time.perf_counter()
        blocked = self.acquired if self.plan.allowed is None else self.acquired | ~self.plan.allowed.to(self.acquired.device)
        chosen, w = self._choose(state, blocked, count)
        self.policy_seconds += time.perf_counter() - t0
        self.acquired = self.acquired.scatter(1, chosen, True)
        self.order.append(chosen)
        self.steps += [state.step] * count
        self.widths.append(w)
        self.measurement = self._measured(self.acquired)
        return sampler.with_measurement(state, self.measurement)

    def _choose(self, state: SamplerState, blocked: Tensor, count: int) -> tuple[Tensor, Tensor]:
        """``(B, count)`` new candidates (never a ``blocked`` one) and the kernel width used."""
        b = blocked.shape[0]
        if self.policy != "random" or self.record:
            if not isinstance(state, DenoisedEstimate) or state.denoised is None:
                raise ValueError(f"{type(state).__name__} carries no denoised estimate for the policy to score")
            pred = self.candidates.split(self._full.forward(state.denoised), b)  # (B, N, K, D)
            weights = normalized_weights(state.log_weights)
        if self.policy == "random":
            scores, w = torch.rand(blocked.shape, generator=self.generator, dtype=torch.float64), torch.zeros(b)
        else:
            scores, w = self._scores(pred, weights)
        if self.record:
            self.records.append({"step": state.step, "variance": predicted_moments(pred, weights)[1],
                                 "error": self.prediction_error(pred, weights), "measured": blocked.clone()})
        return self._best(scores, blocked, count), w

    def _best(self, scores: Tensor, blocked: Tensor, count: int) -> Tensor:
        """``(B, count)`` the best-scoring candidates that are not ``blocked`` and, while any such is left,
        at least :attr:`min_spacing` from every measured or newly chosen one (chosen greedily)."""
        scores = scores.masked_fill(blocked, -math.inf)
        if self.min_spacing == 1:
            return scores.topk(count, dim=1).indices
        measured, picks = self.acquired.clone(), []
        for _ in range(count):
            out = blocked | self.candidates.near(measured, self.min_spacing)
            crowded = (~out).sum(1, keepdim=True) == 0  # no spaced candidate left: only the spacing gives way
            out = torch.where(crowded, blocked | measured, out)
            pick = scores.masked_fill(out, -math.inf).argmax(1, keepdim=True)
            measured = measured.scatter(1, pick, True)
            picks.append(pick)
        return torch.cat(picks, dim=1)

    def prediction_error(self, pred: Tensor, weights: Tensor) -> Tensor:
        """``(B, K)`` squared error of the particles' weighted mean prediction of each candidate against
        the oracle's data (the ``"oracle"`` policy's score)."""
        truth = self.candidates.split(self.oracle.y_full, pred.shape[0])[:, 0].to(torch.float64)  # (B, K, D)
        return ((predicted_moments(pred, weights)[0] - truth) ** 2).sum(-1)

    def _scores(self, pred: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, K)`` scores of the particles' predictions ``(B, N, K, D)`` and the width ``(B,)`` used
        (the kernel width; the noise level for ``"gaussian"``; zero for ``"oracle"``)."""
        b = pred.shape[0]
        if self.policy == "oracle":
            return self.prediction_error(pred, weights), torch.zeros(b, dtype=torch.float64)
        if self.variance_scale is not None:
            mean = predicted_moments(pred, weights)[0].unsqueeze(1)
            pred = mean + (pred.to(torch.float64) - mean) * self.variance_scale.to(pred.device).sqrt()[:, None]
        if self.policy == "gaussian":
            noise = self._full.sigma.reshape(b, -1)[:, 0].to(torch.float64)
            return gaussian_gain_scores(pred, noise, weights), noise
        if self.width == "auto":
            w = auto_width(pairwise_sq_distances(pred), floor=float(self._full.sigma.max()))
        else:
            w = torch.full((b,), float(self.width), dtype=torch.float64)
        return mixture_entropy_scores(pred, w, weights), w

    def result(self, posterior: Posterior) -> ActiveResult:
        """The run's :class:`ActiveResult` from its posterior."""
        b = self.acquired.shape[0]
        order = torch.cat(self.order, dim=1) if self.order else torch.zeros(b, 0, dtype=torch.long)
        return ActiveResult(posterior, self.acquired, order, self.steps, self.policy_seconds, self.widths,
                            self.measurement, self.records)


def run_active(sampler: Sampler, measurement: Measurement, prior: Denoiser, oracle: Oracle, plan: AcquisitionPlan,
               *, n_particles: int, generator: torch.Generator, width: float | str = "auto",
               policy: str = "entropy", variance_scale: Tensor | None = None, min_spacing: int = 1,
               record: bool = False, progress: bool = True) -> ActiveResult:
    """Sample while acquiring: :class:`ActiveSubsampling` (see its arguments) run by
    :func:`invdiff.samplers.run`; ``generator`` drives both the sampler and the random policy."""
    active = ActiveSubsampling(measurement, oracle, plan, width=width, policy=policy, generator=generator,
                               variance_scale=variance_scale, min_spacing=min_spacing, record=record)
    posterior = run(sampler, active.measurement, prior, n_particles=n_particles, generator=generator,
                    progress=progress, between_steps=active)
    return active.result(posterior)
