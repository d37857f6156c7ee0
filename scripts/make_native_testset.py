"""Write the native-size held-out brain set: fastMRI-geometry files simulated from Colin27 at 0.5 mm.

fastMRI's brain files are 320 x 320 reconstructions (about 220 mm field of view, 0.6875 mm pixels)
from k-space with 2x readout oversampling (640 x 320), 4 to 20 coils. No such raw data exist offline,
so this script simulates them from real anatomy the shipped priors never saw: Colin Holmes' T1 brain
at 0.5 mm (``ch2better.nii.gz``, Debian ``mricron-data``; ``colin27_t1_05mm`` in the anatomy catalogue),
resampled to 0.6875 mm pixels (anti-aliased) and centre-padded to 320 x 320.

Files (under ``--out``, default ``outputs/native-brain``):

* ``multicoil_{val,test}/file_brain_AXT1_colin27_{val,test}.h5``: 15 birdcage coils, k-space
  ``(S, 15, 640, 320)``, ``reconstruction_rss``; k-space SNR 18 dB (the module
  :mod:`invdiff.datasets.simulate`'s definition), which gives an image SNR of about 100 in the brain
  and an RSS noise floor in the background of 5.5 % of the brain's mean intensity.
* ``singlecoil_{val,test}/file_brain_AXT1_colin27_sc_{val,test}.h5``: fastMRI's single-coil layout
  (k-space ``(S, 640, 368)`` with 24 unacquired columns on each side, ``reconstruction_esc``), SNR 18 dB
  (image SNR about 26, background floor 4.6 % of the brain's mean).

Test slices are axial indices 120, 140, 160 of the 0.5 mm volume (10 mm apart, through the lateral
ventricles); validation slices 95 and 195, at least 12.5 mm from any test slice. Settings are tuned on
``*_val`` and reported on ``*_test``; the same subject, disjoint slices (the only real 0.5 mm brain
offline), which the results pages state.

It also writes ``datasets/data/colin27_native_slice.npz`` (axial index 150, 8 bits, 34 KiB), the
fixture of :func:`invdiff.datasets.native_brain_slice`.

Run: ``python scripts/make_native_testset.py`` (needs ``apt-get install mricron-data``; about 30 s).
It then reads every file back with deepinv's ``FastMRISliceDataset`` and, when the ``fastmri`` package
is importable, fastMRI's ``SliceDataset``, and prints what they see.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from invdiff.datasets.anatomy import ANATOMY_SOURCES, load_anatomy
from invdiff.datasets.simulate import SimulationSettings, simulate_multicoil, simulate_singlecoil, write_fastmri_file

PIXEL_MM = 0.6875
SIZE = 320
SPLITS = {"val": (95, 195), "test": (120, 140, 160)}
MULTICOIL = SimulationSettings(num_coils=15, readout_oversampling=2, snr_db=18.0, coil_radius=1.5, seed=7)
SINGLECOIL = SimulationSettings(num_coils=1, readout_oversampling=2, snr_db=18.0, seed=8)
PAD_COLUMNS = 24
#: the test fixture of invdiff.datasets.native_brain_slice (8-bit), for the native prior's denoising test
FIXTURE = Path(__file__).resolve().parents[1] / "datasets" / "data" / "colin27_native_slice.npz"
FIXTURE_SLICE = 150


def write_all(out: Path) -> list[Path]:
    source = ANATOMY_SOURCES["colin27_t1_05mm"]
    path = source.path()
    if path is None:
        raise SystemExit(f"{source.name} is not installed: apt-get install mricron-data")
    volume = load_anatomy(source.name, size=SIZE, pixel_mm=PIXEL_MM)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    written = []
    for split, slices in SPLITS.items():
        magnitude = volume[list(slices)]
        provenance = {"source": source.name, "file": str(path), "sha256": sha, "package": source.package,
                      "licence": source.licence, "subject": source.subject, "axial_slices_05mm": list(slices),
                      "pixel_mm": PIXEL_MM, "resample": f"anti-aliased to {PIXEL_MM} mm, centre-padded to {SIZE}",
                      "split": split, "script": "scripts/make_native_testset.py"}
        multi = simulate_multicoil(magnitude, MULTICOIL)
        written.append(write_fastmri_file(out / f"multicoil_{split}" / f"file_brain_AXT1_colin27_{split}.h5", multi,
                                          acquisition="AXT1", patient_id=f"colin27-{split}", provenance=provenance,
                                          fov_mm=PIXEL_MM * SIZE))
        single = simulate_singlecoil(magnitude, SINGLECOIL, pad_columns=PAD_COLUMNS)
        written.append(write_fastmri_file(out / f"singlecoil_{split}" / f"file_brain_AXT1_colin27_sc_{split}.h5",
                                          single, acquisition="AXT1", patient_id=f"colin27-sc-{split}",
                                          provenance=provenance, fov_mm=PIXEL_MM * SIZE))
    fixture = FIXTURE
    fixture.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(fixture, magnitude=np.round(np.clip(volume[FIXTURE_SLICE], 0, 1) * 255).astype(np.uint8))
    written.append(fixture)
    return written


def read_back(paths: list[Path]) -> None:
    """What deepinv's and fastMRI's readers see in each file (shapes, target keys, encoding limits)."""
    from deepinv.datasets import FastMRISliceDataset

    for path in paths:
        if path.suffix != ".h5":
            continue
        challenge = "singlecoil" if "singlecoil" in path.parent.name else "multicoil"
        ds = FastMRISliceDataset(path.parent, load_metadata_from_cache=False)
        item = ds[0]
        shapes = [tuple(t.shape) for t in (item if isinstance(item, (tuple, list)) else [item])]
        print(f"deepinv FastMRISliceDataset {path.name}: {len(ds)} slices, item shapes {shapes}")
        try:
            from fastmri.data import SliceDataset
        except ImportError:
            continue
        fm = SliceDataset(path.parent, challenge=challenge, transform=None)
        kspace, mask, target, attrs, fname, slice_num = fm[0]
        print(f"fastMRI SliceDataset ({challenge}) {fname}: {len(fm)} slices, kspace {kspace.shape}, target "
              f"{None if target is None else target.shape}, padding {attrs['padding_left']}-{attrs['padding_right']}, "
              f"recon {attrs['recon_size']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/native-brain"))
    args = parser.parse_args()
    paths = write_all(args.out)
    for p in paths:
        print(f"wrote {p} ({p.stat().st_size / 2**20:.1f} MiB)")
    read_back(paths)


if __name__ == "__main__":
    main()
