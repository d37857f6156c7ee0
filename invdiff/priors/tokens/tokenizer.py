"""A patch tokenizer: a small VQ autoencoder (van den Oord et al. 2017) mapping images to token grids.

An ``S x S`` image becomes an ``(S/p) x (S/p)`` grid of codes, one per ``p x p`` patch (``p`` a power
of 2; the receptive fields of the convolutional encoder and decoder overlap neighbouring patches,
so decoded images have no block edges). Images are in *model space* (the prior maps data units to
it with its scale and offset).

* :meth:`PatchTokenizer.encode`: images ``(N, C, S, S)`` -> continuous codes ``(N, D, S/p, S/p)``;
* :meth:`PatchTokenizer.tokenize`: images -> tokens ``(N, L)``, ``L = (S/p)^2``, row-major;
* :meth:`PatchTokenizer.decode`: embeddings ``(N, L, D)`` -> images ``(N, C, S, S)``; any point of the
  embedding space is accepted (codebook rows, expected embeddings), and the map is differentiable.

The codebook ``(K, D)`` is a buffer updated by exponential moving averages of the encoder outputs
assigned to each code (VQ-VAE-2's rule), with unused codes restarted at random encoder outputs; it
is not a parameter of the optimiser.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

__all__ = ["PatchTokenizer", "TokenizerConfig"]


@dataclass(frozen=True)
class TokenizerConfig:
    """Architecture of :class:`PatchTokenizer`.

    ``channels`` has one entry per 2x down-sampling level, so ``patch = 2 ** len(channels)``.
    """

    image_size: int = 128
    in_channels: int = 1
    channels: tuple[int, ...] = (16, 32, 64)
    num_codes: int = 256
    code_dim: int = 8

    def __post_init__(self):
        if not self.channels or self.image_size % self.patch:
            raise ValueError(f"image_size {self.image_size} must be a multiple of the patch size {self.patch}")
        if self.num_codes < 2 or self.code_dim < 1:
            raise ValueError(f"need num_codes >= 2 and code_dim >= 1, got {self.num_codes}, {self.code_dim}")

    @property
    def patch(self) -> int:
        return 2 ** len(self.channels)

    @property
    def grid(self) -> int:
        """Tokens per side, ``S / p``."""
        return self.image_size // self.patch

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> TokenizerConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
                         nn.SiLU())


class PatchTokenizer(nn.Module):
    """VQ autoencoder with a ``p x p`` patch grid (module docstring)."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        c = config.channels
        down: list[nn.Module] = [nn.Conv2d(config.in_channels, c[0], 3, padding=1), nn.SiLU()]
        prev = c[0]
        for ch in c:
            down += [nn.Conv2d(prev, ch, 4, stride=2, padding=1), nn.SiLU(), _block(ch, ch)]
            prev = ch
        down.append(nn.Conv2d(prev, config.code_dim, 1))
        self.encoder = nn.Sequential(*down)
        up: list[nn.Module] = [nn.Conv2d(config.code_dim, c[-1], 3, padding=1), nn.SiLU()]
        prev = c[-1]
        for ch in reversed(c):
            up += [nn.Upsample(scale_factor=2, mode="nearest"), _block(prev, ch)]
            prev = ch
        up.append(nn.Conv2d(prev, config.in_channels, 3, padding=1))
        self.decoder = nn.Sequential(*up)
        self.register_buffer("codebook", torch.zeros(config.num_codes, config.code_dim))
        self.register_buffer("cluster_size", torch.zeros(config.num_codes))
        self.register_buffer("embed_sum", torch.zeros(config.num_codes, config.code_dim))

    @property
    def num_positions(self) -> int:
        return self.config.grid ** 2

    def _check(self, images: Tensor) -> None:
        c, p = self.config.in_channels, self.config.patch
        if images.dim() != 4 or images.shape[1] != c or images.shape[2] % p or images.shape[3] % p:
            raise ValueError(f"expected images (N, {c}, H, W) with H and W multiples of the patch size {p}, got "
                             f"{tuple(images.shape)}")

    def encode(self, images: Tensor) -> Tensor:
        """``(N, C, H, W)`` model-space images -> ``(N, D, H/p, W/p)`` continuous codes (``H = W = S`` for
        a token grid; any multiple of ``p`` while training on crops)."""
        self._check(images)
        return self.encoder(images)

    def nearest(self, z: Tensor) -> Tensor:
        """``(M, D)`` vectors -> ``(M,)`` indices of their nearest codebook rows (Euclidean)."""
        return torch.cdist(z, self.codebook.to(z.dtype)).argmin(-1)

    def encode_flat(self, images: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        """:meth:`encode` as ``(N * H/p * W/p, D)`` rows in row-major patch order, and ``(N, H/p, W/p)``."""
        z = self.encode(images)
        n, d, h, w = z.shape
        return z.permute(0, 2, 3, 1).reshape(-1, d), (n, h, w)

    def tokenize(self, images: Tensor) -> Tensor:
        """``(N, C, S, S)`` model-space images -> ``(N, L)`` int64 tokens (row-major patch order)."""
        flat, (n, _, _) = self.encode_flat(images)
        return self.nearest(flat).reshape(n, -1)

    def decode(self, embeddings: Tensor) -> Tensor:
        """``(N, L, D)`` embeddings -> ``(N, C, S, S)`` model-space images."""
        n, length, d = embeddings.shape
        g = self.config.grid
        if length != g * g or d != self.config.code_dim:
            raise ValueError(f"expected embeddings (N, {g * g}, {self.config.code_dim}), got {tuple(embeddings.shape)}")
        weight = self.decoder[0].weight
        z = embeddings.to(weight.dtype).reshape(n, g, g, d).permute(0, 3, 1, 2)
        return self.decoder(z)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Straight-through reconstruction of ``(N, C, H, W)`` images: ``(images_hat, z, tokens)`` with
        ``z`` the ``(N * H/p * W/p, D)`` encoder outputs and ``tokens`` their ``(N, H/p * W/p)`` codes."""
        flat, (n, h, w) = self.encode_flat(images)
        idx = self.nearest(flat.detach())
        st = flat + (self.codebook[idx] - flat).detach()
        return self.decoder(st.reshape(n, h, w, -1).permute(0, 3, 1, 2)), flat, idx.reshape(n, -1)
