"""guided-diffusion (ADM, Dhariwal & Nichol 2021) networks of any configuration.

The published ADM priors used for inverse problems are all this one ``UNetModel`` with different
hyperparameters: DPS's FFHQ and the ImageNet 256 prior (deepinv's ``DiffUNet`` builds those two), and
DDS's fastMRI (complex, 2 channels, 320x320) and AAPM CT (256x256) priors, which ``DiffUNet`` cannot.
:class:`ADMNetwork` assembles the network from deepinv's guided-diffusion blocks (``ResBlock``,
``AttentionBlock``, ...) for any :class:`ADMConfig`, with guided-diffusion's parameter names, so a
published state dict loads strictly; the tests check that for deepinv's two configurations it is
``DiffUNet`` itself (same names, shapes and outputs).

Convention: VP, linear betas 1e-4..0.02 over 1000 steps, the network predicts epsilon in its first
``in_channels`` outputs (learned variances, when ``learn_sigma``, in the rest). One quirk is kept on
purpose: guided-diffusion turns ``attention_resolutions`` into downsampling factors as
``image_size // r``, so a factor that no level reaches (DDS's 320x320 prior: 320 // 16 = 20) gives
no attention outside the middle block. Reproducing it is what makes the published weights load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from deepinv.models.diffunet import (AttentionBlock, Downsample, ResBlock, TimestepEmbedSequential, Upsample,
                                     normalization, timestep_embedding, zero_module)
from deepinv.models.utils import conv_nd
from torch import Tensor, nn

from invdiff.priors.families.config import PlainConfig

__all__ = ["ADMConfig", "ADMNetwork", "ADM_PRESETS"]


@dataclass(frozen=True)
class ADMConfig(PlainConfig):
    """guided-diffusion's ``create_model`` arguments (its names; ``channel_mult`` explicit).

    ``image_size`` only enters through ``attention_resolutions`` (see the module docstring): the network
    is convolutional and serves any size whose sides are multiples of ``2 ** (len(channel_mult) - 1)``.
    """

    family = "ADM"

    image_size: int = 256
    in_channels: int = 3
    model_channels: int = 128
    channel_mult: tuple[float, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (16,)
    num_heads: int = 4
    num_head_channels: int = 64
    num_heads_upsample: int = -1
    learn_sigma: bool = True
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    use_new_attention_order: bool = False
    dropout: float = 0.0

    def __post_init__(self):
        if self.image_size < 1 or self.in_channels < 1 or self.model_channels < 1 or self.num_res_blocks < 1:
            raise ValueError(f"ADM config: sizes must be positive, got {self}")
        if not self.channel_mult:
            raise ValueError("ADM config: channel_mult must not be empty")

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    @property
    def size_multiple(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


class ADMNetwork(nn.Module):
    """guided-diffusion's ``UNetModel`` (unconditional) for ``config``: ``forward(z_t, t)`` returns the
    epsilon estimate ``(B, in_channels, H, W)`` for fractional steps ``t`` ``(B,)``; :meth:`raw` returns
    all ``out_channels`` outputs."""

    def __init__(self, config: ADMConfig):
        super().__init__()
        c = config
        self.config = c
        self.model_channels = c.model_channels
        self.size_multiple = c.size_multiple
        attention_ds = {c.image_size // int(r) for r in c.attention_resolutions}
        heads_up = c.num_heads if c.num_heads_upsample == -1 else c.num_heads_upsample
        emb = 4 * c.model_channels
        block = dict(dims=2, use_checkpoint=False, use_scale_shift_norm=c.use_scale_shift_norm)
        attention = dict(use_checkpoint=False, num_head_channels=c.num_head_channels,
                         use_new_attention_order=c.use_new_attention_order)

        self.time_embed = nn.Sequential(nn.Linear(c.model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        ch = first = int(c.channel_mult[0] * c.model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(2)(c.in_channels, ch, 3, padding=1))])
        skips, ds = [ch], 1
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb, c.dropout, out_channels=int(mult * c.model_channels),
                                                    **block)]
                ch = int(mult * c.model_channels)
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, num_heads=c.num_heads, **attention))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skips.append(ch)
            if level != len(c.channel_mult) - 1:
                down = (ResBlock(ch, emb, c.dropout, out_channels=ch, down=True, **block) if c.resblock_updown
                        else Downsample(ch, True, dims=2, out_channels=ch))
                self.input_blocks.append(TimestepEmbedSequential(down))
                skips.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb, c.dropout, **block), AttentionBlock(ch, num_heads=c.num_heads, **attention),
            ResBlock(ch, emb, c.dropout, **block))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(c.channel_mult))[::-1]:
            for i in range(c.num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), emb, c.dropout, out_channels=int(c.model_channels * mult),
                                   **block)]
                ch = int(c.model_channels * mult)
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, num_heads=heads_up, **attention))
                if level and i == c.num_res_blocks:
                    layers.append(ResBlock(ch, emb, c.dropout, out_channels=ch, up=True, **block)
                                  if c.resblock_updown else Upsample(ch, True, dims=2, out_channels=ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(),
                                 zero_module(conv_nd(2)(first, c.out_channels, 3, padding=1)))

    def raw(self, x: Tensor, t: Tensor) -> Tensor:
        """All outputs (epsilon, then the variance channels when ``learn_sigma``)."""
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        h, hs = x, []
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)

    def forward(self, z_t: Tensor, t: Tensor) -> Tensor:
        return self.raw(z_t, t)[:, : self.config.in_channels]


#: published ADM checkpoints: name -> (config, what it is, data units, scale, offset, data_range)
ADM_PRESETS: dict[str, dict] = {
    "adm-ffhq-256": dict(
        config=ADMConfig(), description="DPS's FFHQ 256x256 prior (ffhq_10m.pt), RGB",
        scaling="images in [0, 1] mapped to [-1, 1] (scale 0.5, offset 0.5)", scale=0.5, offset=0.5,
        data_range=(0.0, 1.0), source="DPS (Chung et al. 2023), github.com/DPS2022/diffusion-posterior-sampling"),
    "adm-imagenet-256": dict(
        config=ADMConfig(model_channels=256, num_res_blocks=2, attention_resolutions=(32, 16, 8)),
        description="guided-diffusion's unconditional ImageNet 256x256 prior (256x256_diffusion_uncond.pt), RGB",
        scaling="images in [0, 1] mapped to [-1, 1] (scale 0.5, offset 0.5)", scale=0.5, offset=0.5,
        data_range=(0.0, 1.0), source="guided-diffusion (Dhariwal & Nichol 2021), github.com/openai/guided-diffusion"),
    "dds-fastmri-320": dict(
        config=ADMConfig(image_size=320, in_channels=2, model_channels=256),
        description="DDS's fastMRI 320x320 complex prior (fastmri_knee_320_complex_1m.pt; 2 channels re, im)",
        scaling="the authors' stored slices fed unchanged (scale 1, offset 0): complex images with magnitude about "
                "[0, 1]; invdiff's fastMRI units (CG-SENSE 99.5th percentile = 1) are the same up to that choice",
        scale=1.0, offset=0.0, data_range=(-1.0, 1.0),
        source="DDS (Chung, Lee & Ye 2024), github.com/HJ-harry/DDS, configs/vp/fastmri_knee_320_complex.yml"),
    "dds-aapm-256": dict(
        config=ADMConfig(in_channels=1, model_channels=256),
        description="DDS's AAPM CT 256x256 prior (AAPM256_1M.pt), 1 channel",
        scaling="the authors' stored slices fed unchanged (scale 1, offset 0)", scale=1.0, offset=0.0,
        data_range=None, source="DDS (Chung, Lee & Ye 2024), github.com/HJ-harry/DDS, configs/vp/AAPM256.yml"),
}
