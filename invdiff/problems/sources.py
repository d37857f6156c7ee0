"""Inputs opened as problem sources: one :class:`ProblemSource` per input, one :class:`Problem` per slice group.

An *input* is one of

* a multi- or single-coil fastMRI ``.h5`` file (or ``demo``, the embedded demo scan): fully sampled files are
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
``WORKDIR/simulated/NAME-KEY.h5`` (``KEY``: a hash of the input's bytes and the simulation's settings)
and solved exactly as a fastMRI file. The other operators
(:func:`image_source`) add white Gaussian noise drawn from ``seed * 1_000_003 + first slice of the
group``. Every problem is built for a list of slice indices, so a long volume is solved a group at a time.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from invdiff.datasets import (ANATOMY_SOURCES, DataFormatError, FastMRIFile, demo_scan, load_anatomy, load_ct_series,
                              load_nifti, normalize_intensity, random_ellipses, save_nifti, series_affine, shepp_logan,
                              slices_to_volume, volume_slices)
from invdiff.datasets.anatomy import square_resize
from invdiff.io import content_hash, settings_hash
from invdiff.measurement import Measurement
from invdiff.operators import MaskFunc
from invdiff.problems.base import Problem, channel_norm
from invdiff.problems.fastmri import fastmri_problem, singlecoil_problem
from invdiff.problems.mri3d import cartesian_3d_problem
from invdiff.priors.shipped import default_mri_prior
from invdiff.problems.spec import FAMILY, PRIOR, ProblemSpec, resolve_operator

__all__ = ["InputGrid", "ProblemSource", "fastmri_source", "image_operator", "image_source", "open_source", "simulated_mri_source"]


@dataclass(frozen=True)
class InputGrid:
    """The grid a volume input was read on, for writing outputs that overlay it.

    ``slice_shape``: ``(h, w)`` of the input's axial slices before resampling; ``write(path, stack)``
    writes a ``(S, h, w)`` stack (all the input's slices) as NIfTI with the input's affine and orientation.
    """

    slice_shape: tuple[int, int]
    write: Callable[[Path, np.ndarray], None]

    def from_resampled(self, images: np.ndarray) -> np.ndarray:
        """``(n, size, size)`` slices back on the input's ``(n, h, w)`` grid: the inverse of
        :func:`~invdiff.datasets.anatomy.square_resize` (resize to the padded square, crop the padding)."""
        from skimage.transform import resize

        h, w = self.slice_shape
        side = max(h, w)
        if images.shape[-1] != side:
            images = np.stack([resize(im, (side, side), anti_aliasing=images.shape[-1] > side, preserve_range=True)
                               for im in images])
        top, left = (side - h) // 2, (side - w) // 2
        return np.ascontiguousarray(images[:, top : top + h, left : left + w], dtype=np.float32)


@dataclass(frozen=True)
class ProblemSource:
    """An opened input: its name, operator, slice count and voxel size, and ``build(slices) -> Problem``.

    ``content_key``: what identifies the input and the measurement made from it (a hash of the file's
    bytes and of the simulation's settings); finished results are reused only when it matches.
    ``image_shape``: ``(h, w)`` of the unknown images, known before any costly set-up, so that a prior
    of another size is refused first. ``grid``: the input volume's own grid (NIfTI and DICOM inputs).
    ``coils`` and ``kspace_shape``: multi-coil MRI's, for memory estimates (0 and ``None`` otherwise).
    ``pixel_mm``: the unknown's pixel size when the input states it (``None`` for phantoms and the
    anatomy catalogue's resized slices); it picks the default MRI prior and is checked against a prior's.
    ``couples_slices``: the measurement couples the slices (a 3-D acquisition): only ``--volume`` solves it.
    """

    name: str
    path: Path | None
    operator: str
    num_slices: int
    voxel_mm: tuple[float, float, float]
    build: Callable[[list[int]], Problem]
    content_key: str = ""
    image_shape: tuple[int, int] | None = None
    grid: InputGrid | None = None
    coils: int = 0
    kspace_shape: tuple[int, int] | None = None
    pixel_mm: float | None = None
    couples_slices: bool = False

    @property
    def family(self) -> str:
        return FAMILY[self.operator]

    @property
    def prior_name(self) -> str:
        return default_mri_prior(self.pixel_mm) if self.operator == "mri" else PRIOR[self.operator]


def fastmri_source(file: FastMRIFile, spec: ProblemSpec, name: str, content_key: str = "",
                   pixel_mm: float | None = None, header_pixel: bool = True) -> ProblemSource:
    """A multi- or single-coil fastMRI file under the spec's mask (the file's own for test files);
    ``content_key`` defaults to the hash of the file's bytes. The pixel size is the header's
    reconstruction field of view over the recon size (``header_pixel``), else ``pixel_mm``."""
    if spec.operator not in ("auto", "mri"):
        raise ValueError(f"{file.path}: a fastMRI file is reconstructed with operator 'mri', not {spec.operator!r}")
    mask_func = MaskFunc(spec.mask, (spec.center_fraction,), (spec.acceleration,))
    fov = file.encoding.recon_fov_mm
    h, w = file.recon_size
    voxel = (fov[0] / w, fov[1] / h, fov[2]) if fov else (1.0, 1.0, 1.0)
    pixel = (voxel[0] if fov else None) if header_pixel else pixel_mm
    prior = default_mri_prior(pixel)

    def build(slices: list[int]) -> Problem:
        if spec.acquisition == "3d":
            problem = cartesian_3d_problem(file, spec.acceleration, spec.center_fraction, slices, seed=spec.seed,
                                           name=name, support_margin=spec.support_margin)
        elif file.multicoil:
            problem = fastmri_problem(file, mask_func, slices=slices, name=name, support_margin=spec.support_margin,
                                      calib_rows=spec.calib_rows, espirit_crop=spec.espirit_crop)
        else:
            problem = singlecoil_problem(file, mask_func, slices=slices, name=name)
        return dataclasses.replace(problem, pixel_mm=pixel, prior=prior)

    if spec.shapes_coil_maps and not file.multicoil:
        raise ValueError(f"{file.path}: --calib-rows and --espirit-crop shape coil maps; this file is single-coil")
    if spec.acquisition == "3d" and (not file.multicoil or file.mask is not None):
        raise ValueError(f"{file.path}: --acquisition 3d simulates a 3-D acquisition from fully sampled multi-coil "
                         "slices; this file is " + ("single-coil" if not file.multicoil else "undersampled (its own mask)"))
    key = content_key or content_hash(file.path)
    return ProblemSource(name, file.path, "mri", file.num_slices, voxel, build, key, (h, w), None, file.num_coils,
                         tuple(file.kspace_shape[-2:]), pixel, couples_slices=spec.acquisition == "3d")


def simulated_mri_source(images: np.ndarray, spec: ProblemSpec, name: str, workdir: Path, voxel,
                         content_key: str = "", grid: InputGrid | None = None,
                         pixel_mm: float | None = None) -> ProblemSource:
    """Multi-coil k-space simulated from magnitude slices ``(S, h, w)``, kept in ``workdir/simulated`` under
    a name that holds the input's ``content_key`` and the simulation's settings (coils, SNR, seed, size):
    a rerun with the same input and settings reuses the file, any other gets its own."""
    from invdiff.datasets import SimulationSettings, simulate_multicoil, write_fastmri_file

    settings = SimulationSettings(num_coils=spec.coils, snr_db=spec.snr_db, seed=spec.seed)
    key = settings_hash({"input": content_key or hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest(),
                         "coils": spec.coils, "snr_db": spec.snr_db, "seed": spec.seed, "size": spec.size})
    path = workdir / "simulated" / f"{name}-{key}.h5"
    if not path.exists():  # the simulation is deterministic: a resumed run reuses it
        sim = simulate_multicoil(images, settings)
        write_fastmri_file(path, sim, provenance={"source": name, "slices": int(len(images)), "key": key},
                           fov_mm=voxel[0] * images.shape[-1])
    inner = fastmri_source(FastMRIFile.open(path), spec, name, content_key=key, pixel_mm=pixel_mm, header_pixel=False)
    return dataclasses.replace(inner, path=path, voxel_mm=voxel, grid=grid)


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
                 voxel: tuple[float, float, float] = (1.0, 1.0, 1.0), content_key: str = "",
                 grid: InputGrid | None = None, pixel_mm: float | None = None) -> ProblemSource:
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
                       name=name, slices=tuple(slices), pixel_mm=pixel_mm)

    key = settings_hash({"input": content_key or name, "operator": operator, "noise_sigma": sigma,
                         "spec": asdict(spec)})
    return ProblemSource(name, path, operator, len(images), voxel, build, key, tuple(images.shape[-2:]), grid,
                         pixel_mm=pixel_mm)


@dataclass(frozen=True)
class _Volume:
    images: np.ndarray  # (S, size, size) in the operator's data units
    name: str
    path: Path | None
    voxel: tuple[float, float, float]
    key: str  # what identifies the input's content
    grid: InputGrid | None = None
    physical: bool = False  # voxel is the file's own (NIfTI, DICOM), not a placeholder

    @property
    def pixel_mm(self) -> float | None:
        return self.voxel[0] if self.physical else None


def _load_volume(source: str, operator: str, size: int, volume_index: int | None = None) -> _Volume:
    """The input's slices in the operator's data units, with its name, path, voxel size, content key and grid."""
    ct = operator == "ct"
    unit = (1.0, 1.0, 1.0)
    if source == "shepp-logan":
        return _Volume(2.0 * shepp_logan(size).numpy()[None].astype(np.float32), "shepp-logan", None, unit, source)
    if source.startswith("ellipses:"):
        count, _, seed = source.partition(":")[2].partition(":")
        try:
            n, seed_value = int(count), int(seed or 0)
        except ValueError:
            raise ValueError(f"{source}: expected ellipses:N or ellipses:N:SEED") from None
        if not 1 <= n <= 10_000 or seed_value < 0:
            raise ValueError(f"{source}: need 1 <= N <= 10000 phantoms and SEED >= 0")
        images = 2.0 * random_ellipses(n, size, torch.Generator().manual_seed(seed_value)).numpy()
        return _Volume(images.astype(np.float32), source.replace(":", "-"), None, unit, source)
    if source.startswith("anatomy:"):
        key = source.partition(":")[2]
        if key not in ANATOMY_SOURCES:
            raise ValueError(f"{source}: unknown anatomy source; choose from {sorted(ANATOMY_SOURCES)}")
        slices = load_anatomy(key, size=size, min_foreground=0.0)
        if ANATOMY_SOURCES[key].modality == "CT":
            slices = np.maximum(1.0 + slices / 1000.0, 0.0)
        elif ct:
            slices = 2.0 * slices
        return _Volume(slices.astype(np.float32), key, None, unit, source)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    if path.name.endswith((".nii", ".nii.gz")):
        vol = load_nifti(path, volume_index)
        slices = volume_slices(vol.data, "axial")
        images = np.maximum(1.0 + slices / 1000.0, 0.0) if ct else normalize_intensity(slices)
        fov = max(vol.data.shape[0] * vol.zooms[0], vol.data.shape[1] * vol.zooms[1])
        voxel = (fov / size, fov / size, vol.zooms[2])
        physical = True
        name = path.name.removesuffix(".gz").removesuffix(".nii")

        def write(out: Path, stack: np.ndarray, vol=vol) -> None:
            save_nifti(out, slices_to_volume(stack, "axial"), like=vol)
    else:
        if not ct:
            raise ValueError(f"{source}: DICOM series are CT (HU); use operator 'ct'")
        vol = load_ct_series(path)
        images = np.maximum(1.0 + vol.hu / 1000.0, 0.0)
        sp = vol.pixel_spacing_mm or (1.0, 1.0)
        physical = vol.pixel_spacing_mm is not None
        thick = float(np.median(np.diff(vol.slice_positions_mm))) if vol.slice_positions_mm and len(vol.hu) > 1 else 1.0
        voxel = (sp[1] * max(vol.hu.shape[1:]) / size, sp[0] * max(vol.hu.shape[1:]) / size, abs(thick))
        name = path.stem
        affine = series_affine(vol)

        def write(out: Path, stack: np.ndarray, affine=affine) -> None:  # (slices, rows, cols) -> (cols, rows, slices)
            save_nifti(out, np.ascontiguousarray(stack.transpose(2, 1, 0)), affine=affine)
    grid = InputGrid(tuple(int(s) for s in images.shape[-2:]), write)
    key = content_hash(path) + ("" if volume_index is None else f":volume{volume_index}")
    return _Volume(square_resize(np.asarray(images, dtype=np.float32), size), name, path, voxel, key, grid, physical)


def _fastmri_images(file: FastMRIFile, size: int) -> np.ndarray:
    """The target (RSS) slices of a fastMRI file as images for another operator."""
    target = file.target_volume()
    if target is None:
        raise DataFormatError(f"{file.path}: has no target ({file.target_key or 'reconstruction_rss'}) to use as "
                              "the image of a simulated measurement")
    return square_resize(np.abs(np.asarray(target, dtype=np.float32)), size)


def open_source(source: str, spec: ProblemSpec = ProblemSpec(), workdir: str | Path = ".",
                volume_index: int | None = None) -> ProblemSource:
    """Open ``source`` (module docstring); ``workdir`` receives simulated k-space for MRI volumes;
    ``volume_index`` picks a volume of a 4-D NIfTI file (one-volume files need none)."""
    if source == "demo" or source.endswith(".h5"):
        path = demo_scan() if source == "demo" else Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{source}: no such file")
        file = FastMRIFile.open(path)
        name = "demo_brain" if source == "demo" else path.stem
        if spec.operator in ("auto", "mri"):
            return fastmri_source(file, spec, name)
        return image_source(_fastmri_images(file, spec.size), spec, spec.operator, name, path,
                            content_key=content_hash(path))
    operator = resolve_operator(source, spec.operator)
    vol = _load_volume(source, operator, spec.size, volume_index)
    if operator == "mri":
        return simulated_mri_source(vol.images, spec, vol.name, Path(workdir), vol.voxel, vol.key, vol.grid,
                                    vol.pixel_mm)
    return image_source(vol.images, spec, operator, vol.name, vol.path, vol.voxel, vol.key, vol.grid, vol.pixel_mm)
