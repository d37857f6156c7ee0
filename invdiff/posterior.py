"""What every sampler returns: weighted posterior samples and the cost counters of the run.

Samples are laid out ``(B, N, *event_shape)``: ``N`` particles for each of ``B`` measured items, with
float64 log-weights ``(B, N)`` (zeros for samplers that do not weight). Every summary is per item.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor

from invdiff.particles import RESAMPLERS, effective_sample_size, gather_particles, normalized_weights
from invdiff.rng import BatchGenerator

__all__ = ["Diagnostics", "Posterior", "TokenPosterior"]


@dataclass
class Diagnostics:
    """Cost and health counters of one run.

    ``network_evals`` counts denoiser calls (each on all ``B * N`` particles at once);
    ``vjp_evals`` counts vector-Jacobian products through the denoiser; ``wall_time`` is seconds;
    ``ess_history`` holds the ``(B,)`` effective sample size after each step that reweights (before
    any resampling); ``resampled`` the ``(B,)`` mask of the items resampled at that step;
    ``exponent_history`` the ``(B,)`` likelihood exponent after each step of a tempered SMC run (empty
    for a run that does not temper).
    """

    network_evals: int = 0
    vjp_evals: int = 0
    wall_time: float = 0.0
    ess_history: list[Tensor] = field(default_factory=list)
    resampled: list[Tensor] = field(default_factory=list)
    exponent_history: list[Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class Posterior:
    """Weighted posterior samples.

    Attributes:
        samples: ``(B, N, *event_shape)``.
        log_weights: float64 ``(B, N)``; uniform (zeros) for samplers that do not weight.
        diagnostics: cost counters of the run.
    """

    samples: Tensor
    log_weights: Tensor
    diagnostics: Diagnostics = field(default_factory=Diagnostics)

    def __post_init__(self):
        if self.log_weights.shape != self.samples.shape[:2]:
            raise ValueError(f"log_weights {tuple(self.log_weights.shape)} must be (B, N) of samples "
                             f"{tuple(self.samples.shape)}")

    @property
    def weights(self) -> Tensor:
        """Normalised weights, float64 ``(B, N)``."""
        return normalized_weights(self.log_weights)

    @property
    def ess(self) -> Tensor:
        return effective_sample_size(self.log_weights)

    def _w(self) -> Tensor:
        w = self.weights.to(self.samples.dtype)
        return w.reshape(*w.shape, *([1] * (self.samples.dim() - 2)))

    @property
    def mean(self) -> Tensor:
        """Weighted posterior mean ``(B, *event_shape)``."""
        return (self._w() * self.samples).sum(1)

    @property
    def var(self) -> Tensor:
        """Weighted pixel-wise variance ``(B, *event_shape)`` (the biased, weights-normalised estimate)."""
        return (self._w() * (self.samples - self.mean.unsqueeze(1)) ** 2).sum(1)

    @property
    def std(self) -> Tensor:
        return self.var.sqrt()

    def reweighted(self, log_increment: Tensor) -> Posterior:
        """Multiply the weights by ``exp(log_increment)`` ``(B, N)`` (importance correction)."""
        return dataclasses.replace(self, log_weights=self.log_weights + log_increment.to(torch.float64))

    def resampled(self, generator: torch.Generator, method: str = "systematic") -> Posterior:
        """Equally weighted particles drawn from the weighted ones."""
        b, n = self.log_weights.shape
        rng = BatchGenerator.spawn(generator, b)
        idx = RESAMPLERS[method](self.log_weights, rng)
        flat = gather_particles(self.samples.reshape(b * n, *self.samples.shape[2:]), idx)
        return dataclasses.replace(self, samples=flat.reshape(self.samples.shape),
                                   log_weights=torch.zeros_like(self.log_weights))


@dataclass(frozen=True)
class TokenPosterior(Posterior):
    """A :class:`Posterior` of decoded images that also carries the token grids ``tokens`` ``(B, N, L)``
    they were decoded from (discrete token priors, :mod:`invdiff.samplers.aps`)."""

    tokens: Tensor | None = None
