"""NIfTI and DICOM CT volumes, and the offline anatomy catalogue."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from invdiff.datasets import (ANATOMY_SOURCES, AnatomySource, DataFormatError, anatomy_sources, hu_to_attenuation,
                              hu_window, load_anatomy, load_ct_series, load_nifti, normalize_intensity, save_nifti,
                              slices_to_volume, volume_slices)
from invdiff.datasets.dicom import MU_WATER_PER_MM

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
PYDICOM_DATA = Path(pydicom.__file__).parent / "data" / "test_files"


# --- NIfTI ------------------------------------------------------------------------------------------------

@pytest.fixture
def las_volume(tmp_path) -> Path:
    """A small LPS-oriented volume with distinct voxels, so reorientation errors show."""
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    affine = np.diag([-2.0, -3.0, 4.0, 1.0])
    affine[:3, 3] = [10, 20, -30]
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_nifti_is_reoriented_to_ras_without_moving_any_voxel_in_world_space(las_volume):
    src = nib.load(las_volume)
    vol = load_nifti(las_volume)
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S") and vol.zooms == (2.0, 3.0, 4.0)
    data = np.asarray(src.dataobj)
    for ijk in [(0, 0, 0), (3, 1, 5), (2, 4, 0)]:
        world = src.affine @ np.array([*ijk, 1.0])
        ras_ijk = np.round(np.linalg.solve(vol.affine, world)[:3]).astype(int)
        assert vol.data[tuple(ras_ijk)] == data[ijk]


def test_nifti_output_takes_the_inputs_affine_and_orientation(las_volume, tmp_path):
    vol = load_nifti(las_volume)
    out = save_nifti(tmp_path / "out" / "recon.nii.gz", vol.data * 2, like=vol)
    written, src = nib.load(out), nib.load(las_volume)
    np.testing.assert_array_equal(written.affine, src.affine)
    np.testing.assert_array_equal(written.get_fdata(), 2 * src.get_fdata())
    with pytest.raises(ValueError, match=r"\.nii or \.nii\.gz"):
        save_nifti(tmp_path / "recon.h5", vol.data, like=vol)
    with pytest.raises(ValueError, match="must match the input volume"):
        save_nifti(tmp_path / "recon.nii", vol.data[:2], like=vol)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["recon.nii.gz"]  # no temporary left


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_slices_round_trip_and_display_orientation(plane):
    data = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    slices = volume_slices(data, plane)
    np.testing.assert_array_equal(slices_to_volume(slices, plane), data)
    if plane == "axial":
        # row 0 is the most anterior (largest y), column 0 the leftmost (smallest x)
        assert slices.shape == (6, 5, 4)
        assert slices[2, 0, 0] == data[0, 4, 2] and slices[2, 4, 3] == data[3, 0, 2]


def test_real_nifti_from_nibabel_and_normalisation():
    vol = load_nifti(NIBABEL_DATA / "anatomical.nii")  # stored LAS
    assert vol.data.shape == (33, 41, 25) and nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    raw = np.asarray(nib.load(NIBABEL_DATA / "anatomical.nii").dataobj, dtype=np.float32)
    np.testing.assert_array_equal(vol.data, raw[::-1])  # L->R flip of the first axis only
    norm = normalize_intensity(vol.data)
    assert norm.min() == 0 and norm.max() == 1 and np.mean(norm == 1) == pytest.approx(0.005, abs=0.002)
    with pytest.raises(ValueError, match="empty range"):
        normalize_intensity(np.ones((3, 3)))


def test_bad_nifti_input(tmp_path):
    with pytest.raises(DataFormatError, match="volume_index"):
        load_nifti(NIBABEL_DATA / "example4d.nii.gz")
    assert load_nifti(NIBABEL_DATA / "example4d.nii.gz", volume_index=1).data.shape == (128, 96, 24)
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(DataFormatError, match="cannot read as NIfTI") as err:
        load_nifti(bad)
    assert str(bad) in str(err.value)
    nan = tmp_path / "nan.nii"
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), np.nan, np.float32), np.eye(4)), nan)
    with pytest.raises(DataFormatError, match="NaN"):
        load_nifti(nan)


# --- DICOM CT --------------------------------------------------------------------------------------------

def test_ct_small_in_hounsfield_units():
    ds = pydicom.dcmread(PYDICOM_DATA / "CT_small.dcm")
    vol = load_ct_series(PYDICOM_DATA / "CT_small.dcm")
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.hu[0], expected.astype(np.float32))
    assert vol.pixel_spacing_mm == pytest.approx((0.661468, 0.661468))
    # a vertebra: bone brighter than +300 HU, soft tissue around 0-100 HU
    assert vol.hu.max() > 300 and -200 < np.median(vol.hu) < 200


def _series(tmp_path: Path, positions: list[float]) -> Path:
    folder = tmp_path / "series"
    folder.mkdir()
    for i, z in enumerate(positions):
        ds = pydicom.dcmread(PYDICOM_DATA / "CT_small.dcm")
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = i + 1
        pixels = np.full((ds.Rows, ds.Columns), int(z), dtype=ds.pixel_array.dtype)
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"slice{i}.dcm")
    return folder


def test_series_is_sorted_along_the_slice_normal(tmp_path):
    folder = _series(tmp_path, [30.0, 10.0, 20.0])
    vol = load_ct_series(folder)
    ds = pydicom.dcmread(PYDICOM_DATA / "CT_small.dcm")
    assert vol.slice_positions_mm == (10.0, 20.0, 30.0)
    assert [float(s[0, 0]) for s in vol.hu] == [z * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                                                 for z in (10, 20, 30)]


def test_series_with_a_missing_slice_or_irregular_spacing_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(DataFormatError, match=r"slice2.dcm: 1 slice\(s\) missing between it and .*slice1.dcm "
                                              r"\(gap 20 mm, the series steps 10 mm\)"):
        load_ct_series(_series(tmp_path / "a", [0.0, 10.0, 30.0, 40.0]))
    (tmp_path / "b").mkdir()
    with pytest.raises(DataFormatError, match=r"slice2.dcm: inconsistent slice spacing: 13 mm after"):
        load_ct_series(_series(tmp_path / "b", [0.0, 10.0, 23.0, 33.0]))
    (tmp_path / "c").mkdir()
    folder = _series(tmp_path / "c", [0.0, 10.0, 20.0])
    ds = pydicom.dcmread(folder / "slice2.dcm")
    ds.PixelSpacing = [0.9, 0.9]
    ds.save_as(folder / "slice2.dcm")
    with pytest.raises(DataFormatError, match=r"slice2.dcm: PixelSpacing \(0.9, 0.9\) mm differs"):
        load_ct_series(folder)


def test_bad_dicom_input(tmp_path):
    with pytest.raises(DataFormatError, match="Modality is 'MR'"):
        load_ct_series(PYDICOM_DATA / "MR_small.dcm")
    not_dicom = tmp_path / "x.dcm"
    not_dicom.write_bytes(b"hello")
    with pytest.raises(DataFormatError, match="not a readable DICOM") as err:
        load_ct_series(not_dicom)
    assert str(not_dicom) in str(err.value)
    ds = pydicom.dcmread(PYDICOM_DATA / "CT_small.dcm")
    del ds.RescaleIntercept
    ds.save_as(tmp_path / "norescale.dcm")
    with pytest.raises(DataFormatError, match="RescaleIntercept"):
        load_ct_series(tmp_path / "norescale.dcm")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="no files"):
        load_ct_series(empty)


def test_hu_conversions():
    assert hu_to_attenuation(np.array([0.0]))[0] == pytest.approx(MU_WATER_PER_MM)
    assert hu_to_attenuation(np.array([-1000.0, -3024.0])).tolist() == [0.0, 0.0]
    np.testing.assert_allclose(hu_window(np.array([-160.0, 40.0, 240.0, 1000.0])), [0.0, 0.5, 1.0, 1.0])


# --- offline anatomy ---------------------------------------------------------------------------------------

def test_catalogue_records_subject_licence_and_package():
    for source in ANATOMY_SOURCES.values():
        assert source.subject and source.licence and source.package and source.modality in ("MR", "CT")
    # the dependencies always provide some MR and CT anatomy
    assert {"nibabel_anatomical", "pydicom_mr_small", "pydicom_ct_small"} <= {s.name for s in anatomy_sources(
        available_only=True)}


@pytest.mark.parametrize("name", ["nibabel_anatomical", "pydicom_mr_small", "pydicom_ct_small"])
def test_anatomy_from_the_dependencies(name):
    images = load_anatomy(name, size=64)
    assert images.ndim == 3 and images.shape[1:] == (64, 64) and images.dtype == np.float32
    if ANATOMY_SOURCES[name].modality == "MR":
        assert images.min() >= 0 and images.max() == pytest.approx(1.0, abs=0.02)
    else:
        assert images.min() >= -1024 and images.max() > 300


def test_anatomy_slices_are_filtered_by_foreground():
    every = load_anatomy("nibabel_anatomical")
    kept = load_anatomy("nibabel_anatomical", min_foreground=0.995)  # a brain-extracted volume: few dark pixels
    assert 0 < len(kept) < len(every)
    assert all((im > 0.1).mean() >= 0.995 for im in kept)


def test_missing_or_unknown_anatomy():
    with pytest.raises(KeyError, match="unknown anatomy source"):
        load_anatomy("nope")
    ghost = AnatomySource("ghost", "MR", "x", "x", "ghost-pkg", "MIT", "/nonexistent", "a.nii", "nifti-axial")
    assert ghost.path() is None and not ghost.available
    ANATOMY_SOURCES["ghost"] = ghost
    try:
        with pytest.raises(FileNotFoundError, match="ghost-pkg"):
            load_anatomy("ghost")
    finally:
        del ANATOMY_SOURCES["ghost"]


@pytest.mark.skipif(not ANATOMY_SOURCES["colin27_t1"].available, reason="needs Debian's mricron-data")
def test_colin27_volume_when_installed():
    images = load_anatomy("colin27_t1", size=128, min_foreground=0.3)
    assert images.shape[1:] == (128, 128) and len(images) > 100
