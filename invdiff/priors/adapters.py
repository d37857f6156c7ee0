"""Priors from elsewhere, and invdiff priors for elsewhere.

* :class:`DeepinvDenoiserPrior`: any deepinv ``Denoiser`` (``model(x, sigma)`` with ``sigma`` the
  noise standard deviation in ``x``'s units, a float or ``(B,)``) as an invdiff prior.
* :func:`adm_prior`: a guided-diffusion / ADM checkpoint (Dhariwal & Nichol 2021; the FFHQ and
  ImageNet priors DPS and RED-Diff publish results with), from a weights file the user supplies: the
  ``adm`` family of :mod:`invdiff.priors.families` with deepinv's two ``DiffUNet`` configurations.
  The network is wrapped by :class:`~invdiff.priors.unet.UNetPrior` with ADM's training convention
  (linear VP schedule 1e-4..0.02 over 1000 steps, data in ``[0, 1]`` mapped to ``[-1, 1]``, epsilon in
  the first ``C`` output channels), so the conversion from ``sigma`` is exact with fractional
  timesteps; deepinv's own ``DiffUNet.forward`` snaps to the nearest trained step and clips.
* :class:`AsDeepinvDenoiser`: an invdiff prior as a deepinv ``Denoiser``, for deepinv's DiffPIR,
  DDRM, PnP solvers and trainers.
"""

from __future__ import annotations

import os
from pathlib import Path

import deepinv as dinv
import torch
from torch import Tensor, nn

from invdiff.priors.base import Denoiser, sigma_per_sample
from invdiff.priors.unet import UNetPrior

__all__ = ["AsDeepinvDenoiser", "DeepinvDenoiserPrior", "adm_prior"]


class DeepinvDenoiserPrior(Denoiser):
    """A deepinv ``Denoiser`` as an invdiff prior.

    Args:
        denoiser: called as ``denoiser(x, sigma)`` with ``sigma`` a ``(B,)`` tensor in data units.
        event_shape: ``(C, H, W)`` of the images it is applied to.
        data_range: the range of the data it was trained for, if known.
    """

    def __init__(self, denoiser: nn.Module, event_shape: tuple[int, ...],
                 data_range: tuple[float, float] | None = None):
        self.denoiser = denoiser
        self.event_shape = tuple(int(s) for s in event_shape)
        self.data_range = data_range

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"expected images (B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        s = sigma_per_sample(sigma, x).to(x.dtype)
        return self.denoiser(x, s)


class AsDeepinvDenoiser(dinv.models.Denoiser):
    """An invdiff :class:`~invdiff.priors.base.Denoiser` behind deepinv's ``Denoiser`` interface:
    ``forward(x, sigma)`` with ``sigma`` a float or ``(B,)`` tensor, returning ``E[x0 | x]``."""

    def __init__(self, prior: Denoiser):
        super().__init__()
        self.prior = prior

    def forward(self, x: Tensor, sigma: float | Tensor, *args, **kwargs) -> Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1)
        s = s.expand(x.shape[0]) if s.numel() == 1 else s
        return self.prior.denoise(x, s)


def adm_prior(weights: str | os.PathLike, image_size: int = 256, channels: int = 3, large_model: bool = False,
              device: str | torch.device = "cpu") -> UNetPrior:
    """An ADM / guided-diffusion checkpoint as an EDM prior on ``[0, 1]`` images.

    Args:
        weights: a state-dict file in guided-diffusion's layout (``ffhq_10m.pt`` for
            ``large_model=False``, ``256x256_diffusion_uncond.pt`` for ``large_model=True``), loaded with
            ``torch.load(weights_only=True)``. Nothing is downloaded.
        image_size: ``H = W`` of the images the prior is applied to (multiples of 32).
        channels: image channels (3 for the published checkpoints).
        large_model: deepinv's ImageNet architecture instead of the FFHQ one.
    """
    from dataclasses import replace

    from invdiff.priors.families import build_prior, identify
    from invdiff.priors.families.adm import ADM_PRESETS

    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ADM weights file")
    if image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32 for the ADM UNet, got {image_size}")
    preset = "adm-imagenet-256" if large_model else "adm-ffhq-256"
    entry = ADM_PRESETS[preset]
    spec = None
    if channels != 3:
        spec = {"family": "adm", "config": replace(entry["config"], in_channels=channels).to_dict(),
                "scale": entry["scale"], "offset": entry["offset"], "data_range": entry["data_range"],
                "description": entry["description"], "scaling": entry["scaling"], "source": entry["source"]}
    prior = build_prior(identify(path, family="adm", preset=None if spec else preset, config=spec), device)
    return prior.at_size(image_size, image_size)
