"""How a measurement is formed from an input: :class:`ProblemSpec`, and the family and prior of each operator.

==========  ==========================================================================================
operator    measurement
==========  ==========================================================================================
``mri``     multi-coil Cartesian MRI: a fastMRI file's k-space under a fastMRI mask (``mask``,
            ``acceleration``, ``center_fraction``; the file's own mask for test files), or k-space
            simulated from an image volume (``coils``, ``snr_db``, 2x readout oversampling)
``ct``      parallel- or fan-beam CT (``geometry``) with ``views`` views over ``angle_range`` degrees
            (below 180: limited angle) on relative attenuation ``1 + HU/1000``, noise ``noise_sigma``
            per detector bin (default 0.1)
``blur``    circular Gaussian blur of std ``blur_std`` pixels, noise ``noise_sigma`` (default 0.02)
``inpaint`` a centred ``box`` x ``box`` square removed, noise ``noise_sigma`` (default 0.02)
==========  ==========================================================================================

``size``: volumes are resampled to ``size`` x ``size`` slices (the shipped priors' size); ``seed``
draws the simulated noise (with the slice index, so a slice's noise does not depend on its group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["FAMILY", "OPERATORS", "PRIOR", "ProblemSpec", "resolve_operator"]

Operator = Literal["auto", "mri", "ct", "blur", "inpaint"]
OPERATORS = ("auto", "mri", "ct", "blur", "inpaint")
#: operator -> the sampler-defaults family (:mod:`invdiff.problems.defaults`)
FAMILY = {"mri": "mri", "ct": "ct", "blur": "image", "inpaint": "image"}
#: operator -> the shipped prior it is solved with by default
PRIOR = {"mri": "mri_brain_128", "ct": "ct_128", "blur": "mri_brain_128", "inpaint": "mri_brain_128"}


@dataclass(frozen=True)
class ProblemSpec:
    """How a measurement is formed (module docstring). MRI fields apply to fastMRI inputs too."""

    operator: Operator = "auto"
    mask: str = "equispaced_fraction"
    acceleration: float = 4
    center_fraction: float = 0.08
    views: int = 60
    geometry: Literal["parallel", "fan"] = "parallel"
    angle_range: float = 180.0
    noise_sigma: float | None = None
    blur_std: float = 2.0
    box: int = 32
    coils: int = 8
    snr_db: float = 30.0
    size: int = 128
    seed: int = 0

    def __post_init__(self):
        if self.operator not in OPERATORS:
            raise ValueError(f"operator must be one of {OPERATORS}, got {self.operator!r}")
        if self.geometry not in ("parallel", "fan"):
            raise ValueError(f"geometry must be 'parallel' or 'fan', got {self.geometry!r}")
        if self.views < 1 or not 0 < self.angle_range <= 360:
            raise ValueError(f"need views >= 1 and 0 < angle_range <= 360, got {self.views}, {self.angle_range}")
        if self.noise_sigma is not None and not self.noise_sigma > 0:
            raise ValueError(f"noise_sigma must be > 0, got {self.noise_sigma}")


def resolve_operator(source: str, operator: str) -> str:
    """The operator ``"auto"`` stands for: ``mri`` for fastMRI files, ``demo``, NIfTI and offline MR
    anatomy (``anatomy:NAME``), ``ct`` otherwise (DICOM series, CT anatomy, phantoms)."""
    if operator != "auto":
        return operator
    if source.startswith("anatomy:"):
        from invdiff.datasets import ANATOMY_SOURCES

        entry = ANATOMY_SOURCES.get(source.partition(":")[2])
        return "ct" if entry is not None and entry.modality == "CT" else "mri"
    return "mri" if source == "demo" or source.endswith((".h5", ".nii", ".nii.gz")) else "ct"
