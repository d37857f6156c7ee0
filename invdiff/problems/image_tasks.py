"""The named image tasks: each a validation problem (for tuning) and a test problem (for reporting).

=========  ==========================================================  ===========================  ==================
task       operator and noise                                          test (held out)              validation
=========  ==========================================================  ===========================  ==================
mri-4x     8-coil Cartesian MRI, fastMRI equispaced 4x, 8 % centre     the demo scan (Colin27), all  ICBM152 slices 86,
                                                                       4 slices                     98, simulated
mri-8x     same at 8x (8 % centre: ESPIRiT needs 8 calibration lines)  the demo scan                same
ct-30      parallel-beam CT, 30 views over 180 deg, sigma 0.1/bin      Shepp-Logan (x2)             an ellipse phantom
ct-60      same with 60 views                                          Shepp-Logan                  same
deblur     circular Gaussian blur, std 2 px, sigma 0.02                demo scan, slice 2           ICBM152 slice 86
inpaint    32 x 32 central box removed, sigma 0.02                     demo scan, slice 2           ICBM152 slice 86
=========  ==========================================================  ===========================  ==================

Every task is built by the general builders of :mod:`invdiff.problems.sources` from a
:class:`~invdiff.problems.spec.ProblemSpec`, so ``image_task("deblur", "test")`` is exactly
``invdiff reconstruct demo --operator blur --slices 2`` (same target, same noise). The validation
problems draw their noise with ``seed = 1`` (the test problems with ``seed = 0``). The MRI validation
file holds two axial ICBM152 slices at the demo scan's levels, simulated like the demo scan (8
birdcage coils, 2x readout oversampling, 30 dB, seed 7); the CT validation image is an ellipse phantom
from a seed the CT prior's training set did not use. ICBM152 needs the ``[anatomy]`` extra (nilearn).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from invdiff.datasets import FastMRIFile, load_anatomy
from invdiff.datasets.simulate import SimulationSettings, simulate_multicoil, write_fastmri_file
from invdiff.problems.base import Problem
from invdiff.problems.sources import fastmri_source, open_source
from invdiff.problems.spec import ProblemSpec

__all__ = ["IMAGE_TASKS", "TASK_SPECS", "image_task", "mri_validation_file"]

#: task -> how its measurement is formed
TASK_SPECS: dict[str, ProblemSpec] = {
    "mri-4x": ProblemSpec(operator="mri", acceleration=4, center_fraction=0.08),
    "mri-8x": ProblemSpec(operator="mri", acceleration=8, center_fraction=0.08),
    "ct-30": ProblemSpec(operator="ct", views=30),
    "ct-60": ProblemSpec(operator="ct", views=60),
    "deblur": ProblemSpec(operator="blur", blur_std=2.0),
    "inpaint": ProblemSpec(operator="inpaint", box=32),
}
IMAGE_TASKS = tuple(TASK_SPECS)
VALIDATION_SLICES = (86, 98)  # ICBM152 axial slices at the demo scan's levels
DEMO_MIDDLE_SLICE = 2
CT_VALIDATION_PHANTOM = "ellipses:1:20261122"


def mri_validation_file(folder: Path, slices: tuple[int, ...] = VALIDATION_SLICES) -> FastMRIFile:
    """Axial ICBM152 slices (by default two at the demo scan's levels), simulated like the demo scan
    (8 coils, 2x readout oversampling, 30 dB, seed 7), written to ``folder`` as a fastMRI file."""
    volume = load_anatomy("mni152_2009_t1", size=128, min_foreground=0.0)  # index = axial slice
    if not slices or not all(0 <= i < len(volume) for i in slices):
        raise ValueError(f"ICBM152 has axial slices 0-{len(volume) - 1}, got {list(slices)}")
    sim = simulate_multicoil(volume[list(slices)], SimulationSettings(
        num_coils=8, readout_oversampling=2, snr_db=30.0, coil_radius=1.5, seed=7))
    name = "validation_icbm152.h5" if tuple(slices) == VALIDATION_SLICES else \
        f"validation_icbm152_{'-'.join(map(str, slices))}.h5"
    return FastMRIFile.open(write_fastmri_file(folder / name, sim))


def image_task(task: str, split: str, workdir: Path | None = None, **operator_choices) -> Problem:
    """Build ``task`` (module table) for ``split`` ``"validation"`` or ``"test"``.

    ``workdir`` holds the simulated MRI validation file (a temporary folder by default).
    ``operator_choices``: :class:`ProblemSpec` fields that change how the operator is estimated from the
    same data (``calib_rows``, ``espirit_crop``, ``support_margin``: the coil maps), for both splits alike.
    """
    if task not in TASK_SPECS:
        raise ValueError(f"unknown task {task!r}; choose from {IMAGE_TASKS}")
    if split not in ("validation", "test"):
        raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
    spec = dataclasses.replace(TASK_SPECS[task], **operator_choices)
    if split == "test":
        if spec.operator == "mri":
            source = open_source("demo", spec)
            return source.build(list(range(source.num_slices)))
        if spec.operator == "ct":
            return open_source("shepp-logan", spec).build([0])
        return open_source("demo", spec).build([DEMO_MIDDLE_SLICE])
    spec = dataclasses.replace(spec, seed=1)
    if spec.operator == "mri":
        file = mri_validation_file(Path(workdir or tempfile.mkdtemp(prefix="invdiff_val_")))
        return fastmri_source(file, spec, "validation_icbm152").build([0, 1])
    if spec.operator == "ct":
        return open_source(CT_VALIDATION_PHANTOM, spec).build([0])
    return open_source("anatomy:mni152_2009_t1", spec).build([VALIDATION_SLICES[0]])
