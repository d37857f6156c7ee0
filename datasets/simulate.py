"""Multi-coil k-space simulated from magnitude images, written as fastMRI files.

Raw k-space cannot be had offline, so it is simulated from real magnitude images
(:func:`simulate_multicoil`; :func:`simulate_singlecoil` for fastMRI's single-coil track):

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
from invdiff.operators.fft import center_crop, fft2c, ifft2c

__all__ = ["SimulatedVolume", "SimulationSettings", "simulate_multicoil", "simulate_singlecoil", "smooth_phase",
           "write_fastmri_file"]


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
        pad_columns: single-coil only: unacquired (zero) phase-encode columns on each side of the
            ``w`` acquired ones (``W = w + 2 pad``), as in fastMRI's single-coil knee files.
    """

    kspace: Tensor
    target: Tensor
    image: Tensor
    coil_maps: Tensor
    noise_std: float
    settings: SimulationSettings
    pad_columns: int = 0

    @property
    def singlecoil(self) -> bool:
        return self.coil_maps.shape[0] == 1 and self.settings.num_coils == 1


def simulate_multicoil(magnitude: Tensor | np.ndarray, settings: SimulationSettings = SimulationSettings()) -> SimulatedVolume:
    """Simulate multi-coil k-space for magnitude slices ``(S, h, w)`` (or one ``(h, w)``).

    Deterministic for ``settings.seed``. Magnitudes must be finite and non-negative.
    """
    if settings.readout_oversampling < 1 or settings.num_coils < 1:
        raise ValueError(f"readout_oversampling and num_coils must be >= 1, got {settings}")
    gen = torch.Generator().manual_seed(settings.seed)
    image = _complex_image(torch.as_tensor(np.asarray(magnitude), dtype=torch.float32), settings, gen)
    s, h, w = image.shape
    big_h = settings.readout_oversampling * h
    top = (big_h - h) // 2
    padded = torch.zeros((s, big_h, w), dtype=torch.complex64)
    padded[:, top : top + h] = image
    maps = birdcage_maps(settings.num_coils, (big_h, w), radius=settings.coil_radius)
    kspace = fft2c(maps.unsqueeze(0) * padded.unsqueeze(1))
    kspace, noise_std = _add_noise(kspace, settings.snr_db, gen)
    target = rss_reconstruction(kspace, (h, w)).contiguous()
    return SimulatedVolume(kspace.to(torch.complex64), target.to(torch.float32), image, maps, noise_std, settings)


def _complex_image(mag: Tensor, settings: SimulationSettings, gen: torch.Generator) -> Tensor:
    if mag.dim() == 2:
        mag = mag.unsqueeze(0)
    if mag.dim() != 3:
        raise ValueError(f"magnitude must be (S, h, w) or (h, w), got {tuple(mag.shape)}")
    if not torch.isfinite(mag).all() or (mag < 0).any():
        raise ValueError("magnitude must be finite and non-negative")
    s, h, w = mag.shape
    return mag.to(torch.complex64) * torch.exp(1j * smooth_phase(s, (h, w), gen, settings.max_phase))


def _add_noise(kspace: Tensor, snr_db: float, gen: torch.Generator) -> tuple[Tensor, float]:
    if not math.isfinite(snr_db):
        return kspace, 0.0
    signal = kspace.abs().square().mean().item()
    noise_std = math.sqrt(signal / 10 ** (snr_db / 10))
    noise = torch.randn((*kspace.shape, 2), generator=gen) * (noise_std / math.sqrt(2))
    return kspace + torch.complex(noise[..., 0], noise[..., 1]), noise_std


def simulate_singlecoil(magnitude: Tensor | np.ndarray, settings: SimulationSettings = SimulationSettings(num_coils=1),
                        pad_columns: int = 24) -> SimulatedVolume:
    """Simulate fastMRI single-coil k-space ``(S, 1, H, w + 2 pad)`` for magnitude slices ``(S, h, w)``.

    As in fastMRI's single-coil knee files: the readout is oversampled (``H = readout_oversampling *
    h``), the ``pad_columns`` outermost phase encodes on each side are not acquired (zero), and the
    target ``reconstruction_esc`` is ``|crop(F^-1 k)|`` of the noisy k-space at ``h x w``. One receive
    coil of uniform sensitivity; ``settings.num_coils`` must be 1. Noise as in :func:`simulate_multicoil`,
    its power referred to the acquired entries.
    """
    if settings.num_coils != 1:
        raise ValueError(f"single-coil simulation needs num_coils=1, got {settings.num_coils}")
    if pad_columns < 0 or settings.readout_oversampling < 1:
        raise ValueError(f"pad_columns must be >= 0 and readout_oversampling >= 1, got {pad_columns}, "
                         f"{settings.readout_oversampling}")
    gen = torch.Generator().manual_seed(settings.seed)
    image = _complex_image(torch.as_tensor(np.asarray(magnitude), dtype=torch.float32), settings, gen)
    s, h, w = image.shape
    big_h, big_w = settings.readout_oversampling * h, w + 2 * pad_columns
    padded = torch.zeros((s, big_h, big_w), dtype=torch.complex64)
    top = (big_h - h) // 2
    padded[:, top:top + h, pad_columns:pad_columns + w] = image
    kspace = fft2c(padded)
    kspace, noise_std = _add_noise(kspace[..., pad_columns:pad_columns + w], settings.snr_db, gen)
    full = torch.zeros((s, big_h, big_w), dtype=torch.complex64)
    full[..., pad_columns:pad_columns + w] = kspace
    target = center_crop(ifft2c(full), (h, w)).abs().contiguous()
    maps = torch.ones((1, big_h, big_w), dtype=torch.complex64)
    return SimulatedVolume(full.unsqueeze(1), target.to(torch.float32), image, maps, noise_std, settings, pad_columns)


def write_fastmri_file(path: str | os.PathLike, volume: SimulatedVolume, *, acquisition: str = "AXT1",
                       patient_id: str = "simulated", provenance: dict | None = None,
                       mask: Tensor | None = None, num_low_frequencies: int | None = None,
                       acceleration: float | None = None, fov_mm: float = 220.0) -> Path:
    """Write a simulated volume as a fastMRI file, atomically: multi-coil (``kspace (S, C, H, W)``,
    ``reconstruction_rss``), or single-coil for a volume of :func:`simulate_singlecoil` (``kspace
    (S, H, W)``, ``reconstruction_esc`` and the header's encoding limits naming the acquired columns).

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
    pad = volume.pad_columns
    acquired = w - 2 * pad
    info = EncodingInfo(encoded_size=(big_h, w, 1), recon_size=(h, rw, 1),
                        step1_limits=(0, acquired - 1, w // 2 - pad),
                        encoded_fov_mm=(fov_mm * big_h / h, fov_mm * w / acquired, 5.0),
                        recon_fov_mm=(fov_mm, fov_mm, 5.0))
    header = build_header(info, receiver_channels=c)
    kspace = volume.kspace.numpy()[:, 0] if volume.singlecoil else volume.kspace.numpy()
    target = volume.target.numpy()
    target_key = "reconstruction_esc" if volume.singlecoil else "reconstruction_rss"
    meta = {"settings": asdict(volume.settings), "noise_std": volume.noise_std, "pad_columns": pad,
            "provenance": provenance or {}}
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
                hf.create_dataset(target_key, data=target.astype(np.float32))
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
