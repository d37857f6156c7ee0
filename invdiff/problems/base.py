"""The one object every solver is handed: :class:`Problem`.

A problem is a :class:`~invdiff.measurement.Measurement` (operator, data and noise level, in the
problem's units), what a reconstruction is scored against, and how to get there from the unknowns:

* ``to_image`` maps unknowns ``(B, C, H, W)`` (or ``(B, d)`` vectors) to the ``(B, h, w)`` images
  that are scored and written, in the units of ``target`` (MRI: magnitudes in the file's units);
* ``baseline`` is the classical reconstruction shipped with the problem (zero-filled RSS, FBP, the
  adjoint), named by ``baseline_name``;
* ``family`` picks the sampler defaults (:mod:`invdiff.problems.defaults`): ``mri``, ``ct``, ``image``
  or ``gmm``;
* ``prior`` is the prior it is solved with: a shipped prior's name or a ``prior.pt`` path, or, for
  exact-posterior problems, the prior itself; ``exact`` is then the closed-form posterior.

``reconstruct``, ``benchmark``, active subsampling and the scripts all build problems through this
package, so a task means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from invdiff.measurement import Measurement
from invdiff.metrics import fastmri_volume_metrics
from invdiff.priors import Denoiser, GaussianMixture

__all__ = ["FAMILIES", "Problem", "channel_norm"]

#: the sampler-defaults families (:mod:`invdiff.problems.defaults`)
FAMILIES = ("mri", "ct", "image", "gmm")


def channel_norm(x: Tensor) -> np.ndarray:
    """``(B, C, H, W)`` -> ``(B, H, W)`` float32: the norm over channels (the magnitude of a complex image,
    the value of a real one)."""
    return x.norm(dim=1).detach().cpu().numpy().astype(np.float32)


@dataclass(frozen=True)
class Problem:
    """A measured batch of ``B`` items, with what it is scored against (module docstring).

    Attributes:
        measurement: ``y`` for the ``B`` items, in problem units.
        target: ``(B, h, w)`` ground truth in the units of ``to_image``, or ``None`` (fastMRI test files).
        to_image: unknowns -> ``(B, h, w)`` images (numpy float32), in target units.
        baseline: ``(B, h, w)`` classical reconstruction, or ``None``; ``baseline_name`` names it.
        family: ``mri``, ``ct``, ``image`` or ``gmm``.
        prior: a shipped prior's name or a ``prior.pt`` path, or the prior itself.
        info: what was measured (operator, mask, acceleration, views, noise, scale), JSON-serialisable.
        name: the input's name; ``slices``: the input's slice indices of the ``B`` items.
        exact: the closed-form posterior, for exact-posterior problems (Gaussian mixtures).
        pixel_mm: the unknown images' in-plane pixel size in millimetres, when the input states it
            (fastMRI headers, NIfTI and DICOM); a prior's declared pixel range is checked against it.
    """

    measurement: Measurement
    target: np.ndarray | None
    to_image: Callable[[Tensor], np.ndarray]
    baseline: np.ndarray | None
    baseline_name: str
    family: str
    prior: str | Denoiser
    info: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    slices: tuple[int, ...] = ()
    exact: GaussianMixture | None = None
    pixel_mm: float | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")

    @property
    def prior_name(self) -> str:
        """The prior's name or path, or its class name when the problem carries the prior itself."""
        return self.prior if isinstance(self.prior, str) else type(self.prior).__name__

    def metrics(self, x: Tensor) -> dict[str, float]:
        """fastMRI's NMSE, PSNR and SSIM of ``to_image(x)`` against ``target`` (:mod:`invdiff.metrics.image`)."""
        if self.target is None:
            raise ValueError(f"{self.name or 'this problem'} has no target to score against")
        return fastmri_volume_metrics(self.target, self.to_image(x))
