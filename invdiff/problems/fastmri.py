"""A fastMRI volume (multi- or single-coil) as a :class:`~invdiff.problems.base.Problem`, with its baselines.

:func:`fastmri_problem` turns fully sampled (or already masked) k-space into a
:class:`~invdiff.measurement.Measurement` a prior-based sampler can solve:

* the mask: the file's own, or a fastMRI ``MaskFunc`` with fastMRI's per-file seed;
* coil maps: ESPIRiT from the auto-calibration (centre) lines of the masked data only (at least 8): a
  square block of them (at most 24 wide), or with ``calib_rows`` the centre columns over that many
  readout rows (the readout is fully sampled; :mod:`invdiff.operators.espirit`);
* the operator: :class:`~invdiff.operators.MultiCoilMRI` on the k-space grid, with the unknown the
  ``recon_size`` image (fastMRI's readout oversampling is cropped, not reconstructed);
* the noise level: estimated from the measured data (:func:`estimate_noise_std`; within 1 % on the demo scan);
* the units: everything divided by ``scale``, chosen so that the CG-SENSE image's 99.5th percentile
  magnitude is 1 — the data range of the shipped MRI prior. Reconstructions are multiplied back.

Baselines: fastMRI's zero-filled RSS, and CG-SENSE (conjugate gradients on the SENSE normal equations
from zero, stopped after a fixed number of iterations, the usual regulariser).

:func:`singlecoil_problem` does the same for fastMRI's single-coil track (emulated single-coil knee
k-space ``(S, H, W)``, zero padding columns outside the header's encoding limits, target
``reconstruction_esc``): the operator is the single-coil Fourier transform with fastMRI's crop, ``y =
M F pad(x)`` for the ``recon_size`` image ``x`` (written as :class:`~invdiff.operators.MultiCoilMRI`
with one coil of unit sensitivity, which is exactly that operator; :class:`~invdiff.operators.SingleCoilMRI`
has no crop), the padding columns are never sampled, and the baseline is fastMRI's zero-filled
``|crop(F^-1 M k)|``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from invdiff.datasets import FastMRIFile
from invdiff.datasets.fastmri import rss_reconstruction
from invdiff.datasets.slices import slice_mask
from invdiff.linalg import conjugate_gradient
from invdiff.measurement import Measurement
from invdiff.operators import MaskFunc, MultiCoilMRI, espirit_maps, from_complex, ifft2c
from invdiff.problems.base import Problem
from invdiff.problems.spec import DEFAULT_ESPIRIT_CROP

__all__ = ["cg_sense", "estimate_noise_std", "fastmri_problem", "scaled_measurement", "singlecoil_problem"]


def estimate_noise_std(kspace: Tensor, mask: Tensor, recon_height: int) -> float:
    """Noise standard deviation per real component of complex ``(S, C, H, W)`` k-space.

    ``mask``: the sampled columns ``(W,)`` (or any shape that broadcasts), or one mask per k-space plane
    ``(S, 1, 1, W)`` (a 3-D acquisition's ``kz`` planes).

    With fastMRI's readout oversampling (``H > recon_height``) the coil images hold no object in the
    rows outside the centre crop, at any column, even when undersampled (columns alias along
    columns): the zero-filled coil images there are noise of variance ``sigma^2 f``, ``f`` the
    sampled fraction of columns (orthonormal FFT). Robust to stray signal:
    ``1.4826 * median(|v - median(v)|)`` of their real and imaginary parts, over ``sqrt(f)``.
    Without oversampling, the outermost 1/16 of the readout in k-space is used instead (biased
    upwards by the signal there: on the demo scan that estimate is 40 % high).
    """
    h = kspace.shape[-2]
    cols = mask.bool()
    if recon_height < h:
        image = ifft2c(kspace * mask)
        top = (h - recon_height) // 2
        margin = max(1, h // 32)
        outside = torch.cat([image[..., : max(0, top - margin), :], image[..., top + recon_height + margin:, :]], -2)
        if mask.dim() == 4:  # a mask per k-space plane (S, 1, 1, W) (a 3-D acquisition): each plane's fraction
            fraction = cols.float().flatten(1).mean(1)
            outside = outside[fraction > 0] / fraction[fraction > 0].sqrt()[:, None, None, None]
            scale = 1.0
        else:
            scale = float(cols.float().mean()) ** 0.5
    elif mask.dim() == 4:
        raise ValueError("a per-plane mask (S, 1, 1, W) needs readout oversampling to estimate the noise")
    else:
        e = max(1, h // 16)
        outside = torch.cat([kspace[..., :e, :][..., cols], kspace[..., h - e:, :][..., cols]], dim=-1)
        scale = 1.0
    if outside.numel() == 0:
        raise ValueError(f"no k-space left to estimate the noise from (readout {h}, image {recon_height})")
    v = torch.cat([outside.real.flatten(), outside.imag.flatten()]).to(torch.float64)
    return float(1.4826 * (v - v.median()).abs().median()) / scale


def cg_sense(measurement: Measurement, iterations: int) -> Tensor:
    """``iterations`` CG steps on ``A^T A x = A^T y`` from zero (early stopping regularises); per item, or
    the whole batch as one unknown when the operator couples the items (a 3-D acquisition)."""
    b = measurement.adjoint(measurement.y)
    if not measurement.couples_batch:
        return conjugate_gradient(measurement.normal, b, tol=0.0, max_iter=iterations)[0]
    shape = b.shape
    x, _ = conjugate_gradient(lambda v: measurement.normal(v.reshape(shape)).reshape(1, -1), b.reshape(1, -1),
                              tol=0.0, max_iter=iterations)
    return x.reshape(shape)


def scaled_measurement(file: FastMRIFile, op: MultiCoilMRI, y: Tensor, kspace: Tensor, mask: Tensor,
                        recon_height: int) -> tuple[Measurement, float, float]:
    """The measurement in problem units (module docstring): the noise estimated from the data, and
    ``scale`` = the 99.5th percentile magnitude of 10 CG-SENSE steps; returns it, sigma and scale."""
    sigma = max(estimate_noise_std(kspace, mask, recon_height), 1e-12)
    x_cg = cg_sense(Measurement(op, y, sigma), 10)
    scale = float(np.percentile(x_cg.norm(dim=1).numpy(), 99.5))
    if not scale > 0:
        raise ValueError(f"{file.path}: the measured data is zero")
    return Measurement(op, y / scale, sigma / scale), sigma, scale


def fastmri_problem(file: FastMRIFile, mask_func: MaskFunc | None, slices: list[int] | None = None,
                    calib_width: int | None = None, name: str | None = None, support_margin: int = 0,
                    calib_rows: int = 0, espirit_crop: float = DEFAULT_ESPIRIT_CROP) -> Problem:
    """The problem for ``slices`` (default: all) of a multi-coil ``file`` (module docstring).

    ``calib_rows`` > 0 calibrates ESPIRiT on the centre columns (at most 24) over that many readout rows
    (at most the readout's length) instead of a square; the maps are kept where ESPIRiT's eigenvalue
    exceeds ``espirit_crop`` (a better calibrated block has sharper eigenvalues: 0.98 on the 8x validation
    slices keeps as much as 0.95 does for the square). ``support_margin`` keeps the coil maps that many
    pixels beyond ESPIRiT's thresholded support (:func:`~invdiff.operators.espirit_maps`);
    ``info["support"]`` records the support's fraction of the image and, with a target, the target's energy
    outside it (anatomy and RSS noise floor together).

    ``to_image`` maps ``(B, 2, h, w)`` complex images in problem units to ``(B, h, w)`` magnitudes in the
    file's units, zero outside the coil maps' support: there ``A`` sees nothing, so the image is not
    determined by the data (a SENSE reconstruction leaves it at zero; a prior sample would fill it with
    the prior's guess). ``info`` records the mask, the centre lines, the coils, the estimated noise and
    ``scale`` (file units = ``scale`` x problem units).
    """
    if not file.multicoil:
        raise ValueError(f"{file.path}: fastmri_problem needs multi-coil k-space")
    slices = list(range(file.kspace_shape[0])) if slices is None else list(slices)
    mask, num_low, acc = slice_mask(file, mask_func)
    kspace = torch.stack([file.kspace(i) for i in slices]) * mask  # (S, C, H, W) complex
    calib = calib_width or min(num_low, 24)  # a square inside the fully sampled centre columns
    if calib < 8:
        raise ValueError(f"{file.path}: {num_low} centre columns are too few to estimate ESPIRiT coil maps "
                         "(at least 8 are needed); use a larger centre fraction")
    kernel = min(6, calib // 2)
    block = (min(calib_rows, kspace.shape[-2]), calib) if calib_rows else (calib, calib)
    if block[0] < 2 * kernel:
        raise ValueError(f"{file.path}: calib_rows {calib_rows} is below ESPIRiT's minimum of {2 * kernel} rows "
                         f"(twice the kernel width {kernel})")
    maps = espirit_maps(kspace, calib_width=block, kernel_width=kernel, crop=espirit_crop,
                        margin=support_margin).to(torch.complex64)
    h, w = file.recon_size
    op = MultiCoilMRI(mask.to(torch.float32), maps, image_size=(h, w))
    y = from_complex(kspace)
    measurement, sigma, scale = scaled_measurement(file, op, y, kspace, mask, h)
    zero_filled = torch.stack([rss_reconstruction(k, (h, w)) for k in kspace]).numpy().astype(np.float32)
    target = None
    if file.target_key is not None:
        target = np.stack([file.target(i).numpy() for i in slices])
    support = op.support()

    def to_image(x: Tensor) -> np.ndarray:
        return (scale * x.norm(dim=1) * support.to(x.device)).detach().cpu().numpy().astype(np.float32)

    info = {"operator": "multi-coil Cartesian MRI", "mask": "file's own" if file.mask is not None else
            (mask_func.mask_type if mask_func is not None else None), "acceleration": float(acc),
            "center_lines": int(num_low), "sampled_columns": int(mask.sum()), "columns": int(mask.numel()),
            "coils": int(file.num_coils), "noise_std_estimate": float(sigma), "scale": scale,
            "espirit_calibration": list(block),
            "support": {"espirit_crop": espirit_crop, "margin_px": int(support_margin),
                        "fraction": round(float(support.float().mean()), 4)}}
    if target is not None:  # the RSS noise floor counts too: an upper bound on anatomy cut
        outside = ~support.expand(len(slices), h, w).numpy()
        info["support"]["target_energy_outside"] = round(float((target[outside] ** 2).sum() / (target ** 2).sum()), 5)
    return Problem(measurement, target, to_image, zero_filled, "zero-filled RSS", "mri", "mri_brain_128", info,
                   name=name or file.path.stem, slices=tuple(slices))


def singlecoil_problem(file: FastMRIFile, mask_func: MaskFunc | None, slices: list[int] | None = None,
                       name: str | None = None) -> Problem:
    """The problem for ``slices`` (default: all) of a single-coil ``file`` (module docstring): units, noise
    estimate and ``info`` as :func:`fastmri_problem`; ``to_image`` is the magnitude in file units."""
    if file.multicoil:
        raise ValueError(f"{file.path}: singlecoil_problem needs single-coil k-space (slices, H, W), got "
                         f"{file.kspace_shape}")
    slices = list(range(file.kspace_shape[0])) if slices is None else list(slices)
    mask, num_low, acc = slice_mask(file, mask_func)
    kspace = torch.stack([file.kspace(i) for i in slices]).unsqueeze(1) * mask  # (S, 1, H, W) complex
    h, w = file.recon_size
    grid = tuple(file.kspace_shape[-2:])
    if not (h <= grid[0] and w <= grid[1]):
        raise ValueError(f"{file.path}: recon size {(h, w)} exceeds the k-space grid {grid}")
    op = MultiCoilMRI(mask.to(torch.float32), torch.ones(1, *grid, dtype=torch.complex64), image_size=(h, w))
    y = from_complex(kspace)
    measurement, sigma, scale = scaled_measurement(file, op, y, kspace, mask, h)
    zero_filled = op.A_adjoint(y).norm(dim=1).numpy().astype(np.float32)
    target = None
    if file.target_key is not None:
        target = np.stack([file.target(i).numpy() for i in slices])

    def to_image(x: Tensor) -> np.ndarray:
        return (scale * x.norm(dim=1)).detach().cpu().numpy().astype(np.float32)

    left, right = file.acquired_columns
    info = {"operator": "single-coil Cartesian MRI", "mask": "file's own" if file.mask is not None else
            (mask_func.mask_type if mask_func is not None else None), "acceleration": float(acc),
            "center_lines": int(num_low), "sampled_columns": int(mask.sum()), "columns": int(mask.numel()),
            "acquired_columns": [int(left), int(right)], "coils": 1, "noise_std_estimate": float(sigma),
            "scale": scale}
    return Problem(measurement, target, to_image, zero_filled, "zero-filled", "mri", "mri_brain_128", info,
                   name=name or file.path.stem, slices=tuple(slices))
