"""What ``invdiff reconstruct`` reads, turned into inverse problems.

An *input* is one of

* a multi-coil fastMRI ``.h5`` file (or ``demo``, the embedded demo scan): fully sampled files are
  undersampled with the chosen mask (fastMRI's per-file seed); files that carry a ``mask`` (fastMRI
  test files) are reconstructed from their own mask and have no target;
* an image volume, whose measurement is simulated (a fastMRI file's target slices, with an operator
  other than ``mri``): a NIfTI file (MR magnitudes, or CT in HU with
  ``operator="ct"``), a DICOM CT series (a folder or a ``.dcm`` file, HU), or ``shepp-logan``.

Volumes are resampled to the prior's ``size`` x ``size`` axial slices (zero-padded to square, then
anti-aliased). The operator of a volume (:class:`ProblemSpec`):

* ``mri``: multi-coil k-space simulated from the slices (birdcage coils, smooth phase, ``snr_db``,
  2x readout oversampling), written to ``simulated/<name>.h5`` in the output folder, then solved
  exactly as a fastMRI file;
* ``ct``: parallel- or fan-beam CT with ``views`` views over ``angle_range`` degrees (less than 180
  is limited-angle) on relative attenuation ``1 + HU/1000`` (MR slices: intensities x 2), noise
  ``noise_sigma`` per detector bin (default 0.1);
* ``blur``: circular Gaussian blur of std ``blur_std`` pixels; ``inpaint``: a centred square of side
  ``box`` pixels removed; both on real slices scaled to a 99.5th percentile of 1, noise default 0.02.

Every problem is built for a list of slice indices, so a long volume can be solved a group at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from invdiff.datasets import (DataFormatError, FastMRIFile, demo_scan, load_ct_series, load_nifti, normalize_intensity,
                              shepp_logan, volume_slices)
from invdiff.measurement import Measurement

__all__ = ["FAMILY", "OPERATORS", "ProblemSpec", "ReconInput", "ReconProblem", "open_input", "resolve_operator"]

Operator = Literal["auto", "mri", "ct", "blur", "inpaint"]
OPERATORS = ("auto", "mri", "ct", "blur", "inpaint")
FAMILY = {"mri": "mri", "ct": "ct", "blur": "image", "inpaint": "image"}
PRIOR = {"mri": "mri_brain_128", "ct": "ct_128", "blur": "mri_brain_128", "inpaint": "mri_brain_128"}


@dataclass(frozen=True)
class ProblemSpec:
    """How a measurement is formed (module docstring). MRI fields apply to fastMRI inputs too."""

    operator: Operator = "auto"
    mask: str = "equispaced_fraction"
    acceleration: float = 4
    center_fraction: float = 0.08
    views: int = 60
    geometry: Literal["parallel", "fan"] = "parallel"
    angle_range: float = 180.0
    noise_sigma: float | None = None
    blur_std: float = 2.0
    box: int = 32
    coils: int = 8
    snr_db: float = 30.0
    size: int = 128
    seed: int = 0

    def __post_init__(self):
        if self.operator not in OPERATORS:
            raise ValueError(f"operator must be one of {OPERATORS}, got {self.operator!r}")
        if self.geometry not in ("parallel", "fan"):
            raise ValueError(f"geometry must be 'parallel' or 'fan', got {self.geometry!r}")
        if self.views < 1 or not 0 < self.angle_range <= 360:
            raise ValueError(f"need views >= 1 and 0 < angle_range <= 360, got {self.views}, {self.angle_range}")
        if self.noise_sigma is not None and not self.noise_sigma > 0:
            raise ValueError(f"noise_sigma must be > 0, got {self.noise_sigma}")


@dataclass(frozen=True)
class ReconProblem:
    """The measured slices of one input, ready for a sampler.

    Attributes:
        measurement: ``y`` for ``B = len(slices)`` items, in problem units.
        magnitude: unknowns ``(B, C, H, W)`` -> magnitude images ``(B, h, w)`` in data units (the
            units of ``target``); MRI images are zero outside the coil maps' support.
        target: ``(B, h, w)`` ground truth (fastMRI RSS target for MRI), or ``None`` (test files).
        baseline: ``(B, h, w)`` the classical reconstruction (zero-filled RSS for MRI, FBP for CT,
            the adjoint otherwise); ``baseline_name`` names it.
        info: what was measured (mask, acceleration, views, noise), JSON-serialisable.
    """

    measurement: Measurement
    magnitude: Callable[[Tensor], np.ndarray]
    target: np.ndarray | None
    baseline: np.ndarray
    baseline_name: str
    slices: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReconInput:
    """An opened input: its name, operator, number of slices and a problem builder per slice group."""

    name: str
    path: Path | None
    operator: str
    num_slices: int
    voxel_mm: tuple[float, float, float]
    build: Callable[[list[int]], ReconProblem]

    @property
    def family(self) -> str:
        return FAMILY[self.operator]

    @property
    def prior_name(self) -> str:
        return PRIOR[self.operator]


def _fastmri_input(file: FastMRIFile, spec: ProblemSpec, name: str) -> ReconInput:
    from invdiff.operators import MaskFunc
    from invdiff.problems.fastmri import mri_problem

    if spec.operator not in ("auto", "mri"):
        raise ValueError(f"{file.path}: a fastMRI file is reconstructed with operator 'mri', not {spec.operator!r}")
    if not file.multicoil:
        raise DataFormatError(f"{file.path}: single-coil fastMRI files are not supported yet (the shipped prior "
                              f"and ESPIRiT path are multi-coil); kspace shape {file.kspace_shape}")
    mask_func = MaskFunc(spec.mask, (spec.center_fraction,), (spec.acceleration,))

    def build(slices: list[int]) -> ReconProblem:
        p = mri_problem(file, mask_func, slices=slices)
        info = {"operator": "multi-coil Cartesian MRI", "mask": "file's own" if file.mask is not None else spec.mask,
                "acceleration": float(p.acceleration), "center_lines": int(p.num_low_frequencies),
                "sampled_columns": int(p.mask.sum()), "columns": int(p.mask.numel()),
                "coils": int(file.num_coils), "noise_std_estimate": float(p.noise_std_estimate),
                "scale": float(p.scale)}
        return ReconProblem(p.measurement, p.magnitude, p.target, p.zero_filled, "zero-filled RSS",
                            tuple(slices), info)

    fov = file.encoding.recon_fov_mm
    h, w = file.recon_size
    voxel = (fov[0] / w, fov[1] / h, fov[2]) if fov else (1.0, 1.0, 1.0)
    return ReconInput(name, file.path, "mri", file.num_slices, voxel, build)


def _load_volume(source: str, operator: str, size: int) -> tuple[np.ndarray, str, Path | None, tuple]:
    """``(S, size, size)`` slices in the operator's data units, the input's name, path and voxel size."""
    from invdiff.datasets.anatomy import square_resize

    ct = operator == "ct"
    if source == "shepp-logan":
        return 2.0 * shepp_logan(size).numpy()[None].astype(np.float32), "shepp-logan", None, (1.0, 1.0, 1.0)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    if path.name.endswith((".nii", ".nii.gz")):
        vol = load_nifti(path)
        slices = volume_slices(vol.data, "axial")
        images = np.maximum(1.0 + slices / 1000.0, 0.0) if ct else normalize_intensity(slices)
        fov = max(vol.data.shape[0] * vol.zooms[0], vol.data.shape[1] * vol.zooms[1])
        voxel = (fov / size, fov / size, vol.zooms[2])
        name = path.name.removesuffix(".gz").removesuffix(".nii")
    else:
        if not ct:
            raise ValueError(f"{source}: DICOM series are CT (HU); use operator 'ct'")
        vol = load_ct_series(path)
        images = np.maximum(1.0 + vol.hu / 1000.0, 0.0)
        sp = vol.pixel_spacing_mm or (1.0, 1.0)
        thick = float(np.median(np.diff(vol.slice_positions_mm))) if vol.slice_positions_mm and len(vol.hu) > 1 else 1.0
        voxel = (sp[1] * max(vol.hu.shape[1:]) / size, sp[0] * max(vol.hu.shape[1:]) / size, abs(thick))
        name = path.stem
    return square_resize(np.asarray(images, dtype=np.float32), size), name, path, voxel


def _fastmri_images(file: FastMRIFile, size: int) -> np.ndarray:
    """The target (RSS) slices of a fastMRI file as images for another operator."""
    from invdiff.datasets.anatomy import square_resize

    target = file.target_volume()
    if target is None:
        raise DataFormatError(f"{file.path}: has no target ({file.target_key or 'reconstruction_rss'}) to use as "
                              "the image of a simulated measurement")
    return square_resize(np.abs(np.asarray(target, dtype=np.float32)), size)


def _simulated_mri_input(images: np.ndarray, spec: ProblemSpec, name: str, workdir: Path, voxel) -> ReconInput:
    from invdiff.datasets import SimulationSettings, simulate_multicoil, write_fastmri_file

    path = workdir / "simulated" / f"{name}.h5"
    if not path.exists():  # the simulation is deterministic: a resumed run reuses it
        sim = simulate_multicoil(images, SimulationSettings(num_coils=spec.coils, snr_db=spec.snr_db, seed=spec.seed))
        write_fastmri_file(path, sim, provenance={"source": name, "slices": int(len(images))},
                           fov_mm=voxel[0] * images.shape[-1])
    inp = _fastmri_input(FastMRIFile.open(path), spec, name)
    return ReconInput(name, path, "mri", inp.num_slices, voxel, inp.build)


def _image_operator(spec: ProblemSpec, operator: str):
    from invdiff.operators import CircularBlur, FanBeamCT, Inpainting, ParallelBeamCT
    from invdiff.operators.inpainting import box_mask
    from invdiff.operators.kernels import gaussian_kernel

    n = spec.size
    if operator == "ct":
        if spec.geometry == "fan":
            angles = np.linspace(0.0, spec.angle_range, spec.views, endpoint=spec.angle_range < 360).tolist()
            return FanBeamCT(n, angles, source_distance=2.0 * n, source_detector_distance=4.0 * n)
        if spec.angle_range < 180:
            return ParallelBeamCT.limited_angle(n, spec.angle_range, spec.views)
        return ParallelBeamCT.sparse_view(n, spec.views)
    if operator == "blur":
        return CircularBlur(gaussian_kernel(spec.blur_std).to(torch.float32), (n, n))
    if not 0 < spec.box < n:
        raise ValueError(f"inpainting box {spec.box} must lie inside the {n} x {n} image")
    top = (n - spec.box) // 2
    return Inpainting(box_mask((n, n), top, top, spec.box, spec.box))


def _image_input(images: np.ndarray, spec: ProblemSpec, operator: str, name: str, path, voxel) -> ReconInput:
    sigma = spec.noise_sigma or (0.1 if operator == "ct" else 0.02)
    op = _image_operator(spec, operator)
    if operator != "ct":  # real-valued slices, 99.5th percentile 1, as 2 channels (re, im = 0)
        images = images / max(float(np.percentile(images, 99.5)), 1e-12)

    def magnitude(x: Tensor) -> np.ndarray:
        return x.norm(dim=1).detach().cpu().numpy().astype(np.float32)

    def build(slices: list[int]) -> ReconProblem:
        x = torch.as_tensor(images[slices], dtype=torch.float32).unsqueeze(1)
        if operator != "ct":
            x = torch.cat([x, torch.zeros_like(x)], dim=1)
        y = op.A(x)
        g = torch.Generator().manual_seed(spec.seed * 1_000_003 + slices[0])
        y = y + sigma * torch.randn(y.shape, generator=g, dtype=y.dtype)
        m = Measurement(op, y, sigma)
        if operator == "ct":
            base, base_name = magnitude(op.fbp(y)), "FBP"
        else:
            base, base_name = magnitude(op.A_adjoint(y)), "adjoint"
        info = {"operator": type(op).__name__, "noise_sigma": sigma}
        if operator == "ct":
            info.update(views=spec.views, geometry=spec.geometry, angle_range=spec.angle_range)
        elif operator == "blur":
            info.update(blur_std=spec.blur_std)
        else:
            info.update(box=spec.box)
        return ReconProblem(m, magnitude, magnitude(x), base, base_name, tuple(slices), info)

    return ReconInput(name, path, operator, len(images), voxel, build)


def resolve_operator(source: str, operator: str) -> str:
    """The operator ``"auto"`` stands for: ``mri`` for fastMRI files, ``demo`` and NIfTI, ``ct`` otherwise."""
    if operator != "auto":
        return operator
    return "mri" if source == "demo" or source.endswith((".h5", ".nii", ".nii.gz")) else "ct"


def open_input(source: str, spec: ProblemSpec = ProblemSpec(), workdir: str | Path = ".") -> ReconInput:
    """Open ``source`` (module docstring); ``workdir`` receives simulated k-space for MRI volumes."""
    if source == "demo" or source.endswith(".h5"):
        path = demo_scan() if source == "demo" else Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{source}: no such file")
        file = FastMRIFile.open(path)
        name = "demo_brain" if source == "demo" else path.stem
        if spec.operator in ("auto", "mri"):
            return _fastmri_input(file, spec, name)
        return _image_input(_fastmri_images(file, spec.size), spec, spec.operator, name, path, (1.0, 1.0, 1.0))
    operator = resolve_operator(source, spec.operator)
    images, name, path, voxel = _load_volume(source, operator, spec.size)
    if operator == "mri":
        return _simulated_mri_input(images, spec, name, Path(workdir), voxel)
    return _image_input(images, spec, operator, name, path, voxel)
