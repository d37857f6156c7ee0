"""Training images for diffusion priors: where they come from, and how a training batch is drawn.

Data units (the units a trained prior denoises in, recorded in its checkpoint):

* **MR**: magnitudes normalised per volume to ``[0, 1]`` (0 to the 99.5th percentile). Complex
  training (``channels=2``) multiplies each magnitude by a random smooth phase and a uniform global
  phase and stores (re, im), so the prior sees what a coil-combined reconstruction looks like.
* **CT**: attenuation relative to water, ``mu / mu_water = 1 + HU / 1000``, clipped at 0 (air 0,
  water and soft tissue about 1, dense bone about 2). Ellipse phantoms (``[0, 1]`` by construction)
  are doubled so that their body lies in the soft-tissue range and their inserts reach bone.

A data specification is one string:

====================  ====================================================================
``anatomy:NAME``      an offline source of :data:`invdiff.datasets.ANATOMY_SOURCES`
``ellipses:N[:SEED]`` ``N`` random ellipse phantoms (CT-like), seeded (default seed 0)
``PATH.h5``           a fastMRI file: its RSS/ESC targets (or the RSS of its k-space)
``PATH.nii[.gz]``     a NIfTI volume: axial slices (MR), or HU (CT)
``PATH`` folder/.dcm  a DICOM CT series, in HU
====================  ====================================================================

A ``*K`` suffix (``anatomy:pydicom_data_ct_head*50``) makes each slice of that source ``K`` times
as likely to be drawn as a slice of weight 1, so a few real slices are not drowned by many phantoms.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augmentation", "TrainingImages", "config_from_dict", "config_to_dict", "draw_batch", "load_training_images"]

Modality = Literal["MR", "CT"]


@dataclass(frozen=True)
class TrainingImages:
    """Square training slices and where they came from.

    Attributes:
        images: ``(N, S, S)`` float32 in the modality's data units (module docstring).
        weights: ``(N,)`` float64 relative probability of drawing each slice.
        modality: ``"MR"`` or ``"CT"``.
        sources: one provenance record per specification (spec, subject, package, licence, count,
            and the SHA-256 of the file read).
        pixel_mm: the pixel size (mm) every slice was resampled to, or ``None`` when slices were
            resized to a common field of view (their pixel sizes then differ by source).
    """

    images: Tensor
    weights: Tensor
    modality: Modality
    sources: tuple[dict, ...]
    pixel_mm: float | None = None

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def subjects(self) -> set[str]:
        return {s["subject"] for s in self.sources}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _foreground(images: np.ndarray, modality: Modality) -> np.ndarray:
    return (images > 0.1).mean(axis=(1, 2)) if modality == "MR" else (images > 0.5).mean(axis=(1, 2))


def _ct_units(hu: np.ndarray) -> np.ndarray:
    return np.maximum(1.0 + hu / 1000.0, 0.0).astype(np.float32)


def _load_one(spec: str, modality: Modality, size: int, min_foreground: float,
              pixel_mm: float | None = None) -> tuple[np.ndarray, dict]:
    from invdiff.datasets import (ANATOMY_SOURCES, FastMRIFile, load_anatomy, load_ct_series, load_nifti,
                                  normalize_intensity, random_ellipses, volume_slices)
    from invdiff.datasets.anatomy import resample_to_pixel, square_resize

    if spec.startswith("anatomy:"):
        name = spec.split(":", 1)[1]
        if name not in ANATOMY_SOURCES:
            raise KeyError(f"data {spec!r}: unknown anatomy source; known: {sorted(ANATOMY_SOURCES)}")
        source = ANATOMY_SOURCES[name]
        if source.modality != modality:
            raise ValueError(f"data {spec!r} is {source.modality}, but the prior is being trained on {modality}")
        images = load_anatomy(name, size=size, pixel_mm=pixel_mm)
        if modality == "CT":
            images = _ct_units(images)
        path = source.path()
        record = {"subject": source.subject, "package": source.package, "licence": source.licence,
                  "file": str(path), "sha256": _sha256(path)}
    elif spec.startswith("ellipses:"):
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
            raise ValueError(f"data {spec!r}: expected ellipses:N or ellipses:N:SEED")
        count, seed = int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
        gen = torch.Generator().manual_seed(seed)
        chunks = [random_ellipses(min(64, count - i), size, gen).numpy() for i in range(0, count, 64)]  # memory
        images = np.concatenate(chunks) * (2.0 if modality == "CT" else 1.0)
        record = {"subject": f"ellipses-seed{seed}", "package": "invdiff", "licence": "BSD-3-Clause"}
    else:
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"data {spec!r}: no such file or folder")
        source_mm = None
        if path.suffix == ".h5":
            file = FastMRIFile.open(path)
            if file.target_key is not None:
                vol = np.abs(file.target_volume())
            else:
                from invdiff.datasets.fastmri import rss_reconstruction
                vol = torch.stack([rss_reconstruction(file.kspace(i).reshape(-1, *file.kspace_shape[-2:]),
                                                      file.recon_size)
                                   for i in range(file.kspace_shape[0])]).numpy()
            images = normalize_intensity(np.asarray(vol, dtype=np.float32))
        elif path.name.endswith((".nii", ".nii.gz")):
            nifti = load_nifti(path)
            vol = volume_slices(nifti.data, "axial")
            source_mm = float(nifti.zooms[0])
            images = normalize_intensity(vol) if modality == "MR" else _ct_units(vol)
        else:
            if modality != "CT":
                raise ValueError(f"data {spec!r}: DICOM series are read as CT (HU); use --modality CT")
            images = _ct_units(load_ct_series(path).hu)
        record = {"subject": path.stem, "package": None, "licence": "user data", "file": str(path.resolve()),
                  "sha256": _sha256(path) if path.is_file() else None}
        if pixel_mm is None:
            images = square_resize(np.asarray(images, dtype=np.float32), size)
        elif source_mm is None:
            raise ValueError(f"data {spec!r}: its pixel size is not known here, so it cannot be resampled to "
                             f"{pixel_mm} mm pixels (use a NIfTI volume or an anatomy source)")
        else:
            images = resample_to_pixel(np.asarray(images, dtype=np.float32), source_mm, pixel_mm, size)
    if spec.startswith("ellipses:") and pixel_mm is not None:
        raise ValueError(f"data {spec!r}: phantoms have no physical pixel size; train without --pixel-size")
    keep = _foreground(images, modality) >= min_foreground
    if not keep.any():
        raise ValueError(f"data {spec!r}: no slice has a foreground fraction of at least {min_foreground}")
    images = images[keep]
    record = {"spec": spec, **record, "slices": int(len(images))}
    return images.astype(np.float32), record


def load_training_images(specs: Sequence[str], modality: Modality, size: int, *, min_foreground: float = 0.3,
                         exclude_subjects: Sequence[str] = (), pixel_mm: float | None = None) -> TrainingImages:
    """Load every specification (module docstring) as ``size x size`` slices in data units.

    By default each slice is padded to square and resized to ``size`` (a common field of view); with
    ``pixel_mm`` each is resampled to that pixel size and centre-padded or cropped to ``size``
    (a common resolution, what a prior applied at native resolution needs).

    Slices whose foreground fraction is below ``min_foreground`` (outside the head) are dropped.
    ``exclude_subjects`` keeps held-out subjects out: a source of such a subject is an error, not a
    silent skip, so an evaluation can trust that its subject was never seen.
    """
    if modality not in ("MR", "CT"):
        raise ValueError(f"modality must be 'MR' or 'CT', got {modality!r}")
    if not specs:
        raise ValueError("no training data given")
    arrays, weights, records = [], [], []
    for spec in specs:
        weight = 1.0
        if "*" in spec:
            spec, _, text = spec.rpartition("*")
            try:
                weight = float(text)
            except ValueError:
                raise ValueError(f"data {spec}*{text}: the weight after '*' must be a number") from None
            if not weight > 0:
                raise ValueError(f"data {spec}*{text}: the weight must be > 0")
        images, record = _load_one(spec, modality, size, min_foreground, pixel_mm)
        record["weight"] = weight
        weights.append(torch.full((len(images),), weight, dtype=torch.float64))
        if record["subject"] in exclude_subjects:
            raise ValueError(f"data {spec!r} shows subject {record['subject']!r}, which is held out")
        arrays.append(images)
        records.append(record)
    return TrainingImages(torch.from_numpy(np.concatenate(arrays)), torch.cat(weights), modality, tuple(records),
                          pixel_mm)


@dataclass(frozen=True)
class Augmentation:
    """Random transforms applied to every training image.

    Attributes:
        hflip: left-right flips with probability 1/2.
        max_rotation: rotations uniform in ``[-max_rotation, max_rotation]`` degrees.
        zoom: magnification, log-uniform in this range (anatomy differs in size between subjects
            and fields of view).
        intensity: multiplicative intensity scaling, uniform in this range.
        max_phase: amplitude (radians) of the smooth random phase of complex images, on top of a
            uniform global phase.
    """

    hflip: bool = True
    max_rotation: float = 10.0
    zoom: tuple[float, float] = (0.85, 1.3)
    intensity: tuple[float, float] = (0.9, 1.1)
    max_phase: float = math.pi / 2


def config_to_dict(config) -> dict:
    """A training configuration dataclass with an ``augmentation`` field as plain JSON-like values."""
    d = asdict(config)
    d["augmentation"]["intensity"] = list(config.augmentation.intensity)
    d["augmentation"]["zoom"] = list(config.augmentation.zoom)
    return d


def config_from_dict(cls, d: dict):
    """The inverse of :func:`config_to_dict` for the dataclass ``cls``."""
    d = dict(d)
    aug = dict(d.pop("augmentation"))
    aug["intensity"], aug["zoom"] = tuple(aug["intensity"]), tuple(aug["zoom"])
    return cls(**d, augmentation=Augmentation(**aug))


def draw_batch(images: Tensor, batch_size: int, generator: torch.Generator, *, channels: int = 1,
               crop: int | None = None, augmentation: Augmentation = Augmentation(),
               weights: Tensor | None = None) -> Tensor:
    """A training batch ``(batch_size, channels, crop, crop)`` (``crop`` defaults to the image size).

    Each item is an image chosen with probability proportional to ``weights`` (uniform by default), intensity-scaled, given a random phase (``channels=2``),
    then flipped, rotated, zoomed and cropped at a random position by one bilinear resampling. All draws
    come from ``generator``, so a batch is a function of its state alone.
    """
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 (real) or 2 (complex), got {channels}")
    n, size = images.shape[0], images.shape[-1]
    crop = size if crop is None else crop
    if not 1 <= crop <= size:
        raise ValueError(f"crop must be in [1, {size}], got {crop}")
    g = dict(generator=generator, dtype=torch.float64)
    if weights is None:
        idx = torch.randint(0, n, (batch_size,), generator=generator)
    else:
        idx = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
    lo, hi = augmentation.intensity
    x = images[idx].to(torch.float64) * (lo + (hi - lo) * torch.rand(batch_size, 1, 1, **g))
    if channels == 2:
        from invdiff.datasets.simulate import smooth_phase

        phase = smooth_phase(batch_size, (size, size), generator, augmentation.max_phase).to(torch.float64)
        phase = phase + 2 * math.pi * torch.rand(batch_size, 1, 1, **g)
        x = torch.stack([x * torch.cos(phase), x * torch.sin(phase)], dim=1)
    else:
        x = x.unsqueeze(1)
    angle = torch.deg2rad(augmentation.max_rotation * (2 * torch.rand(batch_size, **g) - 1))
    flip = torch.where(torch.rand(batch_size, **g) < 0.5, -1.0, 1.0) if augmentation.hflip else \
        torch.ones(batch_size, dtype=torch.float64)
    span = 1.0 - crop / size  # crop centres stay inside the image (normalised coordinates)
    shift = span * (2 * torch.rand(batch_size, 2, **g) - 1)
    zlo, zhi = augmentation.zoom
    magnify = torch.exp(math.log(zlo) + (math.log(zhi) - math.log(zlo)) * torch.rand(batch_size, **g))
    zoom = crop / size / magnify
    theta = torch.zeros(batch_size, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = zoom * torch.cos(angle) * flip
    theta[:, 0, 1] = -zoom * torch.sin(angle)
    theta[:, 1, 0] = zoom * torch.sin(angle) * flip
    theta[:, 1, 1] = zoom * torch.cos(angle)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, [batch_size, channels, crop, crop], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(torch.float32)
