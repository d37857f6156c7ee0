"""The image tasks of the samplers issue, each as a validation problem (for tuning) and a test problem.

=========  ==========================================================  =========================  ==========
task       operator and noise                                          test image (held out)       validation
=========  ==========================================================  =========================  ==========
mri-4x     8-coil Cartesian MRI, fastMRI equispaced 4x, 8 % centre     the demo scan (Colin27)    ICBM152
mri-8x     same at 8x (8 % centre: ESPIRiT needs 8 calibration lines)  the demo scan              ICBM152
ct-30      parallel-beam CT, 30 views over 180 deg, sigma 0.1/bin      Shepp-Logan                ellipses
ct-60      same with 60 views                                          Shepp-Logan                ellipses
deblur     circular Gaussian blur, std 2 px, sigma 0.02                demo-scan slice            ICBM152
inpaint    32 x 32 central box removed, sigma 0.02                     demo-scan slice            ICBM152
=========  ==========================================================  =========================  ==========

MRI problems come from :func:`invdiff.problems.fastmri.mri_problem` (ESPIRiT maps from the centre lines,
noise estimated from the data, data scaled so the CG-SENSE image's 99.5th percentile is 1) and use the
shipped MRI prior; CT tasks use the shipped CT prior on relative attenuation (1 + HU/1000; the test
image is Toft's Shepp-Logan doubled, the validation image a random ellipse phantom from a seed the
prior's training set did not use). Deblurring and inpainting use the MRI prior on real-valued
(zero-phase) 128 x 128 brain slices scaled to a 99.5th percentile of 1.

Every task is scored on magnitude images with the fastMRI definitions
(:func:`invdiff.metrics.fastmri_volume_metrics`; for MRI against the fastMRI RSS target).
The ICBM152 validation anatomy needs the ``[anatomy]`` extra (nilearn).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from invdiff.datasets import FastMRIFile, demo_scan, load_anatomy, random_ellipses, shepp_logan
from invdiff.datasets.simulate import SimulationSettings, simulate_multicoil, write_fastmri_file
from invdiff.measurement import Measurement
from invdiff.metrics import fastmri_volume_metrics
from invdiff.operators import CircularBlur, Inpainting, MaskFunc, ParallelBeamCT
from invdiff.operators.inpainting import box_mask
from invdiff.operators.kernels import gaussian_kernel
from invdiff.problems.fastmri import mri_problem

__all__ = ["IMAGE_TASKS", "ImageProblem", "image_task", "mri_validation_file"]

IMAGE_TASKS = ("mri-4x", "mri-8x", "ct-30", "ct-60", "deblur", "inpaint")
VALIDATION_SLICES = (86, 98)  # ICBM152 axial slices at the demo scan's levels


@dataclass(frozen=True)
class ImageProblem:
    """A measured batch with its ground truth and the prior it is solved with.

    ``magnitude(x)`` maps unknowns ``(B, C, H, W)`` to the ``(B, h, w)`` images that are scored against
    ``target``; :meth:`metrics` applies the fastMRI definitions.
    """

    task: str
    split: str
    measurement: Measurement
    target: np.ndarray
    prior_name: str
    magnitude: Callable[[Tensor], np.ndarray]

    @property
    def family(self) -> str:
        """The sampler-defaults family of :mod:`invdiff.samplers.registry`: ``mri``, ``ct`` or ``image``."""
        return self.task.split("-")[0] if self.task.startswith(("mri", "ct")) else "image"

    def metrics(self, x: Tensor) -> dict[str, float]:
        return fastmri_volume_metrics(self.target, self.magnitude(x))


def mri_validation_file(folder: Path) -> FastMRIFile:
    """Two axial ICBM152 slices at the demo scan's levels, simulated like the demo scan (seed 7)."""
    volume = load_anatomy("mni152_2009_t1", size=128, min_foreground=0.0)  # index = axial slice
    sim = simulate_multicoil(volume[list(VALIDATION_SLICES)], SimulationSettings(
        num_coils=8, readout_oversampling=2, snr_db=30.0, coil_radius=1.5, seed=7))
    return FastMRIFile.open(write_fastmri_file(folder / "validation_icbm152.h5", sim))


def _brain_slice(split: str) -> Tensor:
    """One real 128 x 128 brain slice ``(1, 2, 128, 128)`` (zero imaginary part), 99.5th percentile 1."""
    if split == "test":
        f = FastMRIFile.open(demo_scan())
        image = f.target(f.kspace_shape[0] // 2).to(torch.float64)
    else:
        image = torch.as_tensor(load_anatomy("mni152_2009_t1", size=128, min_foreground=0.0)[VALIDATION_SLICES[0]],
                                dtype=torch.float64)
    image = image / torch.quantile(image.flatten(), 0.995)
    return torch.stack([image, torch.zeros_like(image)]).unsqueeze(0).to(torch.float32)


def _ct_image(split: str) -> Tensor:
    if split == "test":
        image = 2.0 * shepp_logan(128)
    else:
        image = 2.0 * random_ellipses(1, 128, torch.Generator().manual_seed(20261122))[0]
    return image.reshape(1, 1, 128, 128).to(torch.float32)


def _noisy(op, x: Tensor, sigma: float, seed: int) -> Measurement:
    y = op.A(x)
    y = y + sigma * torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    return Measurement(op, y, sigma)


def _channel_norm(x: Tensor) -> np.ndarray:
    return x.norm(dim=1).detach().cpu().numpy().astype(np.float32)


def image_task(task: str, split: str, workdir: Path | None = None) -> ImageProblem:
    """Build ``task`` (see the module table) for ``split`` ``"validation"`` or ``"test"``.

    ``workdir`` holds the simulated MRI validation file (a temporary folder by default).
    """
    if task not in IMAGE_TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {IMAGE_TASKS}")
    if split not in ("validation", "test"):
        raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
    seed = 0 if split == "test" else 1
    if task.startswith("mri"):
        acc = int(task.split("-")[1].rstrip("x"))
        mask_func = MaskFunc("equispaced_fraction", (0.08,), (acc,))
        if split == "test":
            p = mri_problem(FastMRIFile.open(demo_scan()), mask_func)
        else:
            p = mri_problem(mri_validation_file(Path(workdir or tempfile.mkdtemp(prefix="invdiff_val_"))), mask_func)
        return ImageProblem(task, split, p.measurement, p.target, "mri_brain_128", p.magnitude)
    if task.startswith("ct"):
        x = _ct_image(split)
        op = ParallelBeamCT.sparse_view(128, int(task.split("-")[1]))
        return ImageProblem(task, split, _noisy(op, x, 0.1, seed), _channel_norm(x), "ct_128", _channel_norm)
    x = _brain_slice(split)
    if task == "deblur":
        op = CircularBlur(gaussian_kernel(2.0).to(torch.float32), (128, 128))
    else:
        op = Inpainting(box_mask((128, 128), 48, 48, 32, 32))
    return ImageProblem(task, split, _noisy(op, x, 0.02, seed), _channel_norm(x), "mri_brain_128", _channel_norm)
