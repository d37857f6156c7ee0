"""The continuous prior contract, in the EDM convention.

A prior is a denoiser: for ``x = x0 + sigma * n``, ``n ~ N(0, I)``, ``x0 ~ p``,
``denoise(x, sigma)`` returns ``E[x0 | x]`` in data units. Tweedie's formula gives the score of the
smoothed density ``p_sigma`` from it: ``grad log p_sigma(x) = (denoise(x, sigma) - x) / sigma^2``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from invdiff.linalg import batch_view
from invdiff.schedule import VPSchedule


def sigma_per_sample(sigma: float | Tensor, x: Tensor) -> Tensor:
    """A noise level as a float64 ``(B,)`` tensor on ``x``'s device; must be > 0."""
    s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    if s.dim() == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or shape ({x.shape[0]},), got {tuple(s.shape)}")
    if bool((s <= 0).any()):
        raise ValueError("sigma must be > 0")
    return s


class Denoiser(ABC):
    """Minimum-mean-squared-error denoiser ``D(x, sigma) = E[x0 | x0 + sigma n = x]``.

    Attributes:
        event_shape: shape of one sample (without batch), e.g. ``(2, 128, 128)``.
        data_range: ``(low, high)`` of the data the prior was built for, or ``None``.
        offset, scale: the prior's model space, ``data = offset + scale * model`` (0 and 1 when it has none):
            samplers start from ``offset`` and scale a schedule's noise levels by ``scale``.
        schedule: the VP schedule the network was trained on, in model space, or ``None``.
    """

    event_shape: tuple[int, ...]
    data_range: tuple[float, float] | None = None
    offset: float = 0.0
    scale: float = 1.0
    schedule: VPSchedule | None = None

    @abstractmethod
    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """``E[x0 | x]`` for ``x`` of shape ``(B, *event_shape)``; ``sigma`` scalar or ``(B,)``."""

    def score(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """``grad_x log p_sigma(x) = (denoise(x, sigma) - x) / sigma^2`` (Tweedie)."""
        s = sigma_per_sample(sigma, x).to(x.dtype)
        return (self.denoise(x, sigma) - x) / batch_view(s, x) ** 2


class ChunkedDenoiser(Denoiser):
    """``prior`` applied to at most ``chunk_size`` items per network call, the pieces concatenated: the same
    result as one call (the networks act per item), with the peak memory of ``chunk_size`` items. What a
    volume solved as one problem (all its slices in one batch) runs its prior through."""

    def __init__(self, prior: Denoiser, chunk_size: int):
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        self.prior, self.chunk_size = prior, chunk_size
        self.event_shape = tuple(prior.event_shape)
        self.data_range, self.offset, self.scale, self.schedule = prior.data_range, prior.offset, prior.scale, prior.schedule
        self.pixel_size_mm = getattr(prior, "pixel_size_mm", None)

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        if x.shape[0] <= self.chunk_size:
            return self.prior.denoise(x, sigma)
        s = sigma_per_sample(sigma, x)
        return torch.cat([self.prior.denoise(x[i : i + self.chunk_size], s[i : i + self.chunk_size])
                          for i in range(0, x.shape[0], self.chunk_size)])
