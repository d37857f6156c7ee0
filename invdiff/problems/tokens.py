"""A token prior on a problem's images: the phase that lifts its magnitudes, and its ceiling.

Token priors (:mod:`invdiff.priors.tokens`) model magnitudes. :func:`token_prior_for` lifts one to a
problem's unknowns with a fixed phase: for MRI, the phase of a CG-SENSE reconstruction (10
iterations) low-passed to ``width`` central frequencies per axis (:func:`smooth_phase`); zero for
real images. :func:`tokenizer_ceiling` scores the target's own tokens, decoded: no reconstruction
from this prior's tokens can beat it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from invdiff.metrics import fastmri_volume_metrics
from invdiff.operators import fft2c, ifft2c, to_complex
from invdiff.priors.tokens import ImageTokenPrior, PhaseLiftedTokenPrior
from invdiff.problems.base import Problem
from invdiff.problems.fastmri import cg_sense

__all__ = ["PHASE_WIDTH", "smooth_phase", "token_prior_for", "tokenizer_ceiling"]

PHASE_WIDTH = 48


def _hann(n: int, width: int) -> Tensor:
    """A length-``n`` window: a Hann taper over the central ``width`` entries, zero elsewhere."""
    width = min(width, n)
    win = torch.zeros(n, dtype=torch.float64)
    start = (n - width) // 2
    win[start:start + width] = torch.hann_window(width + 2, periodic=False, dtype=torch.float64)[1:-1]
    return win


def smooth_phase(image: Tensor, width: int) -> Tensor:
    """``(B, 2, H, W)`` complex images -> ``(B, H, W)`` phase of their low-pass: a separable Hann taper
    of ``width`` central frequencies per axis in k-space. For MRI, applied to a classical
    reconstruction (CG-SENSE), this is the smooth phase that phase-constrained reconstructions assume;
    the magnitude is left to the prior.

    (On the demo scan at 4x, the CG-SENSE (10 iterations) phase low-passed at width 48 with the
    30-iteration CG-SENSE magnitude leaves 3.3x that reconstruction's data residual; the phase of
    the calibration lines alone, 10 columns, leaves 40x.)"""
    if image.dim() != 4 or image.shape[1] != 2:
        raise ValueError(f"expected complex images (B, 2, H, W), got {tuple(image.shape)}")
    z = to_complex(image.detach())
    h, w = z.shape[-2:]
    taper = (_hann(h, width).unsqueeze(1) * _hann(w, width).unsqueeze(0)).to(z.real.dtype)
    return torch.angle(ifft2c(fft2c(z) * taper)).to(image.dtype)


def token_prior_for(problem: Problem, prior: ImageTokenPrior, width: int = PHASE_WIDTH) -> PhaseLiftedTokenPrior:
    """``prior`` lifted to ``problem``'s complex unknowns ``(B, 2, S, S)`` (module docstring)."""
    m = problem.measurement
    if problem.family == "mri":
        phase = smooth_phase(cg_sense(m, 10), width)
    else:
        phase = torch.zeros(m.batch_size, *prior.event_shape[1:])
    return prior.with_phase(phase)


def tokenizer_ceiling(problem: Problem, prior: ImageTokenPrior) -> dict[str, float]:
    """fastMRI metrics of the target tokenized and decoded by ``prior`` (in problem units, as the samplers see
    it: MRI targets are divided by the problem's ``scale``)."""
    scale = float(problem.info.get("scale", 1.0))
    target = torch.as_tensor(np.asarray(problem.target), dtype=torch.float32) / scale
    decoded = prior.reconstruct(target.unsqueeze(1))[:, 0].clamp_min(0)
    return fastmri_volume_metrics(problem.target, (scale * decoded).numpy().astype(np.float32))
