"""NIfTI volumes through nibabel: RAS orientation, intensity normalisation, 2-D slices, and saving.

Loaded data are reoriented to the closest canonical RAS+ orientation (array axes 0, 1, 2 = left to
Right, posterior to Anterior, inferior to Superior). :func:`volume_slices` turns a RAS volume into
display-oriented 2-D slices and :func:`slices_to_volume` inverts it, so reconstructed slices go back
into the volume; :func:`save_nifti` writes them in the input file's own orientation and affine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from invdiff.datasets.errors import DataFormatError
from invdiff.io import atomic_write

__all__ = ["NiftiVolume", "load_nifti", "normalize_intensity", "save_nifti", "slices_to_volume", "volume_slices"]

Plane = Literal["axial", "coronal", "sagittal"]


@dataclass(frozen=True)
class NiftiVolume:
    """A 3-D volume in RAS+ orientation.

    Attributes:
        data: float32 ``(X, Y, Z)`` in RAS+ axis order.
        affine: 4x4 voxel-to-world (mm) affine of ``data``.
        zooms: voxel size in mm along the RAS axes.
        source_affine: the file's own affine, and ``source_ornt`` its orientation, for saving outputs
            in the input's frame.
        path: the file read.
    """

    data: np.ndarray
    affine: np.ndarray
    zooms: tuple[float, float, float]
    source_affine: np.ndarray
    source_ornt: np.ndarray
    path: Path


def load_nifti(path: str | os.PathLike, volume_index: int | None = None) -> NiftiVolume:
    """Read a NIfTI (or any nibabel-readable) 3-D volume and reorient it to RAS+.

    Args:
        path: the file.
        volume_index: which volume of a 4-D file; required for 4-D data with more than one volume.

    Raises:
        DataFormatError: unreadable file, not 3-D (or 4-D without ``volume_index``), or NaN/Inf voxels.
    """
    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # nibabel raises many types for unreadable files
        raise DataFormatError(f"{path}: cannot read as NIfTI: {err}") from None
    if data.ndim == 4:
        if volume_index is None and data.shape[3] == 1:
            volume_index = 0
        if volume_index is None:
            raise DataFormatError(f"{path}: 4-D data {data.shape} holds {data.shape[3]} volumes; choose one with "
                                  "volume_index (invdiff reconstruct --volume-index K)")
        if not -data.shape[3] <= volume_index < data.shape[3]:
            raise DataFormatError(f"{path}: volume_index {volume_index} out of range for {data.shape[3]} volumes")
        data = data[..., volume_index]
    if data.ndim != 3:
        raise DataFormatError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    data = np.asarray(data, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise DataFormatError(f"{path}: volume contains NaN or Inf")
    source_ornt = nib.orientations.io_orientation(img.affine)
    to_ras = nib.orientations.ornt_transform(source_ornt, nib.orientations.axcodes2ornt("RAS"))
    ras = nib.orientations.apply_orientation(data, to_ras)
    affine = img.affine @ nib.orientations.inv_ornt_aff(to_ras, data.shape)
    zooms = tuple(float(z) for z in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return NiftiVolume(np.ascontiguousarray(ras, dtype=np.float32), affine, zooms, img.affine.copy(), source_ornt, path)


def normalize_intensity(data: np.ndarray, percentiles: tuple[float, float] = (0.0, 99.5)) -> np.ndarray:
    """Map the ``percentiles`` of ``data`` to ``[0, 1]`` and clip; float32, input unchanged."""
    lo, hi = np.percentile(data, percentiles)
    if hi <= lo:
        raise ValueError(f"cannot normalise: percentiles {percentiles} give an empty range [{lo}, {hi}]")
    return np.clip((data - lo) / (hi - lo), 0, 1).astype(np.float32)


_PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def volume_slices(data: np.ndarray, plane: Plane = "axial") -> np.ndarray:
    """2-D slices of a RAS+ volume, ``(n, rows, cols)``, oriented for display.

    Rows run from superior (axial: anterior) at the top to inferior (posterior) at the bottom;
    columns run from the subject's left to right for axial and coronal slices (neurological
    convention) and from posterior to anterior for sagittal ones.
    """
    axis = _PLANE_AXIS[plane]
    moved = np.moveaxis(data, axis, 0)  # (n, a, b): the two remaining RAS axes in order
    return np.ascontiguousarray(np.flip(np.swapaxes(moved, 1, 2), axis=1))


def slices_to_volume(slices: np.ndarray, plane: Plane = "axial") -> np.ndarray:
    """Inverse of :func:`volume_slices`."""
    axis = _PLANE_AXIS[plane]
    moved = np.swapaxes(np.flip(slices, axis=1), 1, 2)
    return np.ascontiguousarray(np.moveaxis(moved, 0, axis))


def save_nifti(path: str | os.PathLike, data: np.ndarray, like: NiftiVolume | None = None,
               affine: np.ndarray | None = None) -> Path:
    """Write a 3-D float32 volume atomically.

    With ``like``, ``data`` is a RAS+ volume of ``like``'s shape; it is written back in the input
    file's orientation with the input's affine, so it overlays the input in any viewer. Otherwise
    ``affine`` (default identity) is used as is.
    """
    data = np.asarray(data, dtype=np.float32)
    if like is not None:
        if data.shape != like.data.shape:
            raise ValueError(f"{path}: data {data.shape} must match the input volume {like.data.shape}")
        back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), like.source_ornt)
        data = nib.orientations.apply_orientation(data, back)
        affine = like.source_affine
    name = Path(path).name
    suffix = ".nii.gz" if name.endswith(".nii.gz") else ".nii" if name.endswith(".nii") else None
    if suffix is None:
        raise ValueError(f"{path}: a NIfTI output must end in .nii or .nii.gz")
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    return atomic_write(path, lambda tmp: nib.save(img, tmp), suffix=suffix)
