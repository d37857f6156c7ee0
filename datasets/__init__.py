"""Data in and out (installed as ``invdiff.datasets``).

* fastMRI HDF5: :class:`FastMRIFile` (lazy, validating reader), :class:`FastMRISliceDataset`,
  :func:`iter_volumes`, :func:`write_prediction` / :func:`read_prediction`, ISMRMRD headers.
* Simulation: :func:`simulate_multicoil` and :func:`write_fastmri_file` turn magnitude images into
  multi-coil fastMRI files; :func:`birdcage_maps`; cached ESPIRiT maps (:class:`CoilMapCache`).
* Volumes: NIfTI (:func:`load_nifti`, :func:`save_nifti`), DICOM CT in HU (:func:`load_ct_series`).
* Offline real anatomy (:func:`load_anatomy`) and phantoms (:func:`shepp_logan`, :func:`random_ellipses`).
* :func:`demo_scan`: the embedded multi-coil demo volume.

Every bad input raises :class:`DataFormatError` naming the file and the key or field at fault.
"""

from pathlib import Path

import numpy as np

from invdiff.datasets.anatomy import ANATOMY_SOURCES, AnatomySource, anatomy_sources, load_anatomy
from invdiff.datasets.coil_maps import CoilMapCache, birdcage_maps, default_cache_dir, normalize_maps
from invdiff.datasets.dicom import CTVolume, hu_to_attenuation, hu_window, load_ct_series, series_affine
from invdiff.datasets.errors import DataFormatError
from invdiff.datasets.fastmri import (FastMRIFile, find_fastmri_files, prediction_slices, read_prediction,
                                      write_prediction)
from invdiff.datasets.ismrmrd import EncodingInfo, HeaderError, build_header, parse_header
from invdiff.datasets.nifti import (NiftiVolume, load_nifti, normalize_intensity, save_nifti, slices_to_volume,
                                    volume_slices)
from invdiff.datasets.phantoms import random_ellipses, shepp_logan
from invdiff.datasets.simulate import (SimulatedVolume, SimulationSettings, simulate_multicoil, simulate_singlecoil,
                                       write_fastmri_file)
from invdiff.datasets.slices import FastMRISliceDataset, iter_volumes, slice_mask

__all__ = [
    "ANATOMY_SOURCES", "AnatomySource", "CTVolume", "CoilMapCache", "DataFormatError", "EncodingInfo",
    "FastMRIFile", "FastMRISliceDataset", "HeaderError", "NiftiVolume", "SimulatedVolume", "SimulationSettings",
    "anatomy_sources", "birdcage_maps", "build_header", "default_cache_dir", "demo_scan", "find_fastmri_files",
    "hu_to_attenuation", "native_brain_slice", "hu_window", "iter_volumes", "load_anatomy", "load_ct_series", "load_nifti",
    "normalize_intensity", "normalize_maps", "parse_header", "prediction_slices", "random_ellipses", "read_prediction", "save_nifti", "series_affine",
    "shepp_logan", "simulate_multicoil", "simulate_singlecoil", "slice_mask", "slices_to_volume", "volume_slices", "write_fastmri_file",
    "write_prediction",
]

_DATA = Path(__file__).resolve().parent / "data"


def native_brain_slice() -> np.ndarray:
    """One axial slice of Colin27's 0.5 mm T1 brain at fastMRI brain's pixel size, ``(320, 320)`` float32
    magnitudes in ``[0, 1]`` (stored as 8 bits): axial index 150 of ``ch2better.nii.gz`` resampled to
    0.6875 mm and centre-padded, written by ``scripts/make_native_testset.py`` (provenance in
    ``datasets/README.md``). For tests of priors at native resolution; no prior was trained on Colin27.
    """
    path = _DATA / "colin27_native_slice.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from this installation; rebuild it with scripts/make_native_testset.py")
    with np.load(path, allow_pickle=False) as f:
        return f["magnitude"].astype(np.float32) / 255.0


def demo_scan() -> Path:
    """Path of the embedded demo scan, a multi-coil fastMRI file (read it with :class:`FastMRIFile`).

    Four axial slices of Colin27's T1 brain, 8 birdcage coils, k-space ``(4, 8, 256, 128)`` (2x readout
    oversampling), ``reconstruction_rss`` ``(4, 128, 128)``, 30 dB SNR; built by
    ``scripts/make_demo_scan.py`` (provenance in ``datasets/README.md`` and in the file's
    ``invdiff_simulation`` attribute). Do not write to it: it is package data.
    """
    path = _DATA / "demo_brain.h5"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the demo scan is missing from this installation; rebuild it with "
                                "scripts/make_demo_scan.py")
    return path
