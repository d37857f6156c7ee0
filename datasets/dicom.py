"""DICOM CT series to Hounsfield units, through pydicom.

``HU = stored value x RescaleSlope + RescaleIntercept`` (DICOM PS3.3 C.11.1, Modality LUT); for
enhanced multi-frame CT the pair comes from the per-frame or shared functional groups
(``PixelValueTransformationSequence``). Slices are ordered along the slice normal
(``ImagePositionPatient`` projected on the cross product of the ``ImageOrientationPatient`` axes),
falling back to ``InstanceNumber``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from invdiff.datasets.errors import DataFormatError

__all__ = ["CTVolume", "MU_WATER_PER_MM", "hu_to_attenuation", "hu_window", "load_ct_series"]

MU_WATER_PER_MM = 0.0192
"""Linear attenuation of water at about 70 keV, per mm (NIST XCOM: 0.1929 cm^2/g x 1 g/cm^3 at 70 keV)."""


@dataclass(frozen=True)
class CTVolume:
    """A CT series in Hounsfield units.

    Attributes:
        hu: float32 ``(slices, rows, cols)``.
        pixel_spacing_mm: ``(row spacing, column spacing)``, or ``None`` when the files lack it.
        slice_positions_mm: position of each slice along the slice normal, or ``None``.
        paths: the file of each slice (repeated for multi-frame files).
    """

    hu: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None
    slice_positions_mm: tuple[float, ...] | None
    paths: tuple[Path, ...]


def _rescale(ds, frame: int, path: Path) -> tuple[float, float]:
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        return float(ds.RescaleSlope), float(ds.RescaleIntercept)
    for group in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        seq = ds.get(group)
        if not seq:
            continue
        item = seq[frame] if group.startswith("PerFrame") and len(seq) > frame else seq[0]
        pvt = item.get("PixelValueTransformationSequence")
        if pvt and "RescaleSlope" in pvt[0] and "RescaleIntercept" in pvt[0]:
            return float(pvt[0].RescaleSlope), float(pvt[0].RescaleIntercept)
    raise DataFormatError(f"{path}: lacks RescaleSlope/RescaleIntercept, so stored values cannot be converted to HU")


def _position(ds) -> float | None:
    try:
        orient = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        pos = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
    except (AttributeError, ValueError, TypeError):
        return None
    return float(pos @ np.cross(orient[:3], orient[3:]))


def _files(source: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
        if source.is_dir():
            files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
            if not files:
                raise DataFormatError(f"{source}: folder holds no files")
            return files
        source = [source]
    return [Path(p) for p in source]


def series_affine(volume: CTVolume) -> np.ndarray | None:
    """The 4x4 RAS+ voxel-to-world affine (mm) of ``volume.hu`` stored as a NIfTI array ``(cols, rows,
    slices)`` (``hu.transpose(2, 1, 0)``), from the first slice's ImagePositionPatient and
    ImageOrientationPatient, PixelSpacing and the slice positions; ``None`` when the files lack them."""
    import pydicom

    if volume.pixel_spacing_mm is None or not volume.paths:
        return None
    try:
        ds = pydicom.dcmread(volume.paths[0], stop_before_pixels=True)
        orient = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        origin = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
    except (AttributeError, ValueError, TypeError, OSError):
        return None
    row_dir, col_dir = orient[:3], orient[3:]  # along a row (column index grows), along a column
    normal = np.cross(row_dir, col_dir)
    positions = volume.slice_positions_mm
    step = float(np.median(np.diff(positions))) if positions and len(positions) > 1 else float(
        ds.get("SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * volume.pixel_spacing_mm[1]
    lps[:3, 1] = col_dir * volume.pixel_spacing_mm[0]
    lps[:3, 2] = normal * step
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's LPS world to NIfTI's RAS


def load_ct_series(source: str | os.PathLike | Iterable[str | os.PathLike]) -> CTVolume:
    """Read a CT series (a folder, one file, or a list of files; multi-frame files allowed) as HU.

    Raises:
        DataFormatError: a file that is not DICOM, not CT, has no pixel data or no rescale pair,
            whose image size or pixel spacing differs from the others', whose slice position repeats
            another file's, or a series with a missing slice or irregular slice spacing. The message
            names the file.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    slices: list[tuple[float | None, int, np.ndarray, Path]] = []
    spacing = None
    for path in _files(source):
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError) as err:
            raise DataFormatError(f"{path}: not a readable DICOM file: {err}") from None
        if ds.get("Modality") != "CT":
            raise DataFormatError(f"{path}: Modality is {ds.get('Modality')!r}, not 'CT'")
        if "PixelData" not in ds:
            raise DataFormatError(f"{path}: no PixelData")
        try:
            pixels = np.asarray(ds.pixel_array, dtype=np.float64)
        except Exception as err:  # missing decoder plug-ins, truncated pixel data
            raise DataFormatError(f"{path}: cannot decode PixelData "
                                  f"({ds.file_meta.get('TransferSyntaxUID', '?')}): {err}") from None
        frames = pixels if int(ds.get("NumberOfFrames", 1) or 1) > 1 else pixels[None]
        if "PixelSpacing" in ds:
            this = tuple(float(s) for s in ds.PixelSpacing)
            if spacing is not None and not np.allclose(this, spacing[0], rtol=1e-3):
                raise DataFormatError(f"{path}: PixelSpacing {this} mm differs from {spacing[1]}'s {spacing[0]} mm; "
                                      "a series has one pixel size")
            spacing = spacing or (this, path)
        for f, frame in enumerate(frames):
            slope, intercept = _rescale(ds, f, path)
            slices.append((_position(ds), int(ds.get("InstanceNumber", 0) or 0) * 10_000 + f,
                           frame * slope + intercept, path))
    shapes = {s[2].shape for s in slices}
    if len(shapes) != 1:
        odd = next(s[3] for s in slices if s[2].shape != slices[0][2].shape)
        raise DataFormatError(f"{odd}: image size differs from the rest of the series ({sorted(shapes)})")
    have_positions = all(s[0] is not None for s in slices) and len({s[0] for s in slices}) == len(slices)
    if all(s[0] is not None for s in slices) and not have_positions:
        seen: dict[float, Path] = {}
        for position, _, _, path in slices:
            if position in seen and seen[position] != path:  # frames of one multi-frame file may share one
                raise DataFormatError(f"{path}: slice position {position:g} mm repeats {seen[position]} (two series "
                                      "in one folder, or a duplicated file); keep one series per folder")
            seen.setdefault(position, path)
    slices.sort(key=(lambda s: s[0]) if have_positions else (lambda s: s[1]))
    if have_positions and len(slices) > 2:
        _check_slice_spacing([s[0] for s in slices], [s[3] for s in slices])
    hu = np.stack([s[2] for s in slices]).astype(np.float32)
    positions = tuple(s[0] for s in slices) if have_positions else None
    return CTVolume(hu, spacing[0] if spacing else None, positions, tuple(s[3] for s in slices))


#: relative deviation of a slice gap from the series' median gap that is refused
SPACING_TOLERANCE = 0.01


def _check_slice_spacing(positions: list[float], paths: list[Path]) -> None:
    """A volume is a regular grid: refuse a gap of about a whole multiple of the median (a missing
    slice) or any other gap off the median by more than :data:`SPACING_TOLERANCE`, naming both files."""
    gaps = np.diff(np.asarray(positions, dtype=np.float64))
    step = float(np.median(gaps))
    for i, gap in enumerate(gaps):
        if abs(gap - step) <= SPACING_TOLERANCE * step:
            continue
        ratio = gap / step
        if abs(ratio - round(ratio)) <= SPACING_TOLERANCE and round(ratio) >= 2:
            raise DataFormatError(f"{paths[i + 1]}: {round(ratio) - 1} slice(s) missing between it and {paths[i]} "
                                  f"(gap {gap:g} mm, the series steps {step:g} mm)")
        raise DataFormatError(f"{paths[i + 1]}: inconsistent slice spacing: {gap:g} mm after {paths[i]}, the series "
                              f"steps {step:g} mm (tolerance {SPACING_TOLERANCE:.0%})")


def hu_window(hu: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """Display window: map ``[level - width/2, level + width/2]`` HU to ``[0, 1]``, clipped."""
    return np.clip((np.asarray(hu, dtype=np.float32) - (level - width / 2)) / width, 0, 1)


def hu_to_attenuation(hu: np.ndarray, mu_water: float = MU_WATER_PER_MM) -> np.ndarray:
    """Linear attenuation per mm, ``mu = mu_water (1 + HU / 1000)``, clipped at 0 (air)."""
    return np.clip(mu_water * (1 + np.asarray(hu, dtype=np.float32) / 1000), 0, None)
