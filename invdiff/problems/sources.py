"""Inputs opened as problem sources: one :class:`ProblemSource` per input, one :class:`Problem` per slice group.

An *input* is one of

* a multi-coil fastMRI ``.h5`` file (or ``demo``, the embedded demo scan): fully sampled files are
  undersampled with the spec's mask (fastMRI's per-file seed); files that carry a ``mask`` (fastMRI
  test files) are reconstructed from their own mask and have no target
  (:func:`~invdiff.problems.fastmri.fastmri_problem`);
* an image volume whose measurement is simulated: a NIfTI file (MR magnitudes, or CT in HU with
  operator ``ct``), a DICOM CT series (a folder or a ``.dcm`` file, HU), ``anatomy:NAME`` (an offline
  source of :data:`invdiff.datasets.ANATOMY_SOURCES`), ``shepp-logan``, ``ellipses:N[:SEED]`` (``N``
  random ellipse phantoms), or a fastMRI file's target slices with an operator other than ``mri``.

Volumes are resampled to ``size`` x ``size`` axial slices (zero-padded to square, then anti-aliased).
Data units: CT is relative attenuation ``1 + HU/1000`` (phantoms doubled, MR slices x 2); blur and
inpainting use real slices scaled so the volume's 99.5th percentile is 1. With operator ``mri`` a
volume's multi-coil k-space is simulated (:func:`invdiff.datasets.simulate_multicoil`), written to
``WORKDIR/simulated/NAME.h5`` and solved exactly as a fastMRI file. The other operators
(:func:`image_source`) add white Gaussian noise drawn from ``seed * 1_000_003 + first slice of the
group``. Every problem is built for a list of slice indices, so a long volume is solved a group at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from invdiff.datasets import (ANATOMY_SOURCES, DataFormatError, FastMRIFile, demo_scan, load_anatomy, load_ct_series,
                              load_nifti, normalize_intensity, random_ellipses, shepp_logan, volume_slices)
from invdiff.datasets.anatomy import square_resize
from invdiff.measurement import Measurement
from invdiff.operators import MaskFunc
from invdiff.problems.base import Problem, channel_norm
from invdiff.problems.fastmri import fastmri_problem
from invdiff.problems.spec import FAMILY, PRIOR, ProblemSpec, resolve_operator

__all__ = ["ProblemSource", "fastmri_source", "image_operator", "image_source", "open_source", "simulated_mri_source"]


@dataclass(frozen=True)
class ProblemSource:
    """An opened input: its name, operator, slice count and voxel size, and ``build(slices) -> Problem``."""

    name: str
    path: Path | None
    operator: str
    num_slices: int
    voxel_mm: tuple[float, float, float]
    build: Callable[[list[int]], Problem]

    @property
    def family(self) -> str:
        return FAMILY[self.operator]

    @property
    def prior_name(self) -> str:
        return PRIOR[self.operator]


def fastmri_source(file: FastMRIFile, spec: ProblemSpec, name: str) -> ProblemSource:
    """A multi-coil fastMRI file under the spec's mask (the file's own for test files)."""
    if spec.operator not in ("auto", "mri"):
        raise ValueError(f"{file.path}: a fastMRI file is reconstructed with operator 'mri', not {spec.operator!r}")
    if not file.multicoil:
        raise DataFormatError(f"{file.path}: single-coil fastMRI files are not supported yet (the shipped prior "
                              f"and ESPIRiT path are multi-coil); kspace shape {file.kspace_shape}")
    mask_func = MaskFunc(spec.mask, (spec.center_fraction,), (spec.acceleration,))

    def build(slices: list[int]) -> Problem:
        return fastmri_problem(file, mask_func, slices=slices, name=name)

    fov = file.encoding.recon_fov_mm
    h, w = file.recon_size
    voxel = (fov[0] / w, fov[1] / h, fov[2]) if fov else (1.0, 1.0, 1.0)
    return ProblemSource(name, file.path, "mri", file.num_slices, voxel, build)


def simulated_mri_source(images: np.ndarray, spec: ProblemSpec, name: str, workdir: Path, voxel) -> ProblemSource:
    """Multi-coil k-space simulated from magnitude slices ``(S, h, w)``, kept in ``workdir/simulated``."""
    from invdiff.datasets import SimulationSettings, simulate_multicoil, write_fastmri_file

    path = workdir / "simulated" / f"{name}.h5"
    if not path.exists():  # the simulation is deterministic: a resumed run reuses it
        sim = simulate_multicoil(images, SimulationSettings(num_coils=spec.coils, snr_db=spec.snr_db, seed=spec.seed))
        write_fastmri_file(path, sim, provenance={"source": name, "slices": int(len(images))},
                           fov_mm=voxel[0] * images.shape[-1])
    inner = fastmri_source(FastMRIFile.open(path), spec, name)
    return ProblemSource(name, path, "mri", inner.num_slices, voxel, inner.build)


def image_operator(spec: ProblemSpec, operator: str):
    """The ``ct``, ``blur`` or ``inpaint`` operator of ``spec`` on ``size`` x ``size`` images."""
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
    if operator != "inpaint":
        raise ValueError(f"image_operator builds ct, blur or inpaint, not {operator!r}")
    if not 0 < spec.box < n:
        raise ValueError(f"inpainting box {spec.box} must lie inside the {n} x {n} image")
    top = (n - spec.box) // 2
    return Inpainting(box_mask((n, n), top, top, spec.box, spec.box))


def image_source(images: np.ndarray, spec: ProblemSpec, operator: str, name: str, path: Path | None = None,
                 voxel: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> ProblemSource:
    """Noisy ``ct``, ``blur`` or ``inpaint`` measurements of slices ``(S, size, size)`` in data units
    (module docstring): the one place these problems are made."""
    sigma = spec.noise_sigma or (0.1 if operator == "ct" else 0.02)
    op = image_operator(spec, operator)
    if operator != "ct":  # real-valued slices, 99.5th percentile 1, as 2 channels (re, im = 0)
        images = images / max(float(np.percentile(images, 99.5)), 1e-12)

    def build(slices: list[int]) -> Problem:
        x = torch.as_tensor(images[slices], dtype=torch.float32).unsqueeze(1)
        if operator != "ct":
            x = torch.cat([x, torch.zeros_like(x)], dim=1)
        y = op.A(x)
        g = torch.Generator().manual_seed(spec.seed * 1_000_003 + slices[0])
        y = y + sigma * torch.randn(y.shape, generator=g, dtype=y.dtype)
        m = Measurement(op, y, sigma)
        if operator == "ct":
            base, base_name = channel_norm(op.fbp(y)), "FBP"
        else:
            base, base_name = channel_norm(op.A_adjoint(y)), "adjoint"
        info = {"operator": type(op).__name__, "noise_sigma": sigma}
        if operator == "ct":
            info.update(views=spec.views, geometry=spec.geometry, angle_range=spec.angle_range)
        elif operator == "blur":
            info.update(blur_std=spec.blur_std)
        else:
            info.update(box=spec.box)
        return Problem(m, channel_norm(x), channel_norm, base, base_name, FAMILY[operator], PRIOR[operator], info,
                       name=name, slices=tuple(slices))

    return ProblemSource(name, path, operator, len(images), voxel, build)


def _load_volume(source: str, operator: str, size: int) -> tuple[np.ndarray, str, Path | None, tuple]:
    """``(S, size, size)`` slices in the operator's data units, the input's name, path and voxel size."""
    ct = operator == "ct"
    unit = (1.0, 1.0, 1.0)
    if source == "shepp-logan":
        return 2.0 * shepp_logan(size).numpy()[None].astype(np.float32), "shepp-logan", None, unit
    if source.startswith("ellipses:"):
        count, _, seed = source.partition(":")[2].partition(":")
        try:
            n, seed_value = int(count), int(seed or 0)
        except ValueError:
            raise ValueError(f"{source}: expected ellipses:N or ellipses:N:SEED") from None
        images = 2.0 * random_ellipses(n, size, torch.Generator().manual_seed(seed_value)).numpy()
        return images.astype(np.float32), source.replace(":", "-"), None, unit
    if source.startswith("anatomy:"):
        key = source.partition(":")[2]
        slices = load_anatomy(key, size=size, min_foreground=0.0)
        if ANATOMY_SOURCES[key].modality == "CT":
            slices = np.maximum(1.0 + slices / 1000.0, 0.0)
        elif ct:
            slices = 2.0 * slices
        return slices.astype(np.float32), key, None, unit
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
    target = file.target_volume()
    if target is None:
        raise DataFormatError(f"{file.path}: has no target ({file.target_key or 'reconstruction_rss'}) to use as "
                              "the image of a simulated measurement")
    return square_resize(np.abs(np.asarray(target, dtype=np.float32)), size)


def open_source(source: str, spec: ProblemSpec = ProblemSpec(), workdir: str | Path = ".") -> ProblemSource:
    """Open ``source`` (module docstring); ``workdir`` receives simulated k-space for MRI volumes."""
    if source == "demo" or source.endswith(".h5"):
        path = demo_scan() if source == "demo" else Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{source}: no such file")
        file = FastMRIFile.open(path)
        name = "demo_brain" if source == "demo" else path.stem
        if spec.operator in ("auto", "mri"):
            return fastmri_source(file, spec, name)
        return image_source(_fastmri_images(file, spec.size), spec, spec.operator, name, path)
    operator = resolve_operator(source, spec.operator)
    images, name, path, voxel = _load_volume(source, operator, spec.size)
    if operator == "mri":
        return simulated_mri_source(images, spec, name, Path(workdir), voxel)
    return image_source(images, spec, operator, name, path, voxel)
