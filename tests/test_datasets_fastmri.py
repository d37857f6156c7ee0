"""fastMRI files: the ISMRMRD header, the reader, the slice dataset, prediction files, bad input."""

from __future__ import annotations

import hashlib
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from invdiff.datasets import (DataFormatError, EncodingInfo, FastMRIFile, FastMRISliceDataset, HeaderError,
                              SimulationSettings, build_header, iter_volumes, parse_header, read_prediction,
                              simulate_multicoil, slice_mask, write_fastmri_file, write_prediction)
from invdiff.metrics import center_crop, evaluate_predictions, fastmri_volume_metrics
from invdiff.operators.fft import ifft2c, rss, to_complex
from invdiff.operators.masks import MaskFunc, file_seed

SETTINGS = SimulationSettings(num_coils=4, readout_oversampling=2, snr_db=35.0, seed=3)
MASK_FUNC = MaskFunc("equispaced_fraction", (0.125,), (4,))
COIL_MASK = MaskFunc("equispaced_fraction", (0.4,), (2,))  # a 12-column ACS region for ESPIRiT


def _magnitude(slices: int = 3, h: int = 40, w: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j]
    head = ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 <= 1).astype(np.float32)
    return np.stack([head * (0.5 + 0.1 * s) + 0.4 * ((xx - 0.2 * s) ** 2 + yy**2 < 0.1) for s in range(slices)])


@pytest.fixture(scope="session")
def fastmri_dir(tmp_path_factory) -> Path:
    """A folder with a training-style file (full k-space, target) and a test-style file (mask, no target)."""
    root = tmp_path_factory.mktemp("fastmri")
    volume = simulate_multicoil(_magnitude(), SETTINGS)
    write_fastmri_file(root / "file_train.h5", volume, provenance={"source": "ellipse"})
    drawn = MASK_FUNC(32, seed=file_seed("file_test.h5"))
    write_fastmri_file(root / "file_test.h5", simulate_multicoil(_magnitude(2), SETTINGS), mask=drawn.columns,
                       num_low_frequencies=drawn.num_low_frequencies, acceleration=drawn.acceleration)
    return root


def _copy(src: Path, dst: Path, edit) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as hf:
        edit(hf)
    return dst


# --- ISMRMRD header -------------------------------------------------------------------------------------

def _fastmri_query(xml: bytes, path: list[str]) -> int:
    """fastMRI's et_query: namespace-qualified descendant search."""
    ns = {"ismrmrd_namespace": "http://www.ismrm.org/ISMRMRD"}
    return int(ET.fromstring(xml).find("." + "".join(f"//ismrmrd_namespace:{p}" for p in path), ns).text)


def test_header_round_trip_and_fastmri_queries():
    info = EncodingInfo((640, 372, 1), (320, 320, 1), (0, 355, 178), (440.0, 220.0, 5.0), (220.0, 220.0, 5.0))
    xml = build_header(info, receiver_channels=16)
    assert parse_header(xml) == info
    assert _fastmri_query(xml, ["encoding", "encodedSpace", "matrixSize", "y"]) == 372
    assert _fastmri_query(xml, ["encoding", "reconSpace", "matrixSize", "x"]) == 320
    assert _fastmri_query(xml, ["encoding", "encodingLimits", "kspace_encoding_step_1", "center"]) == 178
    # fastMRI: padding_left = 372 // 2 - 178 = 8, padding_right = 8 + 355 + 1 = 364
    assert info.padding == (8, 364)


@pytest.mark.parametrize("edit, message", [
    (lambda x: x.replace(b"<reconSpace>", b"<reconSpaceX>").replace(b"</reconSpace>", b"</reconSpaceX>"),
     "reconSpace/matrixSize"),
    (lambda x: x.replace(b"<center>64</center>", b"<center>abc</center>"), "not an integer"),
    (lambda x: x[:-40], "not valid XML"),
    (lambda x: x.replace(b"<center>64</center>", b"<center>2</center>"), "do not fit"),
])
def test_header_errors_name_the_source_and_field(edit, message):
    xml = build_header(EncodingInfo((256, 128, 1), (128, 128, 1), (0, 127, 64)), receiver_channels=8)
    with pytest.raises(HeaderError, match=message) as err:
        parse_header(edit(xml), source="scan.h5")
    assert "scan.h5" in str(err.value)


# --- reader ---------------------------------------------------------------------------------------------

def test_reader_metadata_and_fastmri_target_definition(fastmri_dir):
    f = FastMRIFile.open(fastmri_dir / "file_train.h5")
    assert f.kspace_shape == (3, 4, 80, 32) and f.multicoil and f.num_coils == 4 and f.num_slices == 3
    assert f.recon_size == (40, 32) and f.acquired_columns == (0, 32)
    assert f.target_key == "reconstruction_rss" and f.mask is None
    assert f.attrs["acquisition"] == "AXT1" and isinstance(f.attrs["max"], float)
    target = f.target_volume()
    assert f.attrs["max"] == pytest.approx(float(target.max()), rel=1e-6)
    assert f.attrs["norm"] == pytest.approx(float(np.linalg.norm(target)), rel=1e-6)
    for s in range(3):
        k = f.kspace(s)
        assert k.dtype == torch.complex64 and k.shape == (4, 80, 32)
        expected = center_crop(rss(ifft2c(k), dim=0), (40, 32))  # fastMRI's reconstruction_rss
        torch.testing.assert_close(f.target(s), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError, match="slice 3"):
        f.kspace(3)


def test_test_style_file_has_its_mask_and_no_target(fastmri_dir):
    f = FastMRIFile.open(fastmri_dir / "file_test.h5")
    assert f.target_key is None and f.target(0) is None
    expected = MASK_FUNC(32, seed=file_seed("file_test.h5"))
    torch.testing.assert_close(f.mask, expected.columns)
    assert f.attrs["acceleration"] == 4.0 and f.attrs["num_low_frequency"] == expected.num_low_frequencies
    unsampled = f.mask == 0
    assert torch.all(f.kspace(1)[..., unsampled] == 0)


def test_deepinv_reads_our_files(fastmri_dir, tmp_path):
    from deepinv.datasets import FastMRISliceDataset as DeepinvSlices

    shutil.copy(fastmri_dir / "file_train.h5", tmp_path / "file_train.h5")
    theirs = DeepinvSlices(tmp_path)
    ours = FastMRISliceDataset(tmp_path)
    assert len(theirs) == len(ours) == 3
    for i in range(3):
        target, kspace = theirs[i]
        torch.testing.assert_close(kspace, ours[i]["kspace"])
        torch.testing.assert_close(target[0], ours[i]["target"])


# --- slice dataset ---------------------------------------------------------------------------------------

def test_slice_dataset_masks_follow_fastmri_per_file_seed(fastmri_dir):
    ds = FastMRISliceDataset(fastmri_dir / "file_train.h5", mask_func=MASK_FUNC)
    expected = MASK_FUNC(32, seed=tuple(map(ord, "file_train.h5")))
    for i in range(len(ds)):
        sample = ds[i]
        torch.testing.assert_close(sample["mask"], expected.columns)
        assert sample["num_low_frequencies"] == expected.num_low_frequencies and sample["acceleration"] == 4
        k, y = to_complex(sample["kspace"][None])[0], to_complex(sample["y"][None])[0]
        torch.testing.assert_close(y, k * expected.columns)
        assert sample["slice"] == i and sample["fname"] == "file_train.h5" and sample["recon_size"] == (40, 32)


def test_slice_dataset_uses_a_test_files_mask_and_omits_its_target(fastmri_dir):
    ds = FastMRISliceDataset(fastmri_dir)  # both files, sorted: file_test then file_train
    assert [f.path.name for f in ds.files] == ["file_test.h5", "file_train.h5"] and len(ds) == 5
    sample = ds[0]
    assert "target" not in sample and "max" not in sample
    torch.testing.assert_close(sample["mask"], ds.files[0].mask)
    assert torch.equal(ds[2]["mask"], torch.ones(32))  # fully sampled training file without a mask function
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, [2, 3]), batch_size=2)
    batch = next(iter(loader))
    assert batch["y"].shape == (2, 2, 4, 80, 32) and batch["target"].shape == (2, 40, 32)


def test_mask_never_samples_padding_columns(fastmri_dir):
    f = FastMRIFile.open(fastmri_dir / "file_train.h5")
    padded = EncodingInfo((80, 32, 1), (40, 32, 1), (0, 23, 12))  # acquired columns [4, 28)
    f = FastMRIFile(f.path, f.kspace_shape, padded, f.target_key, f.target_shape, None, f.attrs)
    assert f.acquired_columns == (4, 28)
    mask, _, _ = slice_mask(f, MASK_FUNC)
    assert mask[:4].sum() == 0 and mask[28:].sum() == 0
    full, num_low, acc = slice_mask(f)
    assert full.sum() == 24 and num_low == 24 and acc == 1.0


def test_iter_volumes_in_file_and_slice_order(fastmri_dir):
    ds = FastMRISliceDataset(fastmri_dir)
    seen = [(file.path.name, [s["slice"] for s in slices]) for file, slices in iter_volumes(ds)]
    assert seen == [("file_test.h5", [0, 1]), ("file_train.h5", [0, 1, 2])]


def test_inputs_are_never_modified(fastmri_dir, tmp_path):
    from invdiff.datasets import CoilMapCache

    path = fastmri_dir / "file_train.h5"
    before = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, sorted(fastmri_dir.iterdir())
    ds = FastMRISliceDataset(path, mask_func=COIL_MASK, coil_maps=CoilMapCache(tmp_path / "cache", calib_width=12))
    for i in range(len(ds)):
        ds[i]
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, sorted(fastmri_dir.iterdir())) == before


# --- coil maps ------------------------------------------------------------------------------------------

def test_cached_espirit_maps_match_the_simulated_coils(fastmri_dir, tmp_path, monkeypatch):
    import invdiff.datasets.coil_maps as coil_maps
    from invdiff.datasets import CoilMapCache, birdcage_maps

    cache = CoilMapCache(tmp_path / "cache", calib_width=12)
    ds = FastMRISliceDataset(fastmri_dir / "file_train.h5", mask_func=COIL_MASK, coil_maps=cache)
    maps = ds[1]["coil_maps"]
    assert maps.shape == (4, 80, 32) and maps.dtype == torch.complex64
    entries = list((tmp_path / "cache").glob("*.npy"))
    assert len(entries) == 1 and not list(fastmri_dir.glob("*.npy"))
    # ESPIRiT recovers the true coil subspace where there is signal (maps are equal up to a phase)
    true = birdcage_maps(4, (80, 32), radius=SETTINGS.coil_radius)
    inside = ds[1]["target"] > 0.3 * ds[1]["target"].max()
    overlap = (maps.conj() * true).sum(0).abs()[20:60][inside]
    assert overlap.median() > 0.98
    # second call is served from the cache
    monkeypatch.setattr(coil_maps, "espirit_maps", lambda *a, **k: pytest.fail("recomputed a cached map"))
    torch.testing.assert_close(ds[1]["coil_maps"], maps)
    # another mask is another entry
    other = FastMRISliceDataset(fastmri_dir / "file_train.h5", mask_func=MaskFunc("random", (0.4,), (2,)))
    assert cache.key(other.files[0].path, 1, other[1]["mask"]) != cache.key(ds.files[0].path, 1, ds[1]["mask"])
    narrow = FastMRISliceDataset(fastmri_dir / "file_train.h5", mask_func=MASK_FUNC, coil_maps=cache)
    with pytest.raises(ValueError, match="file_train.h5 slice 0: the fully sampled centre is 4 columns wide"):
        narrow[0]


# --- prediction files and evaluation -----------------------------------------------------------------------

def test_prediction_files_are_scored_as_fastmri_evaluate_does(fastmri_dir, tmp_path):
    target = FastMRIFile.open(fastmri_dir / "file_train.h5").target_volume()
    noisy = target + 0.05 * np.random.default_rng(0).standard_normal(target.shape).astype(np.float32)
    write_prediction(tmp_path / "file_train.h5", noisy, attrs={"sampler": "test"})
    np.testing.assert_array_equal(read_prediction(tmp_path / "file_train.h5"), noisy)
    with h5py.File(tmp_path / "file_train.h5") as hf:
        assert list(hf.keys()) == ["reconstruction"] and hf.attrs["sampler"] == "test"
    train_only = tmp_path / "targets"
    train_only.mkdir()
    shutil.copy(fastmri_dir / "file_train.h5", train_only)
    scores = evaluate_predictions(train_only, tmp_path)
    direct = fastmri_volume_metrics(target, noisy)
    assert scores["count"] == 1
    for name in ("NMSE", "PSNR", "SSIM"):
        assert scores["mean"][name] == pytest.approx(direct[name], rel=1e-12)
    write_prediction(tmp_path / "file_train.h5", target)
    perfect = evaluate_predictions(train_only, tmp_path)["mean"]
    assert perfect["NMSE"] == 0 and perfect["SSIM"] == pytest.approx(1.0)
    with pytest.raises(DataFormatError, match="no prediction"):
        evaluate_predictions(train_only, tmp_path / "elsewhere")
    # a folder of target-only files (fastMRI's evaluate.py needs only the target key) scores the same
    target_only = tmp_path / "target_only"
    target_only.mkdir()
    with h5py.File(target_only / "file_train.h5", "w") as hf:
        hf["reconstruction_rss"] = target
        hf.attrs["acquisition"] = "AXT2"
    write_prediction(tmp_path / "file_train.h5", noisy)
    again = evaluate_predictions(target_only, tmp_path)
    assert again["mean"] == pytest.approx(scores["mean"], rel=1e-12)
    assert evaluate_predictions(target_only, tmp_path, acquisition="AXT2")["count"] == 1
    with pytest.raises(DataFormatError, match="no 'reconstruction_esc' target"):
        evaluate_predictions(target_only, tmp_path, challenge="singlecoil")


def test_prediction_writer_rejects_bad_input_and_leaves_no_partial_file(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_prediction(tmp_path / "a.h5", np.full((2, 4, 4), np.nan))
    with pytest.raises(ValueError, match=r"\(slices, h, w\)"):
        write_prediction(tmp_path / "a.h5", np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


# --- bad input ---------------------------------------------------------------------------------------------

def _bad_files(src: Path, root: Path) -> dict[str, tuple[Path, str]]:
    def replace(key, data):
        def edit(hf):
            del hf[key]
            hf.create_dataset(key, data=data)
        return edit

    header = build_header(EncodingInfo((80, 32, 1), (40, 32, 1), (0, 31, 16)), receiver_channels=4)
    truncated = root / "truncated.h5"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    garbage = root / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file" * 100)
    nan_slice = _copy(src, root / "nan.h5", lambda hf: hf["kspace"].__setitem__((1, 0, 0, 0), np.nan))
    return {
        "missing kspace": (_copy(src, root / "nokspace.h5", lambda hf: hf.__delitem__("kspace")), "'kspace'"),
        "missing header": (_copy(src, root / "noheader.h5", lambda hf: hf.__delitem__("ismrmrd_header")),
                           "'ismrmrd_header'"),
        "real kspace": (_copy(src, root / "real.h5", replace("kspace", np.zeros((3, 4, 80, 32), np.float32))),
                        "must be complex"),
        "2-D kspace": (_copy(src, root / "flat.h5", replace("kspace", np.zeros((80, 32), np.complex64))),
                       "must be complex"),
        "header size mismatch": (_copy(src, root / "mismatch.h5", replace(
            "ismrmrd_header", build_header(EncodingInfo((64, 32, 1), (40, 32, 1), (0, 31, 16)), receiver_channels=4))),
            "does not match"),
        "header field missing": (_copy(src, root / "nofield.h5", replace(
            "ismrmrd_header", header.replace(b"kspace_encoding_step_1", b"kspace_encoding_step_9"))),
            "kspace_encoding_step_1"),
        "target slices": (_copy(src, root / "target.h5", replace("reconstruction_rss", np.zeros((2, 40, 32), np.float32))),
                          "'reconstruction_rss'"),
        "mask shape": (_copy(src, root / "mask.h5", lambda hf: hf.create_dataset("mask", data=np.ones(31, bool))),
                       "'mask'"),
        "attribute type": (_copy(src, root / "attr.h5", lambda hf: hf.attrs.__setitem__("max", "big")), "'max'"),
        "truncated": (truncated, "truncated or corrupt"),
        "garbage": (garbage, "truncated or corrupt"),
        "missing file": (root / "absent.h5", "no such file"),
        "nan": (nan_slice, None),
    }


def test_bad_files_raise_errors_naming_file_and_key(fastmri_dir, tmp_path):
    cases = _bad_files(fastmri_dir / "file_train.h5", tmp_path)
    for name, (path, message) in cases.items():
        if message is None:
            continue
        with pytest.raises(DataFormatError) as err:
            FastMRIFile.open(path)
        assert str(path) in str(err.value), name
        assert message in str(err.value), (name, str(err.value))
    nan_file = FastMRIFile.open(cases["nan"][0])
    nan_file.kspace(0)
    with pytest.raises(DataFormatError, match=r"'kspace' slice 1 contains NaN or Inf") as err:
        nan_file.kspace(1)
    assert str(cases["nan"][0]) in str(err.value)


def test_empty_folder_and_unknown_target_key(tmp_path, fastmri_dir):
    with pytest.raises(DataFormatError, match="no .h5 files"):
        FastMRISliceDataset(tmp_path)
    with pytest.raises(DataFormatError, match="'reconstruction_esc'"):
        FastMRIFile.open(fastmri_dir / "file_train.h5", target_key="reconstruction_esc")


def test_single_coil_files_follow_the_schema(tmp_path):
    """Single-coil files: kspace (slices, H, W), both targets, reconstruction_esc preferred (as fastMRI)."""
    rng = np.random.default_rng(0)
    kspace = (rng.standard_normal((2, 40, 24)) + 1j * rng.standard_normal((2, 40, 24))).astype(np.complex64)
    esc, rss_target = rng.random((2, 20, 24)).astype(np.float32), rng.random((2, 20, 24)).astype(np.float32)
    path = tmp_path / "file_sc.h5"
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=kspace)
        hf.create_dataset("reconstruction_esc", data=esc)
        hf.create_dataset("reconstruction_rss", data=rss_target)
        hf.create_dataset("ismrmrd_header", data=build_header(EncodingInfo((40, 24, 1), (20, 24, 1), (0, 23, 12)),
                                                              receiver_channels=1))
        hf.attrs["acquisition"] = "CORPD_FBK"
    f = FastMRIFile.open(path)
    assert not f.multicoil and f.num_coils == 1 and f.target_key == "reconstruction_esc"
    np.testing.assert_array_equal(f.target(1).numpy(), esc[1])
    assert FastMRIFile.open(path, target_key="reconstruction_rss").target(0).numpy().tolist() == rss_target[0].tolist()
    ds = FastMRISliceDataset(path, mask_func=MASK_FUNC)
    sample = ds[0]
    assert sample["kspace"].shape == (2, 40, 24) and sample["target"].shape == (20, 24)
    torch.testing.assert_close(to_complex(sample["kspace"][None])[0], torch.from_numpy(kspace[0]))
    from invdiff.datasets import CoilMapCache

    with pytest.raises(ValueError, match="single-coil"):
        FastMRISliceDataset(path, coil_maps=CoilMapCache(tmp_path / "cache"))[0]
