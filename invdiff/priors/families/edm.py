"""EDM-style priors (Karras et al. 2022): a raw network ``F(c_in x, c_noise)`` and a preconditioning.

The networks are EDM's ``DhariwalUNet`` (ADM re-implemented; InverseBench's fastMRI priors) and
``SongUNet`` (NCSN++ / DDPM++; EDM's and score-SDE's converted priors), built from deepinv's ports
(``ADMUNet``, ``NCSNpp``), whose parameter names are EDM's. invdiff applies the preconditioning
itself, in model space ``z = (x - offset) / scale`` with ``s = sigma / scale``:

    D(z, s) = c_skip(s) z + c_out(s) F(c_in(s) z, c_noise(s))

    edm: c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2), c_in = 1 / sqrt(s^2 + sd^2),
         c_noise = log(s) / 4                                    (sd = sigma_data)
    vp:  c_skip = 1, c_out = -s, c_in = 1 / sqrt(s^2 + 1), c_noise = (M - 1) t(s),
         t(s) = (sqrt(beta_min^2 + 2 beta_d log(1 + s^2)) - beta_min) / beta_d
    ve:  c_skip = 1, c_out = s, c_in = 1, c_noise = log(s / 2)

(EDM's Table 1; EDM's ``VPPrecond`` / ``VEPrecond`` / ``EDMPrecond``). The denoiser in data units is
``offset + scale * D``. Any ``sigma > 0`` is exact: there are no discrete steps to snap to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import deepinv as dinv
import torch
from torch import Tensor, nn

from invdiff.linalg import batch_view
from invdiff.priors.base import Denoiser, sigma_per_sample
from invdiff.priors.families.config import PlainConfig

__all__ = ["EDMConfig", "EDMNetwork", "EDMPrior", "EDM_PRESETS"]

Precond = Literal["edm", "vp", "ve"]
Architecture = Literal["dhariwal", "song-ncsn", "song-ddpm"]


@dataclass(frozen=True)
class EDMConfig(PlainConfig):
    """The network (EDM's constructor arguments) and its preconditioning.

    A class-conditional network (``label_dim > 0``, e.g. deepinv's ImageNet-64 ``ADMUNet``) is used as
    the prior of one class, ``class_label``, which must then be set.
    """

    family = "EDM"

    architecture: Architecture = "dhariwal"
    img_resolution: int = 64
    in_channels: int = 3
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    channel_mult_emb: int = 4
    num_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    augment_dim: int = 0
    dropout: float = 0.0
    label_dim: int = 0
    class_label: int | None = None
    precond: Precond = "edm"
    sigma_data: float = 0.5
    beta_d: float = 19.9
    beta_min: float = 0.1
    M: int = 1000

    def __post_init__(self):
        if self.architecture not in ("dhariwal", "song-ncsn", "song-ddpm"):
            raise ValueError(f"EDM config: architecture must be dhariwal, song-ncsn or song-ddpm, "
                             f"got {self.architecture!r}")
        if self.precond not in ("edm", "vp", "ve"):
            raise ValueError(f"EDM config: precond must be edm, vp or ve, got {self.precond!r}")
        if self.label_dim and self.class_label is not None and not 0 <= self.class_label < self.label_dim:
            raise ValueError(f"EDM config: class_label must be in [0, {self.label_dim}), got {self.class_label}")
        if self.img_resolution % 2 ** (len(self.channel_mult) - 1):
            raise ValueError(f"EDM config: img_resolution {self.img_resolution} is not divisible by "
                             f"2^(levels - 1) = {2 ** (len(self.channel_mult) - 1)}")


class EDMNetwork(nn.Module):
    """EDM's raw network ``F(x, c_noise)`` for ``config`` (deepinv's port, EDM's parameter names).

    The network's layers are named after ``img_resolution`` (``enc.64x64_conv``), and SongUNet's
    resampling is tied to it: it serves that image size only. Group normalisation uses EDM's group
    count ``min(32, channels / 4)``; deepinv's ports use 32 groups throughout, which is the same for
    the 128 and more channels of every published configuration but not for smaller networks.
    """

    def __init__(self, config: EDMConfig):
        super().__init__()
        c = config
        common = dict(img_resolution=c.img_resolution, in_channels=c.in_channels, out_channels=c.in_channels,
                      label_dim=c.label_dim, augment_dim=c.augment_dim, model_channels=c.model_channels,
                      channel_mult=tuple(c.channel_mult), channel_mult_emb=c.channel_mult_emb, num_blocks=c.num_blocks,
                      attn_resolutions=tuple(c.attn_resolutions), dropout=c.dropout, pretrained=None)
        if c.architecture == "dhariwal":
            self.unet = dinv.models.ADMUNet(**common)
        else:
            self.unet = dinv.models.NCSNpp(model_type=c.architecture.split("-")[1], **common)
        for module in self.unet.modules():  # EDM's (and score-SDE's) group count; deepinv's ports use 32
            if isinstance(module, nn.GroupNorm):
                module.num_groups = min(32, module.num_channels // 4)
        self.config = c

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        labels = None
        if self.config.label_dim:
            if self.config.class_label is None:
                raise ValueError(f"a class-conditional network ({self.config.label_dim} classes): set class_label in "
                                 "its config (invdiff priors convert --config) to use it as one class's prior")
            labels = torch.zeros(x.shape[0], self.config.label_dim, dtype=x.dtype, device=x.device)
            labels[:, self.config.class_label] = 1.0
        return self.unet.forward_unet(x, c_noise, class_labels=labels)

    # the state dict is EDM's, without the wrapper's prefix
    def state_dict(self, *args, **kwargs):
        return self.unet.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.unet.load_state_dict(state_dict, strict=strict, assign=assign)


def precond_coefficients(config: EDMConfig, s: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(c_skip, c_out, c_in, c_noise)`` at model-space noise levels ``s`` (float64 ``(B,)``)."""
    if config.precond == "edm":
        sd = config.sigma_data
        r = (s**2 + sd**2).sqrt()
        return sd**2 / r**2, s * sd / r, 1.0 / r, s.log() / 4
    if config.precond == "vp":
        t = ((config.beta_min**2 + 2 * config.beta_d * torch.log1p(s**2)).sqrt() - config.beta_min) / config.beta_d
        return torch.ones_like(s), -s, 1.0 / (s**2 + 1).sqrt(), (config.M - 1) * t
    return torch.ones_like(s), s, torch.ones_like(s), (s / 2).log()


@dataclass
class EDMPrior(Denoiser):
    """An EDM-preconditioned network as an invdiff denoiser (see the module docstring).

    Attributes:
        net: an :class:`EDMNetwork` (or any ``net(x, c_noise)``), in evaluation mode.
        config: its :class:`EDMConfig`.
        scale, offset: data = ``offset + scale * model space``.
    """

    net: nn.Module
    config: EDMConfig = field()
    scale: float = 1.0
    offset: float = 0.0
    data_range: tuple[float, float] | None = None
    pixel_size_mm: tuple[float, float] | None = None
    event_shape: tuple[int, int, int] = field(init=False)

    def __post_init__(self):
        self.event_shape = (self.config.in_channels, self.config.img_resolution, self.config.img_resolution)
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"expected images (B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        s = sigma_per_sample(sigma, x) / self.scale
        c_skip, c_out, c_in, c_noise = precond_coefficients(self.config, s)
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        z = ((x - self.offset) / self.scale).to(dtype)
        f = self.net(batch_view(c_in, z).to(dtype) * z, c_noise.to(dtype))
        d = batch_view(c_skip, z).to(dtype) * z + batch_view(c_out, z).to(dtype) * f
        return (self.offset + self.scale * d).to(x.dtype)


#: published EDM-style checkpoints: name -> (config, what it is, data units, scale, offset, data_range)
EDM_PRESETS: dict[str, dict] = {
    "inversebench-mri-320": dict(
        config=EDMConfig(architecture="dhariwal", img_resolution=320, in_channels=2, model_channels=128,
                         channel_mult=(1, 1, 1, 2, 2), num_blocks=1, attn_resolutions=(16,)),
        description="InverseBench's fastMRI knee / brain prior (EDMPrecond over DhariwalUNet, complex 2-channel "
                    "320x320, trained on MVUE images)",
        scaling="complex MVUE divided by the 99th percentile of its magnitude (scale 1, offset 0); invdiff's "
                "fastMRI units divide by the 99.5th percentile of the CG-SENSE magnitude: the same up to a few percent; "
                "real and imaginary parts in about [-1, 1] (data_range, as for invdiff's complex MRI priors)",
        scale=1.0, offset=0.0, data_range=(-1.0, 1.0),
        source="InverseBench (Zheng et al. 2025), github.com/devzhk/InverseBench, configs/pretrain/mri-knee-mvue.yaml"),
    "edm-ffhq-64-ve": dict(
        config=EDMConfig(architecture="song-ncsn", img_resolution=64, augment_dim=9),
        description="EDM's FFHQ 64x64 NCSN++ (VE architecture, EDM preconditioning), as deepinv publishes it "
                    "(edm-ffhq-64x64-uncond-ve.pt)",
        scaling="images in [0, 1] mapped to [-1, 1] (scale 0.5, offset 0.5)", scale=0.5, offset=0.5,
        data_range=(0.0, 1.0), source="EDM (Karras et al. 2022), github.com/NVlabs/edm; deepinv's NCSNpp weights"),
    "edm-imagenet-64-cond": dict(
        config=EDMConfig(architecture="dhariwal", img_resolution=64, model_channels=192, channel_mult=(1, 2, 3, 4),
                         num_blocks=3, attn_resolutions=(32, 16, 8), label_dim=1000),
        description="EDM's class-conditional ImageNet 64x64 ADM (DhariwalUNet), as deepinv's ADMUNet publishes it; "
                    "one class's prior once class_label is set",
        scaling="images in [0, 1] mapped to [-1, 1] (scale 0.5, offset 0.5)", scale=0.5, offset=0.5,
        data_range=(0.0, 1.0), source="EDM (Karras et al. 2022); deepinv's ADMUNet weights (imagenet64-cond)"),
    "edm-ffhq-64-vp": dict(
        config=EDMConfig(architecture="song-ddpm", img_resolution=64, augment_dim=9),
        description="EDM's FFHQ 64x64 DDPM++ (VP architecture, EDM preconditioning), as deepinv publishes it "
                    "(edm-ffhq-64x64-uncond-vp.pt)",
        scaling="images in [0, 1] mapped to [-1, 1] (scale 0.5, offset 0.5)", scale=0.5, offset=0.5,
        data_range=(0.0, 1.0), source="EDM (Karras et al. 2022), github.com/NVlabs/edm; deepinv's NCSNpp weights"),
}
