"""Build the embedded demo scan: multi-coil fastMRI-format k-space simulated from Colin27's T1 brain.

Source: ``ch2.nii.gz`` of Debian's ``mricron-data`` (Colin Holmes, MNI; see ``datasets/README.md``).
Four axial slices through the lateral ventricles are padded to square, resized to 128 x 128
(1.70 mm pixels), given a smooth phase, and turned into 8-coil k-space with 2x readout
oversampling and 30 dB SNR by :func:`invdiff.datasets.simulate.simulate_multicoil`.

Run: ``python scripts/make_demo_scan.py [--out datasets/data/demo_brain.h5]`` (needs
``apt-get install mricron-data``). Deterministic: the same input gives the same file contents.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from invdiff.datasets.anatomy import ANATOMY_SOURCES, load_anatomy, square_resize
from invdiff.datasets.simulate import SimulationSettings, simulate_multicoil, write_fastmri_file

SLICES = (78, 86, 94, 102)  # axial indices (RAS z, 1 mm) of ch2.nii.gz
SIZE = 128
SETTINGS = SimulationSettings(num_coils=8, readout_oversampling=2, snr_db=30.0, coil_radius=1.5, seed=2024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "datasets/data/demo_brain.h5")
    args = parser.parse_args()
    source = ANATOMY_SOURCES["colin27_t1"]
    path = source.path()
    if path is None:
        raise SystemExit(f"{source.name} is not installed: apt-get install mricron-data")
    slices = load_anatomy("colin27_t1")[list(SLICES)]
    magnitude = square_resize(slices, SIZE)
    volume = simulate_multicoil(magnitude, SETTINGS)
    provenance = {
        "source": source.name, "file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "package": source.package, "licence": source.licence, "subject": source.subject,
        "axial_slices": list(SLICES), "resize": f"pad to square, resize to {SIZE}x{SIZE}",
        "script": "scripts/make_demo_scan.py",
    }
    out = write_fastmri_file(args.out, volume, acquisition="AXT1", patient_id="colin27-simulated",
                             provenance=provenance)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): k-space {tuple(volume.kspace.shape)}, "
          f"target {tuple(volume.target.shape)}, noise std {volume.noise_std:.3g}, "
          f"target max {float(np.max(volume.target.numpy())):.3f}")


if __name__ == "__main__":
    main()
