"""Coil sensitivities: simulated birdcage maps, and ESPIRiT maps cached on disk.

Cached maps live under a cache folder (``$INVDIFF_CACHE_DIR``, else ``$XDG_CACHE_HOME/invdiff``, else
``~/.cache/invdiff``), never beside the user's data. A cache entry is keyed by the file's resolved
path, size and modification time, the slice, the sampled columns and the ESPIRiT settings, so an
edited file or another mask never reuses stale maps.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from invdiff.io import atomic_write
from invdiff.operators.espirit import espirit_maps

__all__ = ["CoilMapCache", "birdcage_maps", "default_cache_dir", "normalize_maps"]


def normalize_maps(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale complex ``(..., C, H, W)`` maps so that ``sum_c |S_c|^2 = 1`` at every pixel.

    With normalised maps the SENSE image is the coil combination ``sum_c conj(S_c) x_c`` and the
    root-sum-of-squares of noiseless coil images equals ``|x|``.
    """
    norm = maps.abs().square().sum(dim=-3, keepdim=True).sqrt()
    return maps / norm.clamp_min(eps)


def birdcage_maps(num_coils: int, shape: tuple[int, int], radius: float = 1.5,
                  dtype: torch.dtype = torch.complex64) -> Tensor:
    """Birdcage-coil sensitivities ``(C, H, W)`` (sigpy's model: coils on a circle around the FOV).

    Args:
        num_coils: number of coils ``C``.
        shape: ``(H, W)`` in pixels.
        radius: coil-circle radius relative to the half field of view.

    The maps are normalised so that ``sum_c |S_c|^2 = 1`` (:func:`normalize_maps`).
    """
    import sigpy.mri

    if num_coils < 1:
        raise ValueError(f"num_coils must be >= 1, got {num_coils}")
    maps = torch.from_numpy(sigpy.mri.birdcage_maps((num_coils, *shape), r=radius)).to(dtype)
    return normalize_maps(maps)


def default_cache_dir() -> Path:
    """The cache folder: ``$INVDIFF_CACHE_DIR``, else ``$XDG_CACHE_HOME/invdiff``, else ``~/.cache/invdiff``."""
    if os.environ.get("INVDIFF_CACHE_DIR"):
        return Path(os.environ["INVDIFF_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "invdiff"


class CoilMapCache:
    """ESPIRiT maps computed once per (file, slice, mask, settings) and kept as ``.npy`` files.

    Args:
        cache_dir: where to keep the maps; :func:`default_cache_dir` when ``None``.
        calib_width, threshold, kernel_width, crop: ESPIRiT settings
            (:func:`invdiff.operators.espirit.espirit_maps`).
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, calib_width: int = 24, threshold: float = 0.02,
                 kernel_width: int = 6, crop: float = 0.95):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "coil_maps"
        self.settings = dict(calib_width=calib_width, threshold=threshold, kernel_width=kernel_width, crop=crop)

    def key(self, path: str | os.PathLike, slice_index: int, mask: Tensor | None) -> str:
        """Hex digest identifying one entry."""
        path = Path(path).resolve()
        stat = path.stat()
        ident = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "slice": int(slice_index),
                 "settings": self.settings}
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode())
        if mask is not None:
            digest.update(np.ascontiguousarray(mask.detach().cpu().numpy().astype(np.float32)).tobytes())
        return digest.hexdigest()

    def get(self, path: str | os.PathLike, slice_index: int, kspace: Tensor, mask: Tensor | None = None) -> Tensor:
        """Complex64 ``(C, H, W)`` maps for ``kspace`` (complex ``(C, H, W)``, sampled by ``mask``)."""
        entry = self.cache_dir / f"{self.key(path, slice_index, mask)}.npy"
        if entry.is_file():
            try:
                return torch.from_numpy(np.load(entry, allow_pickle=False))
            except (OSError, ValueError):
                entry.unlink(missing_ok=True)  # a damaged cache entry is recomputed
        calib = min(self.settings["calib_width"], *kspace.shape[-2:])
        if mask is not None:
            calib = min(calib, _center_run(mask))
        if calib < 2 * self.settings["kernel_width"]:
            raise ValueError(f"{path} slice {slice_index}: the fully sampled centre is {calib} columns wide, but "
                             f"ESPIRiT with kernel_width {self.settings['kernel_width']} needs at least "
                             f"{2 * self.settings['kernel_width']}")
        maps = espirit_maps(kspace.to(torch.complex64), calib_width=calib, threshold=self.settings["threshold"],
                            kernel_width=self.settings["kernel_width"], crop=self.settings["crop"])
        atomic_write(entry, lambda tmp: np.save(tmp, maps.numpy()))
        return maps


def _center_run(mask: Tensor) -> int:
    """Width of the widest block of sampled columns centred like fastMRI's ACS (``[W/2 - n/2, W/2 + n/2)``)."""
    cols = (mask.reshape(-1) != 0).tolist()
    c = len(cols) // 2
    if not cols[c]:
        raise ValueError("the mask does not sample the centre column, so there is no calibration region")
    lo, hi = c, c
    while lo > 0 and cols[lo - 1]:
        lo -= 1
    while hi < len(cols) - 1 and cols[hi + 1]:
        hi += 1
    return 2 * min(c - lo, hi - c + 1)
