"""The priors that ship with invdiff (package data under ``invdiff/priors/data``).

Each was trained here by the command recorded in its checkpoint's provenance (and in
``invdiff/priors/data/README.md``, with its training log, loss curve and sample figure).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from invdiff.priors.loading import load_prior, open_weights_file
from invdiff.priors.tokens.image import ImageTokenPrior
from invdiff.priors.unet import UNetPrior

__all__ = ["SHIPPED_PRIORS", "ShippedPrior", "cached_priors", "default_mri_prior", "open_prior", "prior_cache", "shipped_prior", "shipped_prior_path"]

_DATA = Path(__file__).resolve().parent / "data"

@dataclass(frozen=True)
class ShippedPrior:
    """A shipped prior's file, what it is, and the pixel sizes (mm) it serves (``None``: not physical).

    ``pixel_size_mm`` is the checkpoint's own declaration where it has one (a test checks they agree);
    for priors trained before checkpoints declared it, it is the range worked out from their training
    data (``invdiff/priors/data/README.md``) and applied when they are loaded.
    """

    file: str
    description: str
    pixel_size_mm: tuple[float, float] | None = None


#: name -> the prior
SHIPPED_PRIORS: dict[str, ShippedPrior] = {
    # ICBM152 (1 mm, 233 mm square) resized to 128: 1.82 mm, zoomed 0.85-1.3x in training
    "mri_brain_128": ShippedPrior("mri_brain_128.pt", "complex (2-channel) T1 brain MRI, 128x128, magnitude in [0, 1]",
                                  (1.40, 2.14)),
    "ct_128": ShippedPrior("ct_128.pt", "CT, 128x128, attenuation relative to water (1 + HU/1000); every real CT "
                           "slice offline and phantoms"),
    # the two folds of a split of the real CT by subject, for evaluation on subjects a prior never saw
    "ct_128_fold_a": ShippedPrior("ct_128_fold_a.pt", "CT, 128x128, 1 + HU/1000; real CT of pydicom-data's head "
                                  "slice 693 and pydicom's CT_small, and phantoms (held out: pydicom-data's brain "
                                  "frames and abdominal slice)"),
    "ct_128_fold_b": ShippedPrior("ct_128_fold_b.pt", "CT, 128x128, 1 + HU/1000; real CT of pydicom-data's brain "
                                  "frames and abdominal slice, and phantoms (held out: head slice 693, CT_small)"),
    "mri_brain_tokens_128": ShippedPrior("mri_brain_tokens_128.pt", "masked token prior (4x4-patch VQ tokenizer, 512 "
                                         "codes, MaskGIT transformer) over T1 brain MRI magnitudes, 128x128, [0, 1]; "
                                         "for APS"),
}


def shipped_prior_path(name: str) -> Path:
    """The checkpoint file of a shipped prior."""
    if name not in SHIPPED_PRIORS:
        raise KeyError(f"unknown shipped prior {name!r}; known: {sorted(SHIPPED_PRIORS)}")
    path = _DATA / SHIPPED_PRIORS[name].file
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shipped prior {name!r} is missing from this installation")
    return path


def shipped_prior(name: str, device: str | torch.device = "cpu") -> UNetPrior | ImageTokenPrior:
    """Load a shipped prior (see :data:`SHIPPED_PRIORS`): a :class:`UNetPrior`, or for a token prior an
    :class:`~invdiff.priors.tokens.image.ImageTokenPrior`."""
    prior = load_prior(shipped_prior_path(name), device)
    declared = SHIPPED_PRIORS[name].pixel_size_mm
    if declared is not None and getattr(prior, "pixel_size_mm", declared) is None:
        prior.pixel_size_mm = declared
    return prior


#: the shipped continuous MRI priors, in order of preference
MRI_PRIORS = ("mri_brain_128",)


def default_mri_prior(pixel_mm: float | None) -> str:
    """The shipped MRI prior for images of ``pixel_mm`` pixels: the first of :data:`MRI_PRIORS` whose
    range holds it (``mri_brain_128`` when none does, or the pixel size is unknown; a default prior
    applied off its range is a warning, not an error: :func:`~invdiff.priors.serving.fit_prior`)."""
    from invdiff.priors.serving import pixel_in_range

    if pixel_mm is not None:
        for name in MRI_PRIORS:
            if pixel_in_range(SHIPPED_PRIORS[name].pixel_size_mm, pixel_mm):
                return name
    return "mri_brain_128"


def prior_cache() -> Path:
    """The folder of converted priors (``invdiff priors convert`` without ``--out``): ``$INVDIFF_PRIOR_DIR``,
    or ``~/.cache/invdiff/priors``. Read when a prior is named; nothing is ever downloaded into it."""
    return Path(os.environ.get("INVDIFF_PRIOR_DIR") or Path.home() / ".cache" / "invdiff" / "priors")


def cached_priors() -> dict[str, Path]:
    """name -> file of the converted priors in :func:`prior_cache`."""
    folder = prior_cache()
    return {p.stem: p for p in sorted(folder.glob("*.pt"))} if folder.is_dir() else {}


def open_prior(spec: str, device: str | torch.device = "cpu") -> UNetPrior | ImageTokenPrior:
    """A shipped prior by name (:data:`SHIPPED_PRIORS`), a converted prior in :func:`prior_cache` by name,
    a prior checkpoint file (``prior.pt``, ``checkpoint.pt``) of any supported architecture, or a
    published checkpoint of a supported family (a weights file or a diffusers folder:
    :mod:`invdiff.priors.families`)."""
    if spec in SHIPPED_PRIORS:
        return shipped_prior(spec, device)
    if not Path(spec).exists():
        cached = cached_priors()
        if spec in cached:
            return load_prior(cached[spec], device)
        raise FileNotFoundError(f"prior {spec!r}: neither a shipped prior ({sorted(SHIPPED_PRIORS)}), a converted "
                                f"prior in {prior_cache()} ({sorted(cached) or 'none'}), nor a file or folder")
    return open_weights_file(spec, device)
