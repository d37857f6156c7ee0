"""The priors that ship with invdiff (package data under ``invdiff/priors/data``).

Each was trained here by the command recorded in its checkpoint's provenance (and in
``invdiff/priors/data/README.md``, with its training log, loss curve and sample figure).
"""

from __future__ import annotations

from pathlib import Path

import torch

from invdiff.priors.loading import load_prior
from invdiff.priors.tokens.image import ImageTokenPrior
from invdiff.priors.unet import UNetPrior

__all__ = ["SHIPPED_PRIORS", "open_prior", "shipped_prior", "shipped_prior_path"]

_DATA = Path(__file__).resolve().parent / "data"

#: name -> (file, what it is)
SHIPPED_PRIORS: dict[str, tuple[str, str]] = {
    "mri_brain_128": ("mri_brain_128.pt", "complex (2-channel) T1 brain MRI, 128x128, magnitude in [0, 1]"),
    "ct_128": ("ct_128.pt", "CT, 128x128, attenuation relative to water (1 + HU/1000)"),
    "mri_brain_tokens_128": ("mri_brain_tokens_128.pt", "masked token prior (4x4-patch VQ tokenizer, 512 codes, "
                             "MaskGIT transformer) over T1 brain MRI magnitudes, 128x128, [0, 1]; for APS"),
}


def shipped_prior_path(name: str) -> Path:
    """The checkpoint file of a shipped prior."""
    if name not in SHIPPED_PRIORS:
        raise KeyError(f"unknown shipped prior {name!r}; known: {sorted(SHIPPED_PRIORS)}")
    path = _DATA / SHIPPED_PRIORS[name][0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shipped prior {name!r} is missing from this installation")
    return path


def shipped_prior(name: str, device: str | torch.device = "cpu") -> UNetPrior | ImageTokenPrior:
    """Load a shipped prior (see :data:`SHIPPED_PRIORS`): a :class:`UNetPrior`, or for a token prior an
    :class:`~invdiff.priors.tokens.image.ImageTokenPrior`."""
    return load_prior(shipped_prior_path(name), device)


def open_prior(spec: str, device: str | torch.device = "cpu") -> UNetPrior | ImageTokenPrior:
    """A shipped prior by name (:data:`SHIPPED_PRIORS`), or a prior checkpoint file (``prior.pt``,
    ``checkpoint.pt``) of any supported architecture."""
    if spec in SHIPPED_PRIORS:
        return shipped_prior(spec, device)
    if not Path(spec).is_file():
        raise FileNotFoundError(f"prior {spec!r}: neither a shipped prior ({sorted(SHIPPED_PRIORS)}) nor a file")
    return load_prior(spec, device)
