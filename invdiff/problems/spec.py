"""How a measurement is formed from an input: :class:`ProblemSpec`, and the family and prior of each operator.

==========  ==========================================================================================
operator    measurement
==========  ==========================================================================================
``mri``     multi-coil Cartesian MRI: a fastMRI file's k-space under a fastMRI mask (``mask``,
            ``acceleration``, ``center_fraction``; the file's own mask for test files), or k-space
            simulated from an image volume (``coils``, ``snr_db``, 2x readout oversampling); coil maps by
            ESPIRiT on the centre's square, or its columns over ``calib_rows`` readout rows, kept where
            ESPIRiT's eigenvalue exceeds ``espirit_crop``. With
            ``acquisition="3d"`` the slices' k-spaces are transformed along z and a Poisson-disc mask
            over ``(kz, ky)`` (``acceleration``, a centre block from ``center_fraction``) samples them:
            all slices are one problem (:mod:`invdiff.problems.mri3d`)
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

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_ESPIRIT_CROP", "FAMILY", "OPERATORS", "PRIOR", "ProblemSpec", "resolve_operator"]

Operator = Literal["auto", "mri", "ct", "blur", "inpaint"]
OPERATORS = ("auto", "mri", "ct", "blur", "inpaint")
#: operator -> the sampler-defaults family (:mod:`invdiff.problems.defaults`)
FAMILY = {"mri": "mri", "ct": "ct", "blur": "image", "inpaint": "image"}
#: operator -> the shipped prior it is solved with by default
PRIOR = {"mri": "mri_brain_128", "ct": "ct_128", "blur": "mri_brain_128", "inpaint": "mri_brain_128"}


#: ESPIRiT's eigenvalue threshold for the coil maps' support unless ``espirit_crop`` says otherwise
DEFAULT_ESPIRIT_CROP = 0.95


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
    support_margin: int = 0
    calib_rows: int = 0
    espirit_crop: float = DEFAULT_ESPIRIT_CROP
    acquisition: Literal["2d", "3d"] = "2d"

    def __post_init__(self):
        """Every field checked up front; a message names the field (the CLI option with dashes) and its range."""
        if self.operator not in OPERATORS:
            raise ValueError(f"operator must be one of {OPERATORS}, got {self.operator!r}")
        if self.geometry not in ("parallel", "fan"):
            raise ValueError(f"geometry must be 'parallel' or 'fan', got {self.geometry!r}")
        if self.mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {self.mask!r}")
        _number("acceleration", self.acceleration, 1.0, MAX_ACCELERATION)
        _number("center_fraction", self.center_fraction, 0.0, 1.0, low_open=True, high_open=True)
        if self.mask == "equispaced_fraction" and self.center_fraction * self.acceleration >= 1:
            raise ValueError(f"center_fraction x acceleration must be < 1 for the equispaced_fraction mask (the "
                             f"centre alone would exceed the budget), got {self.center_fraction} x {self.acceleration}")
        _integer("views", self.views, 1, MAX_VIEWS)
        _number("angle_range", self.angle_range, 0.0, 360.0, low_open=True)
        if self.noise_sigma is not None:
            _number("noise_sigma", self.noise_sigma, 0.0, float("inf"), low_open=True)
        _number("blur_std", self.blur_std, 0.0, self.size / 4, low_open=True)
        _integer("box", self.box, 1, self.size - 1)
        _integer("coils", self.coils, 1, 64)
        _number("snr_db", self.snr_db, -40.0, 120.0)
        _integer("size", self.size, 8, 4096)
        _integer("seed", self.seed, 0, 2**62)
        _integer("support_margin", self.support_margin, 0, 64)
        _integer("calib_rows", self.calib_rows, 0, 4096)
        _number("espirit_crop", self.espirit_crop, 0.0, 1.0, low_open=True, high_open=True)
        if self.acquisition not in ("2d", "3d"):
            raise ValueError(f"acquisition (--acquisition) must be '2d' or '3d', got {self.acquisition!r}")
        if self.acquisition == "3d" and self.shapes_coil_maps:
            raise ValueError("calib_rows (--calib-rows) and espirit_crop (--espirit-crop) shape the 2-D "
                             "acquisition's ESPIRiT maps; a 3-D acquisition calibrates on its (kz, ky) centre")
        if self.acquisition == "3d" and self.operator not in ("auto", "mri"):
            raise ValueError(f"acquisition '3d' is an MRI acquisition; operator {self.operator!r} has none")


    @property
    def shapes_coil_maps(self) -> bool:
        """Whether the spec asks for ESPIRiT maps other than the default (``calib_rows``, ``espirit_crop``)."""
        return bool(self.calib_rows) or self.espirit_crop != DEFAULT_ESPIRIT_CROP

#: the masks of :class:`~operators.MaskFunc` a spec may name
MASKS = ("equispaced_fraction", "equispaced", "random")
#: bounds that keep a run meaningful: an acceleration above 32 leaves a handful of k-space lines; more
#: views than this are not sparse-view CT and their projector alone would take gigabytes
MAX_ACCELERATION = 32.0
MAX_VIEWS = 4096


def _option(name: str) -> str:
    return f"{name} (--{name.replace('_', '-')})"


def _number(name: str, value, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{_option(name)} must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{_option(name)} must lie in {lo}{low:g}, {high:g}{hi}, got {value:g}")


def _integer(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{_option(name)} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{_option(name)} must lie in [{low}, {high}], got {value}")


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
