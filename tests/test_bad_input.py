"""Bad input and misuse: one case per kind, each answered with one line that names the option, file or
key (exit 1; argparse's own checks exit 2), never a traceback; inputs are byte-identical afterwards
and no partial output passes for a finished one. Cases that must *work* (a one-volume 4-D NIfTI, a
very noisy simulation, a rerun after a failed start) are checked for the right result."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from invdiff.cli import main

# ---------------------------------------------------------------------------------------------------
# Input files, made once per module.


def _nifti(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.diag([2.0, 2.0, 3.0, 1.0]) if affine is None
                             else affine), path)
    return path


def _head(seed: int, shape=(24, 20, 2)) -> np.ndarray:
    g = np.random.default_rng(seed)
    data = np.zeros(shape, dtype=np.float32)
    data[4:-4, 3:-3] = 1.0 + g.random((shape[0] - 8, shape[1] - 6, shape[2]))
    return data


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from pydicom.data import get_testdata_file

    root = tmp_path_factory.mktemp("inputs")
    f = {"root": root}
    f["head"] = _nifti(root / "head.nii.gz", _head(0))
    f["a_head"] = _nifti(root / "a" / "head.nii.gz", _head(1))
    f["b_head"] = _nifti(root / "b" / "head.nii.gz", _head(2))
    f["one_volume"] = _nifti(root / "one_volume.nii.gz", _head(3)[..., None],
                             np.array([[0, 2.0, 0, 5], [-2.0, 0, 0, 7], [0, 0, 3.0, -1], [0, 0, 0, 1]]))
    f["two_volumes"] = _nifti(root / "two_volumes.nii.gz", np.stack([_head(4), _head(5)], -1))
    nan = _head(6)
    nan[5, 5, 0] = np.nan
    f["nan"] = _nifti(root / "nan.nii.gz", nan)
    (root / "corrupt.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    f["corrupt_nifti"] = root / "corrupt.nii.gz"
    with h5py.File(root / "not_fastmri.h5", "w") as h:
        h["images"] = np.zeros((2, 8, 8), dtype=np.float32)
    f["not_fastmri"] = root / "not_fastmri.h5"
    (root / "corrupt.h5").write_bytes(b"HDF? no")
    f["corrupt_h5"] = root / "corrupt.h5"
    with h5py.File(root / "singlecoil_with_coils.h5", "w") as h:
        h["kspace"] = np.zeros((2, 16, 16), dtype=np.complex64)
    f["kspace_3d"] = root / "singlecoil_with_coils.h5"
    from invdiff.datasets import EncodingInfo, build_header

    with h5py.File(root / "header_disagrees.h5", "w") as h:
        h["kspace"] = np.zeros((2, 16, 16), dtype=np.complex64)
        header = build_header(EncodingInfo((32, 16, 1), (16, 16, 1), (0, 15, 8)), receiver_channels=1)
        h["ismrmrd_header"] = np.frombuffer(header, dtype=np.uint8).tobytes()
    f["header_disagrees"] = root / "header_disagrees.h5"
    ct = get_testdata_file("CT_small.dcm")
    dup = root / "dicom_duplicates"
    dup.mkdir()
    shutil.copy(ct, dup / "one.dcm")
    shutil.copy(ct, dup / "two.dcm")
    f["dicom_duplicates"] = dup
    mixed = root / "dicom_with_text"
    mixed.mkdir()
    shutil.copy(ct, mixed / "one.dcm")
    (mixed / "notes.txt").write_text("not DICOM")
    f["dicom_with_text"] = mixed
    mr = root / "dicom_mr"
    mr.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), mr / "mr.dcm")
    f["dicom_mr"] = mr
    (root / "empty").mkdir()
    f["empty"] = root / "empty"
    (root / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated")
    f["corrupt_prior"] = root / "corrupt.pt"
    (root / "evil.pt").write_bytes(pickle.dumps(_Evil()))
    f["evil_prior"] = root / "evil.pt"
    torch.save({"weights": torch.zeros(3)}, root / "foreign.pt")
    f["foreign_prior"] = root / "foreign.pt"
    (root / "a_file").write_text("x")
    f["a_file"] = root / "a_file"
    return f


def _digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# invdiff reconstruct: refused with one line. {NAME} is a file of the fixture, {OUT} a fresh output folder.

RECONSTRUCT = [
    # (case, argv after "reconstruct", exit code, words the message holds)
    ("missing file", ["{root}/nope.h5"], 1, ["nope.h5: no such file"]),
    ("missing volume", ["{root}/nope.nii.gz"], 1, ["nope.nii.gz: no such file"]),
    ("empty --out", ["demo", "--out", ""], 1, ["--out is empty"]),
    ("--out is a file", ["demo", "--out", "{a_file}"], 1, ["exists and is not a folder"]),
    ("--out under a file", ["demo", "--out", "{a_file}/sub"], 1, ["cannot write there"]),
    ("--device gpu0", ["demo", "--device", "gpu0"], 1, ["--device 'gpu0': not a device name"]),
    ("--device tpu", ["demo", "--device", "tpu"], 1, ["--device 'tpu'"]),
    ("--set lam=abc", ["demo", "--set", "lam=abc"], 1, ["setting lam must be a finite number", "'abc'"]),
    ("--set typo", ["demo", "--set", "lamb=1"], 1, ["has no setting 'lamb'", "it takes"]),
    ("--set no value", ["demo", "--set", "lam"], 1, ["expected KEY=VALUE"]),
    ("--set nan", ["demo", "--set", "lam=nan"], 1, ["lam must be a finite number"]),
    ("--set int for flag", ["demo", "--sampler", "dps", "--set", "clip=1"], 1, ["clip must be true or false"]),
    ("--set float for int", ["demo", "--sampler", "cg", "--set", "iterations=2.5"], 1, ["must be an integer"]),
    ("unknown sampler", ["demo", "--sampler", "dsp"], 1, ["unknown sampler 'dsp'"]),
    ("token sampler, continuous prior", ["demo", "--sampler", "aps", "--prior", "mri_brain_128"], 1,
     ["'mri_brain_128'", "not a masked token prior"]),
    ("token sampler on CT", ["shepp-logan", "--sampler", "guided-remasking"], 1, ["no shipped token prior serves ct"]),
    ("token prior, continuous sampler", ["demo", "--prior", "mri_brain_tokens_128"], 1,
     ["masked token prior", "not a diffusion denoiser"]),
    ("--steps 0", ["demo", "--steps", "0"], 2, ["argument --steps: must be >= 1"]),
    ("--steps abc", ["demo", "--steps", "abc"], 2, ["argument --steps: expected an integer"]),
    ("--particles 0", ["demo", "--particles", "0"], 2, ["argument --particles: must be >= 1"]),
    ("--particles -1", ["demo", "--particles", "-1"], 2, ["argument --particles"]),
    ("--seed -1", ["demo", "--seed", "-1"], 2, ["argument --seed: must be >= 0"]),
    ("--acceleration 1000", ["demo", "--acceleration", "1000"], 1, ["--acceleration", "[1, 32]", "1000"]),
    ("--acceleration nan", ["demo", "--acceleration", "nan"], 2, ["argument --acceleration: must be a finite"]),
    ("--acceleration inf", ["demo", "--acceleration", "inf"], 2, ["must be a finite number"]),
    ("--acceleration 0.5", ["demo", "--acceleration", "0.5"], 1, ["--acceleration", "0.5"]),
    ("--center-fraction 0", ["demo", "--center-fraction", "0"], 1, ["--center-fraction", "(0, 1)"]),
    ("--center-fraction 1.5", ["demo", "--center-fraction", "1.5"], 1, ["--center-fraction"]),
    ("centre exceeds budget", ["demo", "--center-fraction", "0.3"], 1, ["center_fraction x acceleration"]),
    ("--calib-rows -1", ["demo", "--calib-rows", "-1"], 2, ["argument --calib-rows"]),
    ("--calib-rows 6", ["demo", "--calib-rows", "6"], 1, ["calib_rows 6", "minimum of 10 rows"]),
    ("--calib-rows, 3-D acquisition", ["demo", "--volume", "--acquisition", "3d", "--calib-rows", "48"], 1,
     ["calib_rows (--calib-rows)", "3-D acquisition"]),
    ("--espirit-crop 1", ["demo", "--espirit-crop", "1"], 1, ["espirit_crop (--espirit-crop)", "(0, 1)"]),
    ("--views 0", ["shepp-logan", "--views", "0"], 2, ["argument --views: must be >= 1"]),
    ("--views 100000", ["shepp-logan", "--views", "100000"], 1, ["--views", "[1, 4096]"]),
    # 4000 views go matrix-free (the stored matrix's build would take 6 GiB): rays and one chunk, 37 MiB
    ("projector over budget", ["shepp-logan", "--views", "4000", "--max-memory", "0.02"], 1,
     ["CT projector", "exceeds the budget", "--max-memory", "fewer --views"]),
    ("--angle-range 0", ["shepp-logan", "--angle-range", "0"], 1, ["--angle-range", "(0, 360]"]),
    ("--angle-range 400", ["shepp-logan", "--angle-range", "400"], 1, ["--angle-range"]),
    ("--noise-sigma 0", ["shepp-logan", "--noise-sigma", "0"], 2, ["argument --noise-sigma: must be > 0"]),
    ("--noise-sigma -1", ["shepp-logan", "--noise-sigma", "-1"], 2, ["argument --noise-sigma"]),
    ("--blur-std 0", ["shepp-logan", "--operator", "blur", "--blur-std", "0"], 2, ["argument --blur-std"]),
    ("--box 0", ["shepp-logan", "--operator", "inpaint", "--box", "0"], 2, ["argument --box"]),
    ("--box 500", ["shepp-logan", "--operator", "inpaint", "--box", "500"], 1, ["--box", "[1, 127]"]),
    ("--snr-db nan", ["{head}", "--snr-db", "nan"], 2, ["argument --snr-db"]),
    ("--snr-db 500", ["{head}", "--snr-db", "500"], 1, ["--snr-db", "[-40, 120]"]),
    ("--slices 1,1", ["demo", "--slices", "1,1"], 2, ["names a slice twice"]),
    ("--slices -1", ["demo", "--slices", "-1"], 2, ["slice indices are >= 0"]),
    ("--slices 5:3", ["demo", "--slices", "5:3"], 2, ["names no slice"]),
    ("--slices a:b", ["demo", "--slices", "a:b"], 2, ["expected 'K', 'K,L,...' or 'A:B'"]),
    ("--slices out of range", ["demo", "--slices", "7"], 1, ["slices [7] out of range; it has 4"]),
    ("--batch-slices 0", ["demo", "--batch-slices", "0"], 2, ["argument --batch-slices"]),
    ("--max-memory 0", ["demo", "--max-memory", "0"], 2, ["argument --max-memory: must be > 0"]),
    ("group over budget", ["demo", "--max-memory", "0.001"], 1, ["estimated memory", "exceeds the budget"]),
    ("missing prior", ["demo", "--prior", "{root}/absent.pt"], 1, ["absent.pt': neither a shipped prior", "nor a file"]),
    ("corrupt prior", ["demo", "--prior", "{corrupt_prior}"], 1, ["corrupt.pt: not a readable weights file (truncated, or not a torch/safetensors file"]),
    ("code-executing prior", ["demo", "--prior", "{evil_prior}"], 1, ["evil.pt: refused: the pickle asks to build objects other than tensors"]),
    ("foreign checkpoint", ["demo", "--prior", "{foreign_prior}"], 1, ["foreign.pt: unknown checkpoint family: its parameter names match none of"]),
    ("4-D NIfTI, two volumes", ["{two_volumes}", "--operator", "blur"], 1, ["holds 2 volumes", "--volume-index"]),
    ("--volume-index out of range", ["{two_volumes}", "--operator", "blur", "--volume-index", "5"], 1,
     ["volume_index 5 out of range for 2 volumes"]),
    ("NaN voxels", ["{nan}", "--operator", "blur"], 1, ["nan.nii.gz: volume contains NaN or Inf"]),
    ("corrupt NIfTI", ["{corrupt_nifti}", "--operator", "blur"], 1, ["corrupt.nii.gz: cannot read as NIfTI"]),
    ("HDF5 without k-space", ["{not_fastmri}"], 1, ["not_fastmri.h5", "kspace"]),
    ("corrupt HDF5", ["{corrupt_h5}"], 1, ["corrupt.h5"]),
    ("header disagrees with k-space", ["{header_disagrees}"], 1,
     ["header_disagrees.h5: ismrmrd_header encoded matrix (32, 16) does not match", "(16, 16)"]),
    ("k-space without a header", ["{kspace_3d}"], 1, ["singlecoil_with_coils.h5: missing dataset 'ismrmrd_header'"]),
    ("DICOM duplicate positions", ["{dicom_duplicates}", "--operator", "ct"], 1, ["repeats", "one.dcm"]),
    ("DICOM folder with a text file", ["{dicom_with_text}", "--operator", "ct"], 1,
     ["notes.txt: not a readable DICOM file"]),
    ("DICOM MR series", ["{dicom_mr}", "--operator", "ct"], 1, ["mr.dcm: Modality is 'MR', not 'CT'"]),
    ("empty folder", ["{empty}", "--operator", "ct"], 1, ["empty: folder holds no files"]),
    ("DICOM as MRI", ["{dicom_mr}", "--operator", "mri"], 1, ["DICOM series are CT"]),
    ("ellipses:abc", ["ellipses:abc"], 1, ["expected ellipses:N or ellipses:N:SEED"]),
    ("ellipses:0", ["ellipses:0"], 1, ["need 1 <= N <= 10000"]),
    ("unknown anatomy", ["anatomy:nope"], 1, ["anatomy:nope: unknown anatomy source"]),
]


@pytest.mark.parametrize("case,argv,code,words", RECONSTRUCT, ids=[c[0] for c in RECONSTRUCT])
def test_reconstruct_refuses_with_one_line(case, argv, code, words, files, tmp_path, capsys):
    before = _digest(files["root"])
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    got, err = _cli(["reconstruct", *args, "--quiet"], capsys)
    assert got == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 if code == 1 else True
    for word in words:
        assert word in err, f"{case}: {word!r} not in {err!r}"
    assert _digest(files["root"]) == before  # inputs untouched
    out = tmp_path / "out"
    assert not list(out.glob("*.json")) or not any(p.name != "run.json" for p in out.glob("*.json"))


def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err = _cli(["reconstruct", "demo", "--device", "cuda", "--out", str(tmp_path)], capsys)
    assert code == 1 and "--device cuda: this machine has no usable CUDA GPU" in err


# ---------------------------------------------------------------------------------------------------
# Results keyed by what produced them; runs that must work.

BLUR = ["--operator", "blur", "--sampler", "zero-filled", "--quiet"]


def test_same_name_other_content_is_not_reused(files, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert _cli(["reconstruct", str(files["a_head"]), "--out", out, *BLUR], capsys)[0] == 0
    first = json.loads((tmp_path / "out" / "head.json").read_text())
    code, err = _cli(["reconstruct", str(files["b_head"]), "--out", out, *BLUR], capsys)
    assert code == 1 and "other settings (input_key differ)" in err and "--force" in err
    assert json.loads((tmp_path / "out" / "head.json").read_text()) == first  # nothing overwritten
    assert _cli(["reconstruct", str(files["b_head"]), "--out", out, *BLUR, "--force"], capsys)[0] == 0
    second = json.loads((tmp_path / "out" / "head.json").read_text())
    assert second["input"]["content_key"] != first["input"]["content_key"]
    assert second["metrics"]["mean"] != first["metrics"]["mean"]


def test_force_with_another_snr_simulates_again(files, tmp_path, capsys):
    out = tmp_path / "out"
    mri = ["--sampler", "zero-filled", "--slices", "0", "--out", str(out), "--quiet"]
    assert _cli(["reconstruct", str(files["head"]), *mri], capsys)[0] == 0
    # a very noisy simulation is valid (it once failed with "the measured data is zero")
    assert _cli(["reconstruct", str(files["head"]), *mri, "--snr-db", "-5", "--force"], capsys)[0] == 0
    simulated = sorted((out / "simulated").glob("head-*.h5"))
    assert len(simulated) == 2  # one per simulation setting, never a stale one
    noisy = json.loads((out / "head.json").read_text())
    assert noisy["settings"]["problem"]["snr_db"] == -5.0


def test_a_run_that_finished_nothing_does_not_block_the_next(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"input": "head", "settings": {"nfe": 3}}))  # a failed start
    assert _cli(["reconstruct", str(files["head"]), "--out", str(out), *BLUR], capsys)[0] == 0
    (out / "run.json").write_text("{ truncated")
    code, err = _cli(["reconstruct", str(files["head"]), "--out", str(out), *BLUR, "--seed", "3"], capsys)
    assert code == 1 and "unreadable" in err and "--force" in err


def test_one_volume_4d_nifti_runs_and_outputs_overlay_the_input(files, tmp_path, capsys):
    out = tmp_path / "out"
    assert _cli(["reconstruct", str(files["one_volume"]), "--out", str(out), *BLUR], capsys)[0] == 0
    source = nib.load(files["one_volume"])
    for key in ("mean", "std"):
        written = nib.load(out / f"one_volume_{key}.nii.gz")
        assert written.shape == source.shape[:3]
        np.testing.assert_allclose(written.affine, source.affine)
    mean = np.asarray(nib.load(out / "one_volume_mean.nii.gz").dataobj)
    truth = np.asarray(source.dataobj)[..., 0]
    assert np.corrcoef(mean.ravel(), truth.ravel())[0, 1] > 0.8  # the blurred input, on its own grid
    old = os.umask(0o022)
    os.umask(old)
    if old == 0o022:
        assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.rglob("*") if p.is_file())


def test_interrupt_says_how_to_resume_and_debug_shows_the_traceback(files, tmp_path, capsys, monkeypatch):
    import invdiff.reconstruct.job as job

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "solve_problem", interrupted)
    code, err = _cli(["reconstruct", str(files["head"]), "--out", str(tmp_path / "o"), *BLUR], capsys)
    assert code == 130 and "run the same command again to resume" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="not a device name"):
        main(["--debug", "reconstruct", "demo", "--device", "gpu0", "--out", str(tmp_path / "d")])


def test_a_prior_that_cannot_serve_the_input_is_refused_before_any_set_up(tmp_path):
    """Pixel sizes outside the prior's declared range, and sides its UNet cannot halve, are refused before
    the coil maps or the projector are built."""
    from invdiff.problems import ProblemSource
    from invdiff.reconstruct import ReconSettings, reconstruct

    def build(slices):
        raise AssertionError("set-up ran before the geometry check")

    native = ProblemSource("big", None, "mri", 2, (0.6875, 0.6875, 5.0), build, "key", (320, 320), pixel_mm=0.6875)
    with pytest.raises(ValueError, match=r"'mri_brain_128' was trained for 1.4-2.14 mm pixels; big's are 0.688 mm"):
        reconstruct(native, ReconSettings("red-diff", nfe=2, prior="mri_brain_128"), tmp_path, progress=False)
    odd = ProblemSource("odd", None, "mri", 2, (1.7, 1.7, 5.0), build, "key", (130, 128), pixel_mm=1.7)
    with pytest.raises(ValueError, match=r"multiples of 8; got 130 x 128"):
        reconstruct(odd, ReconSettings("red-diff", nfe=2), tmp_path, progress=False)


# ---------------------------------------------------------------------------------------------------
# invdiff benchmark and train-prior.

BENCH = """
[benchmark]
name = "t"
seeds = [0]
nfe = [2]

[[problem]]
name = "ct"
data = [DATA]
operator = "ct"
views = 20

[[sampler]]
name = "tv"
settings = SETTINGS
"""

BENCHMARK = [
    ("setting typo", '"shepp-logan"', "{ lamb = 0.1 }", ["sampler[0] (tv)", "has no setting 'lamb'"]),
    ("setting of the wrong type", '"shepp-logan"', '{ lam = "abc" }', ["setting lam must be a finite number"]),
    ("missing data file", '"absent.nii.gz"', "{ lam = 0.1 }", ["problem[0] (ct)", "no such file or folder"]),
]


@pytest.mark.parametrize("case,data,settings,words", BENCHMARK, ids=[c[0] for c in BENCHMARK])
def test_benchmark_config_errors_come_first(case, data, settings, words, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(BENCH.replace("DATA", data).replace("SETTINGS", settings))
    code, err = _cli(["benchmark", str(config), "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert code == 1 and str(config) in err and len(err.strip().splitlines()) == 1
    for word in words:
        assert word in err
    assert not (tmp_path / "o" / "cells").exists()


def test_benchmark_missing_config_and_bad_toml(tmp_path, capsys):
    code, err = _cli(["benchmark", str(tmp_path / "none.toml")], capsys)
    assert code == 1 and "none.toml: no such file" in err
    (tmp_path / "bad.toml").write_text("[benchmark\n")
    code, err = _cli(["benchmark", str(tmp_path / "bad.toml")], capsys)
    assert code == 1 and "bad.toml: not valid TOML" in err


def test_train_prior_refuses_unet_channels_monai_cannot_build(tmp_path, capsys):
    code, err = _cli(["train-prior", "--data", "ellipses:2", "--modality", "CT", "--unet-channels", "8,16",
                      "--steps", "1", "--size", "16", "--out", str(tmp_path)], capsys)
    assert code == 1 and "unet channels (8, 16) must be multiples of the group-norm groups (16)" in err
    assert not list(tmp_path.iterdir())  # refused before any data was read or file written


# ---------------------------------------------------------------------------------------------------
# The library, from Python.


def _measurement(batch: int = 2):
    from invdiff.measurement import Measurement
    from invdiff.operators import MatrixOperator

    return Measurement(MatrixOperator(torch.eye(3, dtype=torch.float64)), torch.ones(batch, 3, dtype=torch.float64), 0.1)


def test_log_likelihood_refuses_a_batch_that_does_not_match():
    m = _measurement(2)
    with pytest.raises(ValueError, match=r"x of shape \(1, 3\) does not match the measurement's batch of 2"):
        m.log_likelihood(torch.zeros(1, 3, dtype=torch.float64))
    assert m.log_likelihood(torch.zeros(2, 3, dtype=torch.float64)).shape == (2,)


def test_coil_maps_with_nan_are_refused():
    from invdiff.operators import MultiCoilMRI

    maps = torch.ones(2, 8, 8, dtype=torch.complex64)
    maps[0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="coil_maps contain 1 NaN or Inf"):
        MultiCoilMRI(torch.ones(8), maps)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_samplers_refuse_a_step_count_that_is_not_a_positive_integer(steps):
    from invdiff.samplers import DDIM, DPS, TDS, ApproximationFreeEnsemble, REDDiff

    for cls in (DPS, DDIM, REDDiff, TDS, ApproximationFreeEnsemble):
        with pytest.raises(ValueError, match="num_steps must be"):
            cls(steps)


def test_run_names_the_misuse():
    from invdiff.priors import GaussianMixturePrior
    from invdiff.samplers import DPS, ConjugateGradient, run

    m = _measurement(1)
    prior = GaussianMixturePrior(torch.ones(1, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64),
                                 torch.eye(3, dtype=torch.float64)[None])
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="DPS samples a diffusion prior: pass one"):
        run(DPS(4), m, None, generator=g, progress=False)
    with pytest.raises(TypeError, match="needs a sampler instance, got the class DPS"):
        run(DPS, m, prior, generator=g, progress=False)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        run(DPS(4), m, prior, generator=None, progress=False)
    assert run(ConjugateGradient(2), m, None, generator=g, progress=False).samples.shape == (1, 1, 3)


def test_benchmark_cells_are_keyed_by_the_data_files_bytes(tmp_path):
    from invdiff.benchmark.config import load_config

    data = _nifti(tmp_path / "head.nii.gz", _head(0))
    config = tmp_path / "c.toml"
    config.write_text(BENCH.replace("DATA", '"head.nii.gz"').replace("SETTINGS", "{ lam = 0.1 }"))
    first = [c.key for c in load_config(config).cells()]
    _nifti(data, _head(1))  # same name, other bytes
    second = [c.key for c in load_config(config).cells()]
    assert len(first) == len(second) == 1 and first != second


def test_a_reconstruction_far_above_the_datas_scale_is_flagged():
    from invdiff.reconstruct.job import SliceResults
    from invdiff.reconstruct.outputs import scale_warnings

    target = np.ones((1, 8, 8), dtype=np.float32)

    def results(mean):
        return SliceResults([0], mean, np.zeros_like(mean), target.copy(), target, None, {"baseline": "zero-filled"},
                            0, 0, 0.0, [1.0])

    assert scale_warnings(results(target * 1.2), "cg") == []
    (warning,) = scale_warnings(results(target * 7.0), "cg")
    assert "7.0 times the target's maximum" in warning and "discrepancy" in warning
