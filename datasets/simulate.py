"""Multi-coil k-space simulated from magnitude images, written as fastMRI files.

Raw k-space cannot be had offline, so it is simulated from real magnitude images:

1. a smooth random phase (:func:`smooth_phase`) makes each slice complex;
2. the image is zero-padded along the readout (rows) by ``readout_oversampling``, as in fastMRI's
   brain and knee data (encoded x = 2 x recon x);
3. coil images are the image times birdcage sensitivities normalised to ``sum_c |S_c|^2 = 1``;
4. k-space is fastMRI's centred unitary FFT of the coil images, plus circular complex Gaussian
   noise of variance ``sigma^2`` per entry with
   ``SNR_dB = 10 log10(sum |k|^2 / (N sigma^2))`` over the whole volume's ``N`` k-space entries;
5. the target ``reconstruction_rss`` is, as in fastMRI, the root-sum-of-squares of the inverse FFT
   of the (noisy) k-space, centre-cropped to the reconstruction size.

:func:`write_fastmri_file` stores the result with an ISMRMRD header that fastMRI, deepinv and
:class:`~invdiff.datasets.fastmri.FastMRIFile` read, and records the simulation in the attribute
``invdiff_simulation`` (JSON).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor

from invdiff.datasets.coil_maps import birdcage_maps
from invdiff.datasets.fastmri import rss_reconstruction
from invdiff.datasets.ismrmrd import EncodingInfo, build_header
from invdiff.io import atomic_write
from invdiff.operators.fft import fft2c

__all__ = ["SimulatedVolume", "SimulationSettings", "simulate_multicoil", "smooth_phase", "write_fastmri_file"]


def smooth_phase(num: int, shape: tuple[int, int], generator: torch.Generator, max_phase: float = math.pi / 2,
                 max_frequency: int = 2) -> Tensor:
    """Random smooth phase maps ``(num, H, W)`` in radians, within ``[-max_phase, max_phase]``.

    Each map is a random real combination of the 2-D Fourier modes with integer frequencies up to
    ``max_frequency`` cycles per field of view, with amplitudes falling as ``1 / (1 + |f|^2)``,
    scaled so that its largest magnitude is ``max_phase``.
    """
    h, w = shape
    f = torch.arange(-max_frequency, max_frequency + 1, dtype=torch.float64)
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    weight = 1.0 / (1.0 + fy**2 + fx**2)
    coef = torch.randn((num, *fy.shape, 2), generator=generator, dtype=torch.float64)
    coef = torch.complex(coef[..., 0], coef[..., 1]) * weight
    y = torch.linspace(-0.5, 0.5, h, dtype=torch.float64)
    x = torch.linspace(-0.5, 0.5, w, dtype=torch.float64)
    ey = torch.exp(2j * math.pi * fy.reshape(-1, 1) * y)  # (F, H)
    ex = torch.exp(2j * math.pi * fx.reshape(-1, 1) * x)  # (F, W)
    field = torch.einsum("nf,fh,fw->nhw", coef.reshape(num, -1), ey, ex).real
    field = field / field.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return (max_phase * field).to(torch.float32)


@dataclass(frozen=True)
class SimulationSettings:
    """How :func:`simulate_multicoil` turns magnitude images into k-space.

    Attributes:
        num_coils: receive coils (birdcage arrangement).
        readout_oversampling: readout (row) zero-padding factor; fastMRI's data use 2.
        snr_db: k-space signal-to-noise ratio in dB (module docstring); ``inf`` for no noise.
        coil_radius: birdcage radius relative to the half field of view (smaller = more localised).
        max_phase: largest magnitude of the smooth phase, radians.
        seed: seed of the ``torch.Generator`` drawing phase and noise.
    """

    num_coils: int = 8
    readout_oversampling: int = 2
    snr_db: float = 30.0
    coil_radius: float = 1.5
    max_phase: float = math.pi / 2
    seed: int = 0


@dataclass(frozen=True)
class SimulatedVolume:
    """Output of :func:`simulate_multicoil` (all CPU tensors).

    Attributes:
        kspace: complex64 ``(S, C, H, W)`` with ``H = readout_oversampling * h``, ``W = w``.
        target: float32 ``(S, h, w)``: RSS of the noisy coil images, centre-cropped.
        image: complex64 ``(S, h, w)``: the noiseless complex image (ground truth for SENSE).
        coil_maps: complex64 ``(C, H, W)``, normalised.
        noise_std: ``sigma``, the complex noise standard deviation per k-space entry.
        settings: the settings used.
    """

    kspace: Tensor
    target: Tensor
    image: Tensor
    coil_maps: Tensor
    noise_std: float
    settings: SimulationSettings


def simulate_multicoil(magnitude: Tensor | np.ndarray, settings: SimulationSettings = SimulationSettings()) -> SimulatedVolume:
    """Simulate multi-coil k-space for magnitude slices ``(S, h, w)`` (or one ``(h, w)``).

    Deterministic for ``settings.seed``. Magnitudes must be finite and non-negative.
    """
    mag = torch.as_tensor(np.asarray(magnitude), dtype=torch.float32)
    if mag.dim() == 2:
        mag = mag.unsqueeze(0)
    if mag.dim() != 3:
        raise ValueError(f"magnitude must be (S, h, w) or (h, w), got {tuple(mag.shape)}")
    if not torch.isfinite(mag).all() or (mag < 0).any():
        raise ValueError("magnitude must be finite and non-negative")
    if settings.readout_oversampling < 1 or settings.num_coils < 1:
        raise ValueError(f"readout_oversampling and num_coils must be >= 1, got {settings}")
    gen = torch.Generator().manual_seed(settings.seed)
    s, h, w = mag.shape
    image = mag.to(torch.complex64) * torch.exp(1j * smooth_phase(s, (h, w), gen, settings.max_phase))
    big_h = settings.readout_oversampling * h
    top = (big_h - h) // 2
    padded = torch.zeros((s, big_h, w), dtype=torch.complex64)
    padded[:, top : top + h] = image
    maps = birdcage_maps(settings.num_coils, (big_h, w), radius=settings.coil_radius)
    kspace = fft2c(maps.unsqueeze(0) * padded.unsqueeze(1))
    noise_std = 0.0
    if math.isfinite(settings.snr_db):
        signal = kspace.abs().square().mean().item()
        noise_std = math.sqrt(signal / 10 ** (settings.snr_db / 10))
        noise = torch.randn((*kspace.shape, 2), generator=gen) * (noise_std / math.sqrt(2))
        kspace = kspace + torch.complex(noise[..., 0], noise[..., 1])
    target = rss_reconstruction(kspace, (h, w)).contiguous()
    return SimulatedVolume(kspace.to(torch.complex64), target.to(torch.float32), image, maps, noise_std, settings)


def write_fastmri_file(path: str | os.PathLike, volume: SimulatedVolume, *, acquisition: str = "AXT1",
                       patient_id: str = "simulated", provenance: dict | None = None,
                       mask: Tensor | None = None, num_low_frequencies: int | None = None,
                       acceleration: float | None = None, fov_mm: float = 220.0) -> Path:
    """Write a simulated volume as a multi-coil fastMRI file, atomically.

    Without ``mask`` this is a training/validation-style file (full k-space and
    ``reconstruction_rss``). With a ``(W,)`` ``mask`` it is a test-style file: masked k-space, the
    ``mask`` dataset and the ``acceleration``/``num_low_frequency`` attributes, and no target.

    Args:
        path: output ``.h5`` path.
        volume: from :func:`simulate_multicoil`.
        acquisition, patient_id: fastMRI attributes.
        provenance: JSON-serialisable description of the source images (stored with the settings).
        fov_mm: reconstruction field of view along both axes, for the header.
    """
    s, c, big_h, w = volume.kspace.shape
    h, rw = volume.target.shape[-2:]
    info = EncodingInfo(encoded_size=(big_h, w, 1), recon_size=(h, rw, 1), step1_limits=(0, w - 1, w // 2),
                        encoded_fov_mm=(fov_mm * big_h / h, fov_mm, 5.0), recon_fov_mm=(fov_mm, fov_mm, 5.0))
    header = build_header(info, receiver_channels=c)
    kspace = volume.kspace.numpy()
    target = volume.target.numpy()
    meta = {"settings": asdict(volume.settings), "noise_std": volume.noise_std, "provenance": provenance or {}}
    if mask is not None:
        mask_np = np.asarray(mask, dtype=np.float32).reshape(-1)
        if mask_np.shape != (w,):
            raise ValueError(f"{path}: mask must be ({w},), got {tuple(np.shape(mask))}")
        kspace = kspace * mask_np.astype(np.complex64)

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as hf:
            hf.create_dataset("kspace", data=kspace.astype(np.complex64), chunks=(1, *kspace.shape[1:]))
            hf.create_dataset("ismrmrd_header", data=header)
            if mask is None:
                hf.create_dataset("reconstruction_rss", data=target.astype(np.float32))
                hf.attrs["max"] = float(target.max())
                hf.attrs["norm"] = float(np.linalg.norm(target))
            else:
                hf.create_dataset("mask", data=mask_np.astype(bool))
                hf.attrs["acceleration"] = float(acceleration if acceleration is not None else w / mask_np.sum())
                hf.attrs["num_low_frequency"] = int(num_low_frequencies or 0)
            hf.attrs["acquisition"] = acquisition
            hf.attrs["patient_id"] = patient_id
            hf.attrs["invdiff_simulation"] = json.dumps(meta, sort_keys=True)

    return atomic_write(path, write)
