"""Real anatomy that ships inside installable packages, usable offline.

Each :class:`AnatomySource` names one image or volume, the package that carries it, its subject (so
training and evaluation can keep subjects apart), and its licence; ``datasets/README.md`` gives the
full provenance. Nothing is downloaded: a source whose package is not installed is simply not
available (:meth:`AnatomySource.path` returns ``None``).

:func:`load_anatomy` returns 2-D slices: MR magnitudes normalised to ``[0, 1]`` (0 to the 99.5th
percentile), CT in Hounsfield units with air clipped at -1024.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from invdiff.datasets.errors import DataFormatError

__all__ = ["ANATOMY_SOURCES", "AnatomySource", "anatomy_sources", "load_anatomy", "resample_to_pixel", "square_resize"]

Loader = Literal["nifti-axial", "nifti-coronal", "png", "npy", "dicom-ct", "dicom-mr"]


@dataclass(frozen=True)
class AnatomySource:
    """One offline image source.

    Attributes:
        name: identifier used by :func:`load_anatomy`.
        modality: ``"MR"`` or ``"CT"``.
        subject: who was imaged; sources sharing a subject must not be split between training and test.
        description: what the image shows.
        package: the pip distribution or Debian package that ships it.
        licence: the licence it is distributed under.
        root: ``"pip:<module>"`` (the module's install folder) or an absolute folder.
        relpath: the file under ``root``.
        loader: how to read it.
        quarter_turns: counter-clockwise 90-degree turns that bring a 2-D image upright.
        pixel_mm: in-plane pixel size in millimetres (from the file's header; ``None`` when unknown).
    """

    name: str
    modality: Literal["MR", "CT"]
    subject: str
    description: str
    package: str
    licence: str
    root: str
    relpath: str
    loader: Loader
    quarter_turns: int = 0
    pixel_mm: float | None = None

    def path(self) -> Path | None:
        """The file, or ``None`` when its package is not installed."""
        if self.root.startswith("pip:"):
            spec = importlib.util.find_spec(self.root[4:])
            if spec is None or not spec.submodule_search_locations:
                return None
            base = Path(list(spec.submodule_search_locations)[0])
        else:
            base = Path(self.root)
        path = base / self.relpath
        return path if path.is_file() else None

    @property
    def available(self) -> bool:
        return self.path() is not None


_ITK = "/usr/share/doc/insighttoolkit5-examples/examples/Data"
ANATOMY_SOURCES: dict[str, AnatomySource] = {s.name: s for s in (
    AnatomySource("colin27_t1", "MR", "colin27", "Colin Holmes' T1 brain (27 averaged scans), 1 mm, axial slices",
                  "mricron-data (Debian)", "MNI permissive notice (Collins et al. 1998); BSD-3-Clause packaging",
                  "/usr/share/mricron/templates", "ch2.nii.gz", "nifti-axial", pixel_mm=1.0),
    AnatomySource("colin27_t1_05mm", "MR", "colin27",
                  "Colin Holmes' T1 brain (27 averaged scans) at 0.5 mm ('ch2better'), axial slices",
                  "mricron-data (Debian)", "MNI permissive notice (Collins et al. 1998); BSD-3-Clause packaging",
                  "/usr/share/mricron/templates", "ch2better.nii.gz", "nifti-axial", pixel_mm=0.5),
    AnatomySource("mni152_2009_t1", "MR", "icbm152-average",
                  "ICBM 2009a symmetric T1 template (average of 152 adults), 1 mm, axial slices",
                  "nilearn", "MNI ICBM 2009 permissive notice; nilearn BSD-3-Clause",
                  "pip:nilearn", "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", "nifti-axial",
                  pixel_mm=1.0),
    AnatomySource("itk_brainweb_pd", "MR", "colin27", "BrainWeb proton-density axial slice (simulated from Colin27)",
                  "insighttoolkit5-examples (Debian)", "Apache-2.0", _ITK, "BrainProtonDensitySlice.png", "png"),
    AnatomySource("itk_brainweb_t1", "MR", "colin27", "BrainWeb T1 axial slice (simulated from Colin27)",
                  "insighttoolkit5-examples (Debian)", "Apache-2.0", _ITK, "BrainT1Slice.png", "png"),
    AnatomySource("dipy_t1_coronal", "MR", "dipy-t1", "T1 brain, one coronal slice", "dipy", "BSD-3-Clause",
                  "pip:dipy", "data/files/t1_coronal_slice.npy", "npy", quarter_turns=1),
    AnatomySource("nibabel_anatomical", "MR", "nibabel-anatomical", "small T1 brain volume, 2 mm, axial slices",
                  "nibabel", "MIT", "pip:nibabel", "tests/data/anatomical.nii", "nifti-axial", pixel_mm=2.0),
    AnatomySource("pydicom_mr_small", "MR", "pydicom-mr-small", "64x64 MR slice (pydicom test file)",
                  "pydicom", "MIT", "pip:pydicom", "data/test_files/MR_small.dcm", "dicom-mr", pixel_mm=0.3125),
    AnatomySource("pydicom_ct_small", "CT", "pydicom-ct-small", "128x128 CT slice through a vertebra (pydicom test file)",
                  "pydicom", "MIT", "pip:pydicom", "data/test_files/CT_small.dcm", "dicom-ct"),
    AnatomySource("pydicom_data_ct_head", "CT", "pydicom-data-693", "512x512 head CT slice", "pydicom-data", "MIT",
                  "pip:data_store", "data/693_UNCR.dcm", "dicom-ct"),
    AnatomySource("pydicom_data_ct_brain", "CT", "pydicom-data-ect",
                  "two neighbouring 512x512 frames of an enhanced (multi-frame) brain CT, soft tissue only",
                  "pydicom-data", "MIT", "pip:data_store", "data/eCT_Supplemental.dcm", "dicom-ct"),
    AnatomySource("pydicom_data_ct_abdomen", "CT", "pydicom-data-pancreas",
                  "512x512 abdominal CT slice through the pancreas, 0.86 mm pixels", "pydicom-data", "MIT",
                  "pip:data_store", "data/explicit_VR-UN.dcm", "dicom-ct", pixel_mm=0.859375),
)}


def anatomy_sources(modality: str | None = None, available_only: bool = False) -> list[AnatomySource]:
    """The catalogue, optionally restricted to a modality and to installed sources."""
    return [s for s in ANATOMY_SOURCES.values()
            if (modality is None or s.modality == modality) and (not available_only or s.available)]


def square_resize(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad ``(N, H, W)`` images to square (centred), then resize to ``size x size`` (anti-aliased)."""
    from skimage.transform import resize

    n, h, w = images.shape
    side = max(h, w)
    padded = np.zeros((n, side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    padded[:, top : top + h, left : left + w] = images
    if side == size:
        return padded
    return np.stack([resize(im, (size, size), anti_aliasing=side > size, preserve_range=True) for im in padded]
                    ).astype(np.float32)


def resample_to_pixel(images: np.ndarray, pixel_mm: float, target_mm: float, size: int) -> np.ndarray:
    """Resample ``(N, H, W)`` images with ``pixel_mm`` pixels to ``target_mm`` pixels (anti-aliased
    when shrinking), then centre-pad or centre-crop them to ``size x size``."""
    from skimage.transform import resize

    if not (pixel_mm > 0 and target_mm > 0):
        raise ValueError(f"pixel sizes must be > 0 mm, got {pixel_mm} and {target_mm}")
    n, h, w = images.shape
    shape = (max(1, round(h * pixel_mm / target_mm)), max(1, round(w * pixel_mm / target_mm)))
    if shape != (h, w):
        images = np.stack([resize(im, shape, anti_aliasing=target_mm > pixel_mm, preserve_range=True)
                           for im in images])
    out = np.zeros((n, size, size), dtype=np.float32)
    hs, ws = min(shape[0], size), min(shape[1], size)
    src_t, src_l = (shape[0] - hs) // 2, (shape[1] - ws) // 2
    dst_t, dst_l = (size - hs) // 2, (size - ws) // 2
    out[:, dst_t:dst_t + hs, dst_l:dst_l + ws] = images[:, src_t:src_t + hs, src_l:src_l + ws]
    return out


def _read(source: AnatomySource, path: Path) -> np.ndarray:
    if source.loader.startswith("nifti"):
        from invdiff.datasets.nifti import load_nifti, volume_slices

        return volume_slices(load_nifti(path).data, source.loader.split("-")[1])  # type: ignore[arg-type]
    if source.loader == "png":
        from skimage.io import imread

        image = np.asarray(imread(path), dtype=np.float32)
        return (image[..., 0] if image.ndim == 3 else image)[None]
    if source.loader == "npy":
        return np.load(path, allow_pickle=False).astype(np.float32)[None]
    if source.loader == "dicom-ct":
        from invdiff.datasets.dicom import load_ct_series

        return np.maximum(load_ct_series(path).hu, -1024.0)
    import pydicom

    pixels = np.asarray(pydicom.dcmread(path).pixel_array, dtype=np.float32)
    return pixels if pixels.ndim == 3 else pixels[None]


def load_anatomy(name: str, size: int | None = None, min_foreground: float = 0.0,
                 pixel_mm: float | None = None) -> np.ndarray:
    """2-D slices ``(N, H, W)`` float32 of one source (see the module docstring for value ranges).

    Args:
        name: a key of :data:`ANATOMY_SOURCES`.
        size: if given, pad each slice to square and resize to ``size x size`` (or, with
            ``pixel_mm``, resample to that pixel size and centre-pad or crop to ``size x size``).
        min_foreground: keep only slices whose fraction of pixels above 10 % of the maximum (MR) or
            above -500 HU (CT) is at least this (drops slices outside the head).
        pixel_mm: resample to this pixel size (mm) instead of to a fixed field of view; needs ``size``
            and a source whose pixel size is known.

    Raises:
        KeyError: unknown name. FileNotFoundError: the source's package is not installed.
        ValueError: ``pixel_mm`` for a source of unknown pixel size, or without ``size``.
    """
    if name not in ANATOMY_SOURCES:
        raise KeyError(f"unknown anatomy source {name!r}; known: {sorted(ANATOMY_SOURCES)}")
    source = ANATOMY_SOURCES[name]
    if pixel_mm is not None and (size is None or source.pixel_mm is None):
        raise ValueError(f"anatomy source {name!r}: resampling to {pixel_mm} mm pixels needs a size and a source of "
                         f"known pixel size (this one's is {source.pixel_mm})")
    path = source.path()
    if path is None:
        hint = (f"pip install {source.root[4:]}, or pip install -e '.[anatomy]'" if source.root.startswith("pip:")
                else "see docs/guide/datasets.md")
        raise FileNotFoundError(f"anatomy source {name!r} needs {source.package} installed ({hint}; looked for "
                                f"{source.root}/{source.relpath})")
    images = np.rot90(_read(source, path), k=source.quarter_turns, axes=(1, 2))
    if images.ndim != 3 or not np.all(np.isfinite(images)):
        raise DataFormatError(f"{path}: expected finite 2-D slices, got shape {images.shape}")
    if source.modality == "MR":
        from invdiff.datasets.nifti import normalize_intensity

        images = normalize_intensity(images)
        foreground = (images > 0.1).mean(axis=(1, 2))
    else:
        foreground = (images > -500).mean(axis=(1, 2))
    images = images[foreground >= min_foreground]
    if len(images) == 0:
        raise ValueError(f"{name}: no slice has a foreground fraction of at least {min_foreground}")
    if pixel_mm is not None:
        return resample_to_pixel(np.asarray(images, dtype=np.float32), source.pixel_mm, pixel_mm, size)
    return square_resize(images, size) if size is not None else np.ascontiguousarray(images, dtype=np.float32)
