"""A diffusion prior from a VP-trained noise-prediction network (MONAI's ``DiffusionModelUNet``).

The network was trained in *model space* ``z = (x - offset) / scale`` on the VP process
``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps`` to predict ``eps`` (``prediction="epsilon"``) or
``v = sqrt(abar_t) eps - sqrt(1 - abar_t) z0`` (``prediction="v"``, Salimans & Ho 2022), or ``z0``
itself (``prediction="sample"``, diffusers' name).
:class:`UNetPrior` exposes it as an EDM denoiser in data units: for ``x = x0 + sigma n``,

    sigma_z = sigma / scale,  abar = 1 / (1 + sigma_z^2),  z_t = sqrt(abar) (x - offset) / scale,
    t = schedule.timestep_of_sigma(sigma_z)  (fractional steps between the trained ones),
    z0_hat = (z_t - sqrt(1 - abar) eps_hat) / sqrt(abar),  sqrt(abar) z_t - sqrt(1 - abar) v_hat,  or  the output,

and returns ``offset + scale * z0_hat``. Noise levels outside the trained range are given the nearest
trained step as ``t`` (the conversion itself stays exact).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from invdiff.linalg import batch_view
from invdiff.priors.base import Denoiser, sigma_per_sample
from invdiff.priors.checkpoint import UNET_ARCHITECTURE, CheckpointError, write_checkpoint
from invdiff.schedule import VPSchedule

__all__ = ["UNetConfig", "UNetPrior", "save_prior", "unet_prior_from_payload"]

Prediction = Literal["epsilon", "v", "sample"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a 2-D MONAI ``DiffusionModelUNet`` (its constructor's arguments)."""

    in_channels: int = 2
    channels: tuple[int, ...] = (32, 64, 64)
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    norm_num_groups: int = 16
    num_head_channels: int = 32

    def __post_init__(self):
        """The architecture's constraints, checked before any data is read (MONAI's own messages come late)."""
        if not self.channels or any(not isinstance(c, int) or c < 1 for c in self.channels):
            raise ValueError(f"unet channels must be positive integers, got {self.channels}")
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(f"unet attention levels {self.attention_levels} need one entry per channel level "
                             f"{self.channels}")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError(f"unet channels {tuple(self.channels)} must be multiples of the group-norm groups "
                             f"({self.norm_num_groups}), e.g. 16,32,64")
        if any(c % self.num_head_channels for c, a in zip(self.channels, self.attention_levels) if a):
            raise ValueError(f"unet channels with attention must be multiples of --head-channels "
                             f"{self.num_head_channels}, got {tuple(self.channels)}")

    def build(self) -> nn.Module:
        from monai.networks.nets import DiffusionModelUNet

        return DiffusionModelUNet(spatial_dims=2, in_channels=self.in_channels, out_channels=self.in_channels,
                                  num_res_blocks=self.num_res_blocks, channels=tuple(self.channels),
                                  attention_levels=tuple(self.attention_levels),
                                  norm_num_groups=self.norm_num_groups, num_head_channels=self.num_head_channels)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class UNetPrior(Denoiser):
    """EDM denoiser around a VP noise-prediction network (see the module docstring).

    Attributes:
        net: ``net(z_t, t)`` with ``z_t`` ``(B, C, H, W)`` and ``t`` ``(B,)`` float steps.
        schedule: the VP schedule the network was trained with.
        event_shape: ``(C, H, W)``.
        prediction: ``"epsilon"``, ``"v"`` or ``"sample"``.
        scale, offset: data = ``offset + scale * model space``.
        config: the architecture, when ``net`` was built from one (needed to save a checkpoint).
        data_range: the data units' range, when known.
        pixel_size_mm: ``(smallest, largest)`` pixel size in mm the prior was trained to serve (its
            training resolution over its zoom augmentation), or ``None`` when undeclared.

    The network is convolutional (attention only pools over positions), so the prior serves images of
    any size whose sides are multiples of its downsampling factor: :meth:`at_size` returns the same
    prior for another image size; what must match is the pixel size, not the image size.
    """

    net: nn.Module
    schedule: VPSchedule = field()  # required: field() overrides the base class's default of None
    event_shape: tuple[int, int, int] = field()
    prediction: Prediction = "epsilon"
    scale: float = 1.0
    offset: float = 0.0
    config: UNetConfig | None = None
    data_range: tuple[float, float] | None = None
    pixel_size_mm: tuple[float, float] | None = None

    def __post_init__(self):
        if self.pixel_size_mm is not None:
            lo, hi = (float(v) for v in self.pixel_size_mm)
            if not 0 < lo <= hi:
                raise ValueError(f"pixel_size_mm must be (smallest, largest) > 0, got {self.pixel_size_mm}")
            self.pixel_size_mm = (lo, hi)
        if self.prediction not in ("epsilon", "v", "sample"):
            raise ValueError(f"prediction must be 'epsilon', 'v' or 'sample', got {self.prediction!r}")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        self.event_shape = tuple(self.event_shape)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (the UNet halves them once per level but the last)."""
        if self.config is None:
            return int(getattr(self.net, "size_multiple", 1))
        return 2 ** (len(self.config.channels) - 1)

    def at_size(self, height: int, width: int) -> UNetPrior:
        """The same prior (shared network) for ``height x width`` images.

        Raises:
            ValueError: a side that is not a multiple of :attr:`size_multiple`.
        """
        m = self.size_multiple
        if height % m or width % m or height < m or width < m:
            raise ValueError(f"this prior's UNet needs image sides that are multiples of {m}; got {height} x {width}")
        return dataclasses.replace(self, event_shape=(self.event_shape[0], int(height), int(width)))

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"expected images (B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        sigma_z = sigma_per_sample(sigma, x) / self.scale
        abar = 1.0 / (1.0 + sigma_z**2)
        t = self.schedule.timestep_of_sigma(sigma_z.cpu()).to(x.device)
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else x.dtype
        a = batch_view(abar.sqrt(), x).to(dtype)
        b = batch_view((1.0 - abar).sqrt(), x).to(dtype)
        z_t = a * ((x.to(dtype) - self.offset) / self.scale)
        out = self.net(z_t, t.to(dtype))
        if self.prediction == "epsilon":
            z0 = (z_t - b * out) / a
        elif self.prediction == "v":
            z0 = a * z_t - b * out
        else:
            z0 = out
        return (self.offset + self.scale * z0).to(x.dtype)


def save_prior(path: str | os.PathLike, prior: UNetPrior, provenance: dict | None = None,
               training: dict | None = None) -> Path:
    """Write ``prior`` (and optionally resumable ``training`` state) to ``path`` atomically."""
    if prior.config is None:
        raise ValueError("the prior has no UNetConfig, so its architecture cannot be recorded")
    return write_checkpoint(path, UNET_ARCHITECTURE, prior.config.to_dict(), prior.net, prior.event_shape, prior.scale,
                            prior.offset, prior.data_range, provenance, training,
                            betas=prior.schedule.betas.detach().cpu().to(torch.float64), prediction=prior.prediction,
                            **({"pixel_size_mm": list(prior.pixel_size_mm)} if prior.pixel_size_mm else {}))


def unet_prior_from_payload(payload: dict, path: str | os.PathLike, device: str | torch.device = "cpu") -> UNetPrior:
    """The :class:`UNetPrior` of a checked checkpoint payload (``path`` names errors), in evaluation mode."""
    config = UNetConfig.from_dict(payload["config"])
    net = config.build()
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the recorded architecture: {err}") from None
    net.eval().requires_grad_(False).to(device)
    norm = payload["normalization"]
    data_range = payload.get("data_range")
    pixel = payload.get("pixel_size_mm")
    try:
        return UNetPrior(net, VPSchedule(payload["betas"]), tuple(payload["event_shape"]), payload["prediction"],
                         float(norm["scale"]), float(norm["offset"]), config,
                         tuple(data_range) if data_range is not None else None,
                         tuple(pixel) if pixel is not None else None)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: {err}") from None
