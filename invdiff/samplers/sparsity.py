"""ℓ1-wavelet regularised least squares (compressed sensing) as a sampler: the baseline of fastMRI's
and sigpy's tables (sigpy's ``L1WaveletRecon``, deepinv's ``WaveletPrior``).

:class:`L1Wavelet` minimises

    ||A x - y||^2 / 2 + lam sum_k |(W x)_k|

with ``W`` the orthonormal periodic Daubechies transform of :mod:`invdiff.operators.wavelet` and
``|.|`` the magnitude over the channels (a complex image's two channels share a coefficient's
magnitude, as sigpy's complex ℓ1), by FISTA (Beck & Teboulle 2009): with ``v`` the extrapolated point,
``x_{k+1} = W^T soft(W (v - t A^T (A v - y)), t lam)`` and ``t = 1 / ||A||^2`` (power iteration, 5 %
margin), ``v = x_{k+1} + (s_k - 1) / s_{k+1} (x_{k+1} - x_k)``. Every coefficient is penalised,
the coarse approximation included, as in sigpy.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import Tensor

from invdiff.linalg import batch_view
from invdiff.measurement import Measurement
from invdiff.operators.wavelet import WaveletTransform
from invdiff.priors.base import Denoiser
from invdiff.samplers.base import SamplerState
from invdiff.samplers.classical import DeterministicState, _Deterministic, _needs_linear

__all__ = ["L1Wavelet", "soft_threshold"]


def soft_threshold(c: Tensor, threshold: Tensor | float) -> Tensor:
    """Shrink the magnitude over dim 1 (channels) of ``c`` ``(B, C, ...)`` by ``threshold`` (``(B,)`` or scalar)."""
    mag = c.pow(2).sum(dim=1, keepdim=True).sqrt()
    t = batch_view(threshold, c) if isinstance(threshold, Tensor) else threshold
    return c * torch.clamp(1 - t / mag.clamp_min(1e-30), min=0.0)


@dataclasses.dataclass(frozen=True)
class FISTAState(DeterministicState):
    """The extrapolated point ``v``, the momentum scalar ``s``, the step ``t`` (``(B,)``) and the wavelet
    transform fitted to the image size (built by ``init``, so a checkpoint need not hold it)."""

    rebuilt_fields: ClassVar[tuple[str, ...]] = ("transform",)
    v: Tensor | None = None
    s: float = 1.0
    t: Tensor | None = None
    transform: WaveletTransform | None = None


class L1Wavelet(_Deterministic):
    """ℓ1-wavelet least squares by FISTA (module docstring).

    Args:
        lam: regularisation weight, in units of ``y^2 / x`` as :class:`~invdiff.samplers.classical.TotalVariation`'s.
        iterations: FISTA iterations (one ``A^T A`` and one wavelet transform pair each).
        wavelet: ``"db4"`` (default, sigpy's), ``"db2"`` or ``"haar"``.
        levels: decomposition levels, at most what the image size allows (fewer are used then).
    """

    def __init__(self, lam: float, iterations: int = 100, wavelet: str = "db4", levels: int = 4):
        if lam < 0 or iterations < 1 or levels < 1:
            raise ValueError(f"need lam >= 0, iterations >= 1 and levels >= 1, got {lam}, {iterations}, {levels}")
        WaveletTransform(wavelet, levels)  # checks the name
        self.lam, self.iterations, self.wavelet, self.levels = float(lam), iterations, wavelet, levels

    def _transform(self, shape: tuple[int, int]) -> WaveletTransform:
        """The transform with as many of ``levels`` as an image of ``shape`` allows."""
        levels = min(self.levels, WaveletTransform.max_levels(shape))
        if levels < 1:
            raise ValueError(f"L1Wavelet needs even image sides, got {shape}")
        return WaveletTransform(self.wavelet, levels)

    def init(self, measurement: Measurement | None, prior: Denoiser | None, n_particles: int,
             generator: torch.Generator) -> SamplerState:
        m = _needs_linear(measurement, "L1Wavelet")
        aty = m.adjoint(m.y)
        if aty.dim() < 3:
            raise ValueError(f"L1Wavelet needs images (B, C, H, W), got unknowns of shape {tuple(aty.shape)}")
        transform = self._transform(tuple(aty.shape[-2:]))
        state = self._state(m, prior, n_particles, generator, self.iterations, torch.zeros_like(aty), FISTAState)
        start = torch.randn(aty.shape, generator=torch.Generator().manual_seed(0), dtype=aty.dtype).to(aty.device)
        t = 1.0 / (1.05 * m.operator_norm_sq(30, start))
        return dataclasses.replace(state, v=torch.zeros_like(aty), s=1.0, t=t,
                                   transform=transform)

    def step(self, state: FISTAState) -> FISTAState:
        m, w = state.measurement, state.transform
        t = state.t
        z = state.v - batch_view(t, state.v) * m.adjoint(m.residual(state.v).neg())
        x_new = w.inverse(soft_threshold(w.forward(z), t * self.lam))
        s_new = (1 + math.sqrt(1 + 4 * state.s**2)) / 2
        v = x_new + ((state.s - 1) / s_new) * (x_new - state.x)
        return dataclasses.replace(state, x=x_new, v=v, s=s_new, step=state.step + 1)

    def objective(self, measurement: Measurement, x: Tensor) -> Tensor:
        """``||A x - y||^2 / 2 + lam ||W x||_1`` per sample, ``(B,)``."""
        transform = self._transform(tuple(x.shape[-2:]))
        data = 0.5 * measurement.residual(x).pow(2).flatten(1).sum(1)
        l1 = transform.forward(x).pow(2).sum(dim=1).sqrt().flatten(1).sum(1)
        return data + self.lam * l1
