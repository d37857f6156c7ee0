"""The sampler protocol and its runner.

A sampler is a step kernel (sigpy's Alg/App split): ::

    state = sampler.init(measurement, prior, n_particles, generator)
    while not state.done:
        state = sampler.step(state)
        state = between_steps(sampler, state)      # optional: an acquisition policy, a monitor
    posterior = sampler.result(state)

:func:`run` is the one driver: progress bar, wall time, and the ``between_steps`` hook (a
:class:`StepHook`, e.g. active subsampling, :class:`invdiff.active.ActiveSubsampling`). Particles are
laid out item-major: state tensors are ``(B * N, ...)``, and the
:class:`~invdiff.posterior.Posterior` reshapes them to ``(B, N, ...)``.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from invdiff.measurement import Measurement
from invdiff.normal_solvers import GRAM_MAX_MEASUREMENTS
from invdiff.posterior import Diagnostics, Posterior
from invdiff.priors.base import ChunkedDenoiser, Denoiser
from invdiff.rng import BatchGenerator
from invdiff.schedule import VPSchedule


def batch_chunks(n: int, chunk_size: int | None) -> list[slice]:
    """Slices covering ``range(n)`` in pieces of at most ``chunk_size`` (one piece for ``None``)."""
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    step = chunk_size or max(n, 1)
    return [slice(a, min(a + step, n)) for a in range(0, n, step)]


class CountingDenoiser(Denoiser):
    """Wraps a prior and counts its calls into a :class:`Diagnostics` (the prior is untouched).

    With ``chunk_size``, a call on many particles runs the network on ``chunk_size`` of them at a time
    (bounding its peak memory, per-item noise levels included: :class:`~invdiff.priors.base.ChunkedDenoiser`)
    and still counts as one network evaluation.
    """

    def __init__(self, prior: Denoiser, diagnostics: Diagnostics, chunk_size: int | None = None):
        self.prior = prior
        self.diagnostics = diagnostics
        self._network = prior if chunk_size is None else ChunkedDenoiser(prior, chunk_size)
        self.event_shape = tuple(prior.event_shape)
        self.data_range = prior.data_range
        self.offset, self.scale, self.schedule = prior.offset, prior.scale, prior.schedule

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        self.diagnostics.network_evals += 1
        return self._network.denoise(x, sigma)


@dataclass(frozen=True)
class SamplerState:
    """Everything a step needs. Samplers extend it with their own fields.

    ``x``: particles ``(B * N, *event_shape)``; ``log_weights``: float64 ``(B, N)``.
    """

    x: Tensor
    log_weights: Tensor
    step: int
    num_steps: int
    measurement: Measurement | None
    prior: CountingDenoiser | None
    rng: BatchGenerator
    diagnostics: Diagnostics

    @property
    def done(self) -> bool:
        return self.step >= self.num_steps

    @property
    def batch_size(self) -> int:
        return int(self.log_weights.shape[0])

    @property
    def n_particles(self) -> int:
        return int(self.log_weights.shape[1])


#: memory cap of the exact solver :func:`with_exact_solver` attaches (bytes)
EXACT_SOLVE_BYTES = 2 * 2**30


def with_exact_solver(m: Measurement, gram: bool = False) -> Measurement:
    """``m`` with the exact row-block solver of Cartesian multi-coil MRI attached
    (:class:`~invdiff.normal_solvers.RowBlockSolver`) when its memory fits :data:`EXACT_SOLVE_BYTES`
    (4 slices of 128 x 128: about 160 MB; 0.62 GB per 320 x 320 slice, so up to 3 of them); other operators keep their
    own solves (closed form where decomposable, CG otherwise). On the 128 x 128 MRI task a ΠGDM or PnP-DM
    solve by CG took 47-260 products with ``A^T A``; the row-block solve is two batched matrix products.

    ``gram=True`` also attaches the measurement-space Gram solver of an operator with at most
    :data:`~invdiff.normal_solvers.GRAM_MAX_MEASUREMENTS` measurements per item (sparse-view CT)."""
    return m.with_normal_solver(max_measurements=GRAM_MAX_MEASUREMENTS if gram else 0,
                                max_bytes=EXACT_SOLVE_BYTES)


def prior_scale(prior: Denoiser) -> float:
    """The prior's model-space scale (data = offset + scale * model space); 1 for priors without one."""
    return float(prior.scale)


def prior_sigmas(prior: Denoiser, num_steps: int, schedule: VPSchedule | None = None) -> Tensor:
    """Decreasing noise levels in data units for ``num_steps`` steps, with a final 0: the trailing-spaced
    levels of ``schedule`` (default: the prior's own, else DDPM linear), which live in the prior's model
    space, times :func:`prior_scale`."""
    schedule = schedule or prior.schedule or VPSchedule.linear()
    return schedule.sampling_sigmas(num_steps) * prior_scale(prior)


def resolve_sigmas(prior: Denoiser, num_steps: int, schedule: VPSchedule | None = None,
                   sigmas: Tensor | None = None) -> Tensor:
    """A sampler's noise levels in data units: explicit ``sigmas`` (checked), else :func:`prior_sigmas`.

    Raises ``ValueError`` unless they are strictly decreasing and end with 0.
    """
    s = prior_sigmas(prior, num_steps, schedule) if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float64)
    if s.dim() != 1 or s.numel() < 2 or s[-1] != 0 or bool((s[:-1] <= s[1:]).any()):
        raise ValueError("sigmas must be strictly decreasing and end with 0")
    return s


def start_from_noise(prior: Denoiser, sigma: float, n_particles: int) -> Callable[[BatchGenerator, torch.dtype], Tensor]:
    """The ``x_init`` of :meth:`Sampler.initial_state` for a reverse diffusion started at noise level ``sigma``
    (data units): ``offset + sigma z`` per particle, ``z ~ N(0, I)`` from each item's stream."""
    offset, sigma = float(prior.offset), float(sigma)

    def x_init(rng: BatchGenerator, dtype: torch.dtype) -> Tensor:
        return offset + sigma * rng.randn(n_particles, *prior.event_shape, dtype=dtype)

    return x_init


def extend_state(state: SamplerState, cls: type[SamplerState], **changes) -> SamplerState:
    """``state`` as an instance of a sampler's own ``SamplerState`` subclass, with ``changes``."""
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(SamplerState)}
    return cls(**{**fields, **changes})


def check_num_steps(num_steps, least: int = 1) -> int:
    """``num_steps`` as an int, or ``ValueError`` when it is not an integer ``>= least`` (bools refused)."""
    whole = isinstance(num_steps, int) or (isinstance(num_steps, float) and num_steps.is_integer())
    if isinstance(num_steps, bool) or not whole:
        raise ValueError(f"num_steps must be an integer >= {least}, got {num_steps!r}")
    if num_steps < least:
        raise ValueError(f"num_steps must be >= {least}, got {num_steps}")
    return int(num_steps)


class Sampler(ABC):
    """A posterior (or prior) sampler as an explicit step kernel over :class:`SamplerState`.

    ``uses_prior`` is False for samplers that ignore the prior (the classical baselines): :func:`run`
    refuses ``prior=None`` for the others.
    """

    uses_prior: bool = True
    #: name of the setting that switches the exact normal-equation solver on when true or nonzero
    #: (``exact_solve``, ``exact_prox``, APS's ``residual_std``); None for samplers that never attach one
    exact_solver_setting: str | None = None
    #: whether the exact solver may also be the measurement-space Gram solver (:func:`with_exact_solver`)
    exact_solver_gram: bool = False

    @property
    def attaches_exact_solver(self) -> bool:
        """Whether the sampler attaches an exact normal-equation solver to its measurement (whose memory a
        slice group holds: :mod:`invdiff.reconstruct.budget`): the value of :attr:`exact_solver_setting`."""
        return self.exact_solver_setting is not None and bool(getattr(self, self.exact_solver_setting))

    def with_solver(self, measurement: Measurement) -> Measurement:
        """``measurement`` with the exact solver attached where the sampler attaches one
        (:func:`with_exact_solver`), else itself; called at ``init`` and by
        :meth:`with_measurement`."""
        if not self.attaches_exact_solver:
            return measurement
        return with_exact_solver(measurement, gram=self.exact_solver_gram)

    @abstractmethod
    def init(self, measurement: Measurement | None, prior: Denoiser, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        """Initial state for ``n_particles`` per measured item."""

    @abstractmethod
    def step(self, state: SamplerState) -> SamplerState:
        """One step; returns a new state (the input state is not modified)."""

    def result(self, state: SamplerState) -> Posterior:
        b, n = state.log_weights.shape
        return Posterior(state.x.reshape(b, n, *state.x.shape[1:]), state.log_weights, state.diagnostics)

    def with_measurement(self, state: SamplerState, measurement: Measurement) -> SamplerState:
        """The state with new data between steps (an acquisition): ``measurement`` has the batch of the
        items; by default it replaces the state's measurement, expanded to the particles. Samplers whose
        state depends on the data in other ways (weights, cached twists) override this."""
        if state.done:
            raise ValueError("the run is finished; there is no step left to use new data")
        return dataclasses.replace(state, measurement=self.with_solver(measurement).expand(state.n_particles))

    @staticmethod
    def initial_state(measurement: Measurement | None, prior: Denoiser, n_particles: int,
                      generator: torch.Generator, num_steps: int, x_init: Callable[[BatchGenerator, torch.dtype], Tensor],
                      dtype: torch.dtype = torch.float32, chunk_size: int | None = None) -> SamplerState:
        """Shared set-up: batch size, per-item random streams, the counting prior, and particles.

        ``x_init(rng, dtype)`` returns ``(B, N, *event_shape)``; without a measurement the batch
        size is 1 and the dtype is ``dtype``, with one it is ``y``'s real dtype and device.
        ``prior`` may be ``None`` for samplers that use none (the classical baselines). ``chunk_size``
        bounds the particles per network call (see :class:`CountingDenoiser`).
        """
        if not isinstance(n_particles, int) or isinstance(n_particles, bool) or n_particles < 1:
            raise ValueError(f"n_particles must be a positive int, got {n_particles!r}")
        check_num_steps(num_steps)
        if measurement is None:
            b, device = 1, torch.device("cpu")
        else:
            b, device, dtype = measurement.batch_size, measurement.y.device, measurement.y.real.dtype
            if (prior is not None and measurement.x_shape is not None
                    and tuple(measurement.x_shape[1:]) != tuple(prior.event_shape)):
                raise ValueError(f"the prior's event shape {tuple(prior.event_shape)} does not match "
                                 f"the measurement's unknown {tuple(measurement.x_shape[1:])}")
        rng = BatchGenerator.spawn(generator, b, device)
        diagnostics = Diagnostics()
        x = x_init(rng, dtype)
        return SamplerState(
            x=x.reshape(b * n_particles, *x.shape[2:]),
            log_weights=torch.zeros(b, n_particles, dtype=torch.float64, device=device),
            step=0, num_steps=num_steps, measurement=measurement,
            prior=None if prior is None else CountingDenoiser(prior, diagnostics, chunk_size), rng=rng, diagnostics=diagnostics,
        )


class StepHook(Protocol):
    """What :func:`run` calls after every step that is not the last: ``hook(sampler, state)`` returns the
    state to continue from (the same one, or one built with ``sampler.with_measurement``)."""

    def __call__(self, sampler: Sampler, state: SamplerState) -> SamplerState: ...


@runtime_checkable
class DenoisedEstimate(Protocol):
    """A sampler state that carries its particles' denoised estimates ``x0_hat`` ``(B * N, ...)`` from the
    last step (:class:`~invdiff.samplers.DPS`, :class:`~invdiff.samplers.TDS`): what a policy scores."""

    denoised: Tensor | None


def run(sampler: Sampler, measurement: Measurement | None, prior: Denoiser, *, n_particles: int = 1,
        generator: torch.Generator, progress: bool = True, between_steps: StepHook | None = None,
        callback: Callable[[SamplerState], None] | None = None,
        resume: Callable[[SamplerState], SamplerState] | None = None) -> Posterior:
    """Drive ``sampler`` to completion and return its :class:`~invdiff.posterior.Posterior` (with wall time).

    ``between_steps(sampler, state)`` runs after every step but the last and returns the state to go on
    from (module docstring); ``callback(state)`` observes the state after every step (and after the
    hook); ``resume(state)`` maps the initial state to the one to start from (a checkpoint's,
    :mod:`invdiff.samplers.checkpoint`). ``progress=False`` silences the progress bar. Steps run under
    ``torch.no_grad()``: a step that differentiates (through the denoiser, say) enables gradients itself,
    so no graph is kept across steps.
    """
    if isinstance(sampler, type):
        raise TypeError(f"run needs a sampler instance, got the class {sampler.__name__}; "
                        f"construct it first, e.g. {sampler.__name__}(num_steps=100)")
    if not isinstance(sampler, Sampler):
        raise TypeError(f"run needs an invdiff Sampler, got {type(sampler).__name__}")
    if prior is None and sampler.uses_prior:
        raise ValueError(f"{type(sampler).__name__} samples a diffusion prior: pass one (invdiff.priors.open_prior), "
                         "not None")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), "
                        f"got {type(generator).__name__}")
    start = time.perf_counter()
    state = sampler.init(measurement, prior, n_particles, generator)
    if resume is not None:
        state = resume(state)
    with torch.no_grad(), tqdm(total=state.num_steps, initial=state.step, desc=type(sampler).__name__,
                               disable=not progress, leave=False) as bar:
        while not state.done:
            state = sampler.step(state)
            bar.update(1)
            if between_steps is not None and not state.done:
                state = between_steps(sampler, state)
            if callback is not None:
                callback(state)
    posterior = sampler.result(state)
    posterior.diagnostics.wall_time = time.perf_counter() - start
    return posterior
