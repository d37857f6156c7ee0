"""A 3-D Cartesian acquisition simulated from a volume's fully sampled k-space, as one :class:`Problem`.

A 3-D sequence phase-encodes the slice axis: its k-space is the FFT along the slices of the slices' 2-D
k-spaces, and a 2-D mask over ``(kz, ky)`` chooses the acquired lines (:class:`~invdiff.operators.mri3d.
Cartesian3DMRI`). From a multi-coil file whose slices are fully sampled (a simulated volume, or a fastMRI
training file's contiguous slices), :func:`cartesian_3d_problem` forms that k-space for the chosen slices,
keeps the lines of a variable-density Poisson-disc mask (sigpy) with a fully sampled centre block, and
builds the problem the volume samplers solve:

* coil maps: ESPIRiT per slice from the centre block alone (its ``kz`` lines inverse-transformed along the
  slices: each slice's calibration data at the block's lower resolution along z);
* noise: estimated from the acquired data, per ``kz`` plane
  (:func:`~invdiff.problems.fastmri.estimate_noise_std`);
* units: as :func:`~invdiff.problems.fastmri.fastmri_problem` (the 99.5th percentile of 10 CG-SENSE
  iterations, over the whole volume as one unknown, is 1);
* baseline: the zero-filled RSS of each slice, ``|F_2^H F_z^H M y|`` combined over coils and cropped.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from invdiff.datasets import FastMRIFile
from invdiff.datasets.fastmri import rss_reconstruction
from invdiff.operators import espirit_maps, from_complex, poisson_disc_mask
from invdiff.operators.mri3d import Cartesian3DMRI, fftc, ifftc
from invdiff.operators.variable_density import acceleration_of
from invdiff.problems.base import Problem
from invdiff.problems.fastmri import scaled_measurement

__all__ = ["calibration_block", "cartesian_3d_problem"]


def calibration_block(slices: int, columns: int, center_fraction: float) -> tuple[int, int]:
    """``(kz, ky)`` sides of the fully sampled centre block: ``center_fraction`` of the columns (8 to 24,
    what ESPIRiT needs), and as many ``kz`` planes, at most half the slices (the mask's variable density
    needs planes outside the block)."""
    ky = min(columns, 24, max(8, round(center_fraction * columns)))
    return max(1, min(slices // 2, ky)), ky


def cartesian_3d_problem(file: FastMRIFile, acceleration: float, center_fraction: float, slices: list[int],
                         seed: int = 0, name: str | None = None, support_margin: int = 0) -> Problem:
    """The problem of the module docstring for ``slices`` (contiguous, in order) of a multi-coil ``file``
    whose slices are fully sampled; the mask is drawn with ``seed``. ``info`` records the mask (Poisson-disc,
    achieved acceleration, centre block), coils, noise estimate and ``scale`` as the 2-D problems do."""
    where = str(file.path)
    if not file.multicoil:
        raise ValueError(f"{where}: a 3-D acquisition is simulated from multi-coil k-space; this file is single-coil")
    if file.mask is not None:
        raise ValueError(f"{where}: the file holds undersampled k-space (its own mask); a 3-D acquisition is "
                         "simulated from fully sampled slices")
    slices = list(slices)
    if len(slices) < 2 or slices != list(range(slices[0], slices[0] + len(slices))):
        raise ValueError(f"{where}: a 3-D acquisition needs at least 2 contiguous slices in order, got {slices}")
    kspace = torch.stack([file.kspace(i) for i in slices])  # (S, C, H, W) complex, each slice fully sampled
    s, _, _, width = kspace.shape
    block = calibration_block(s, width, center_fraction)
    centre = torch.zeros(s, width, dtype=kspace.real.dtype)
    z0, c0 = s // 2 - block[0] // 2, width // 2 - block[1] // 2  # around the DC entry (s // 2, width // 2)
    centre[z0 : z0 + block[0], c0 : c0 + block[1]] = 1.0
    # sigpy centres an odd-sized block one line lower: the block is set here so that it is the one used
    mask = torch.maximum(poisson_disc_mask((s, width), acceleration, calib=block, seed=seed), centre.float())
    planes = mask[:, None, None, :].to(kspace.real.dtype)
    k3 = fftc(kspace, 0) * planes
    calib = ifftc(k3 * centre[:, None, None, :], 0)  # each slice's view of the centre block
    maps = espirit_maps(calib, calib_width=block[1], kernel_width=min(6, block[1] // 2),
                        margin=support_margin).to(torch.complex64)
    h, w = file.recon_size
    op = Cartesian3DMRI(mask, maps, image_size=(h, w))
    measurement, sigma, scale = scaled_measurement(file, op, from_complex(k3), k3, planes, h)
    per_slice = ifftc(k3, 0)
    zero_filled = torch.stack([rss_reconstruction(k, (h, w)) for k in per_slice]).numpy().astype(np.float32)
    target = None if file.target_key is None else np.stack([file.target(i).numpy() for i in slices])
    support = op.support()

    def to_image(x: Tensor) -> np.ndarray:
        return (scale * x.norm(dim=1) * support.to(x.device)).detach().cpu().numpy().astype(np.float32)

    info = {"operator": "3-D Cartesian multi-coil MRI (kz, ky phase encoding)", "mask": "poisson-disc (kz, ky)",
            "acceleration": round(float(acceleration_of(mask)), 3), "requested_acceleration": float(acceleration),
            "calibration_block": list(block), "mask_seed": int(seed), "sampled_lines": int(mask.sum()),
            "lines": int(mask.numel()), "coils": int(file.num_coils), "noise_std_estimate": float(sigma),
            "scale": scale, "support": {"espirit_crop": 0.95, "margin_px": int(support_margin),
                                        "fraction": round(float(support.float().mean()), 4)}}
    return Problem(measurement, target, to_image, zero_filled, "zero-filled RSS", "mri", "mri_brain_128", info,
                   name=name or file.path.stem, slices=tuple(slices))
