"""fastMRI HDF5 files: a lazy, validating reader and the prediction-file writer.

The schema (fastMRI data README and ``fastmri/data/mri_data.py``):

* ``kspace``: complex64, ``(slices, coils, H, W)`` multi-coil or ``(slices, H, W)`` single-coil;
  ``H`` is the readout (``encodedSpace`` x, often 2x oversampled), ``W`` the phase encodes
  (``encodedSpace`` y). Centred k-space under fastMRI's orthonormal FFT (:mod:`invdiff.operators.fft`).
* ``reconstruction_rss`` (multi-coil and single-coil) and ``reconstruction_esc`` (single-coil):
  float32 ``(slices, recon x, recon y)`` targets; absent from test and challenge files.
* ``mask``: ``(W,)`` sampled columns, only in test and challenge files (whose k-space is masked).
* ``ismrmrd_header``: XML, see :mod:`invdiff.datasets.ismrmrd`.
* attributes ``acquisition`` (e.g. ``"AXT1"``), ``max`` and ``norm`` (of the target volume),
  ``patient_id``; test files add ``acceleration`` and ``num_low_frequency``.

Files are opened read-only and never held open between calls, so a :class:`FastMRIFile` can be sent
to DataLoader workers. Every problem is raised as :class:`~invdiff.datasets.errors.DataFormatError`
with the file's path and the key at fault.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor

from invdiff.datasets.errors import DataFormatError
from invdiff.datasets.ismrmrd import EncodingInfo, parse_header
from invdiff.io import atomic_write
from invdiff.operators.fft import center_crop, ifft2c, rss

__all__ = ["FastMRIFile", "find_fastmri_files", "read_prediction", "rss_reconstruction", "write_prediction"]

TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")
_ATTR_TYPES = {"acquisition": str, "patient_id": str, "max": float, "norm": float, "acceleration": float,
               "num_low_frequency": int}


def _attr(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


@contextmanager
def _open_h5(path: Path) -> Iterator[h5py.File]:
    """Open read-only; an unreadable file becomes a DataFormatError naming it."""
    try:
        hf = h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}") from None
    with hf:
        yield hf


@dataclass(frozen=True)
class FastMRIFile:
    """Metadata of one fastMRI volume, validated on construction; slices are read on demand.

    Use :meth:`open` to build one. Attributes:
        path: the file.
        kspace_shape: ``(slices, coils, H, W)`` or ``(slices, H, W)``.
        encoding: the parsed ISMRMRD header fields.
        target_key: ``"reconstruction_rss"``/``"reconstruction_esc"`` or ``None`` (test files).
        target_shape: ``(slices, h, w)`` of the target, or ``None``.
        mask: the file's own ``(W,)`` column mask (float32 0/1) for test files, else ``None``.
        attrs: the HDF5 attributes, strings decoded and numbers as Python scalars.
    """

    path: Path
    kspace_shape: tuple[int, ...]
    encoding: EncodingInfo
    target_key: str | None
    target_shape: tuple[int, int, int] | None
    mask: Tensor | None
    attrs: dict

    @classmethod
    def open(cls, path: str | os.PathLike, target_key: str | None = None) -> FastMRIFile:
        """Read and check a file's metadata (not its k-space).

        Args:
            path: a fastMRI ``.h5`` file.
            target_key: which target to use; by default ``reconstruction_rss`` for multi-coil files and
                ``reconstruction_esc`` (else ``_rss``) for single-coil files, as fastMRI does.

        Raises:
            DataFormatError: unreadable or truncated HDF5, a missing ``kspace`` or ``ismrmrd_header``,
                k-space that is not complex with 3 or 4 dimensions, a header whose encoded size does
                not match the k-space, a target or mask of the wrong shape, a bad attribute type.
        """
        path = Path(path)
        if not path.is_file():
            raise DataFormatError(f"{path}: no such file")
        with _open_h5(path) as hf:
            if "kspace" not in hf:
                raise DataFormatError(f"{path}: missing dataset 'kspace' (keys: {sorted(hf.keys())})")
            ksp = hf["kspace"]
            if not isinstance(ksp, h5py.Dataset) or ksp.ndim not in (3, 4) or ksp.dtype.kind != "c":
                raise DataFormatError(f"{path}: 'kspace' must be complex (slices, [coils,] H, W), got "
                                      f"{getattr(ksp, 'dtype', '?')} {getattr(ksp, 'shape', '?')}")
            shape = tuple(int(s) for s in ksp.shape)
            if min(shape) == 0:
                raise DataFormatError(f"{path}: 'kspace' is empty, shape {shape}")
            if "ismrmrd_header" not in hf:
                raise DataFormatError(f"{path}: missing dataset 'ismrmrd_header'")
            encoding = parse_header(hf["ismrmrd_header"][()], source=str(path))
            h, w = shape[-2:]
            if (encoding.encoded_size[0], encoding.encoded_size[1]) != (h, w):
                raise DataFormatError(f"{path}: ismrmrd_header encoded matrix {encoding.encoded_size[:2]} does not "
                                      f"match the k-space readout x phase-encode size ({h}, {w})")
            multicoil = len(shape) == 4
            if target_key is None:
                preferred = TARGET_KEYS if multicoil else TARGET_KEYS[::-1]
                target_key = next((k for k in preferred if k in hf), None)
            elif target_key not in TARGET_KEYS:
                raise DataFormatError(f"{path}: target_key must be one of {TARGET_KEYS}, got {target_key!r}")
            elif target_key not in hf:
                raise DataFormatError(f"{path}: missing dataset {target_key!r}")
            target_shape = None
            if target_key is not None:
                target_shape = tuple(int(s) for s in hf[target_key].shape)
                if len(target_shape) != 3 or target_shape[0] != shape[0]:
                    raise DataFormatError(f"{path}: {target_key!r} must be ({shape[0]}, h, w) like the k-space "
                                          f"slices, got {target_shape}")
            mask = None
            if "mask" in hf:
                mask_data = np.asarray(hf["mask"][()])
                if mask_data.shape != (w,):
                    raise DataFormatError(f"{path}: 'mask' must be ({w},), one entry per phase encode, "
                                          f"got {mask_data.shape}")
                mask = torch.from_numpy((mask_data != 0).astype(np.float32))
            attrs = {k: _attr(v) for k, v in hf.attrs.items()}
        for key, kind in _ATTR_TYPES.items():
            if key in attrs:
                try:
                    attrs[key] = kind(attrs[key])
                except (TypeError, ValueError):
                    raise DataFormatError(f"{path}: attribute {key!r} should be {kind.__name__}, "
                                          f"got {attrs[key]!r}") from None
        return cls(path, shape, encoding, target_key, target_shape, mask, attrs)

    @property
    def num_slices(self) -> int:
        return self.kspace_shape[0]

    @property
    def multicoil(self) -> bool:
        return len(self.kspace_shape) == 4

    @property
    def num_coils(self) -> int:
        return self.kspace_shape[1] if self.multicoil else 1

    @property
    def recon_size(self) -> tuple[int, int]:
        """``(h, w)`` of the reconstruction: the header's ``reconSpace`` matrix ``(x, y)``."""
        return self.encoding.recon_size[0], self.encoding.recon_size[1]

    @property
    def acquired_columns(self) -> tuple[int, int]:
        """fastMRI's ``(padding_left, padding_right)``: columns outside are zero padding, never sampled."""
        return self.encoding.padding

    def _check_slice(self, index: int) -> int:
        if not -self.num_slices <= index < self.num_slices:
            raise IndexError(f"{self.path}: slice {index} out of range for {self.num_slices} slices")
        return index % self.num_slices

    def _read(self, key: str, index: int | slice) -> np.ndarray:
        where = f"slice {index}" if isinstance(index, int) else "volume"
        with _open_h5(self.path) as hf:
            try:
                data = hf[key][index]
            except (OSError, KeyError) as err:
                raise DataFormatError(f"{self.path}: cannot read {key!r} {where}: {err}") from None
        if not np.all(np.isfinite(data)):
            raise DataFormatError(f"{self.path}: {key!r} {where} contains NaN or Inf")
        return data

    def kspace(self, index: int) -> Tensor:
        """Complex64 k-space of one slice: ``(coils, H, W)`` or ``(H, W)``."""
        return torch.from_numpy(self._read("kspace", self._check_slice(index)))

    def target(self, index: int) -> Tensor | None:
        """float32 ``(h, w)`` target of one slice, or ``None`` for files without one."""
        if self.target_key is None:
            return None
        return torch.from_numpy(self._read(self.target_key, self._check_slice(index)).astype(np.float32))

    def target_volume(self) -> np.ndarray | None:
        """The whole float32 target volume ``(slices, h, w)``, or ``None``."""
        if self.target_key is None:
            return None
        return self._read(self.target_key, slice(None)).astype(np.float32)


def rss_reconstruction(kspace: Tensor, recon_size: tuple[int, int]) -> Tensor:
    """fastMRI's RSS image: root-sum-of-squares over coils (dim -3) of the inverse centred FFT of
    complex ``(..., C, H, W)`` k-space, centre-cropped to ``recon_size``.

    On fully sampled k-space this is how ``reconstruction_rss`` is made; on masked k-space it is the
    zero-filled baseline.
    """
    return center_crop(rss(ifft2c(kspace), dim=-3), recon_size)


def find_fastmri_files(source: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Sorted ``.h5`` files of a folder, a single file, or the given list (checked to exist)."""
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
        if source.is_dir():
            files = sorted(source.glob("*.h5"))
            if not files:
                raise DataFormatError(f"{source}: no .h5 files in this folder")
            return files
        source = [source]
    files = [Path(p) for p in source]
    for p in files:
        if not p.is_file():
            raise DataFormatError(f"{p}: no such file")
    return files


def write_prediction(path: str | os.PathLike, reconstruction: np.ndarray | Tensor, *,
                     attrs: dict | None = None, std: np.ndarray | Tensor | None = None) -> Path:
    """Write one volume's reconstruction as a fastMRI prediction file, atomically.

    fastMRI's evaluation (``fastmri/evaluate.py``) reads the dataset ``reconstruction`` of the
    prediction file named like the target file.

    Args:
        path: output ``.h5`` path, normally ``<out_dir>/<input file name>``.
        reconstruction: real ``(slices, h, w)`` magnitude images.
        attrs: extra HDF5 attributes (e.g. the sampler and its settings).
        std: the pixel-wise posterior std ``(slices, h, w)``, written as ``reconstruction_std`` (fastMRI's
            evaluation ignores it; ``invdiff calibrate`` fits intervals from it).
    """
    recon = reconstruction.detach().cpu().numpy() if isinstance(reconstruction, Tensor) else np.asarray(reconstruction)
    spread = None if std is None else (std.detach().cpu().numpy() if isinstance(std, Tensor) else np.asarray(std))
    if spread is not None and (spread.shape != recon.shape or not np.all(np.isfinite(spread))):
        raise ValueError(f"{path}: std must be finite and shaped like the reconstruction {recon.shape}, "
                         f"got {spread.shape}")
    if recon.ndim != 3 or np.iscomplexobj(recon):
        raise ValueError(f"{path}: reconstruction must be real (slices, h, w), got {recon.dtype} {recon.shape}")
    if not np.all(np.isfinite(recon)):
        raise ValueError(f"{path}: reconstruction contains NaN or Inf")

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as hf:
            hf.create_dataset("reconstruction", data=recon.astype(np.float32))
            if spread is not None:
                hf.create_dataset("reconstruction_std", data=spread.astype(np.float32))
            for k, v in (attrs or {}).items():
                hf.attrs[k] = v

    return atomic_write(path, write)


def read_prediction(path: str | os.PathLike, key: str = "reconstruction") -> np.ndarray:
    """The ``reconstruction`` dataset of a prediction file (or ``key``, e.g. ``reconstruction_std``),
    float32 ``(slices, h, w)``."""
    path = Path(path)
    with _open_h5(path) as hf:
        if key not in hf:
            raise DataFormatError(f"{path}: missing dataset {key!r} (keys: {sorted(hf.keys())})")
        recon = np.asarray(hf[key][()], dtype=np.float32)
    if recon.ndim != 3:
        raise DataFormatError(f"{path}: {key!r} must be (slices, h, w), got {recon.shape}")
    return recon


def prediction_slices(path: str | os.PathLike) -> list[int] | None:
    """The slices a prediction file's run solved (its ``slices`` attribute, written by ``invdiff
    reconstruct``; the others are zeros), or ``None`` when it does not say (all slices)."""
    with _open_h5(Path(path)) as hf:
        value = hf.attrs.get("slices")
    return None if value is None else [int(v) for v in np.atleast_1d(value)]
