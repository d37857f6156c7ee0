"""A masked token model: a bidirectional transformer predicting masked codes (MaskGIT, Chang et al. 2022).

Input ``(N, L)`` tokens with values ``0..K`` (``K`` = the mask token); output ``(N, L, K)`` logits over
the ``K`` codes at every position. Trained with MaskGIT's objective (:func:`masked_token_loss`): mask
a fraction ``cos(pi r / 2)``, ``r ~ U(0, 1)``, of the positions of each grid (at least one), and
minimise the cross-entropy of the true codes at the masked positions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MaskedTokenTransformer", "TokenModelConfig", "masked_token_loss", "maskgit_mask"]


@dataclass(frozen=True)
class TokenModelConfig:
    """Architecture of :class:`MaskedTokenTransformer` (pre-norm encoder layers, GELU, learned positions)."""

    num_positions: int = 256
    num_codes: int = 256
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.1

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be a multiple of heads {self.heads}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TokenModelConfig:
        return cls(**d)


class MaskedTokenTransformer(nn.Module):
    """``(N, L)`` tokens in ``0..K`` -> ``(N, L, K)`` logits (module docstring)."""

    def __init__(self, config: TokenModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.num_codes + 1, c.dim)
        self.position = nn.Parameter(torch.zeros(1, c.num_positions, c.dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(c.dim, c.heads, c.mlp_ratio * c.dim, c.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, c.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.num_codes)

    def forward(self, tokens: Tensor) -> Tensor:
        c = self.config
        if tokens.dim() != 2 or tokens.shape[1] != c.num_positions:
            raise ValueError(f"expected tokens (N, {c.num_positions}), got {tuple(tokens.shape)}")
        h = self.embed(tokens) + self.position
        return self.head(self.norm(self.layers(h)))


def maskgit_mask(n: int, length: int, generator: torch.Generator) -> Tensor:
    """``(n, length)`` boolean masks: per row, ``ceil(L cos(pi r / 2))`` positions (at least one),
    ``r ~ U(0, 1)``, chosen uniformly. The expected masked fraction is ``2 / pi``."""
    r = torch.rand(n, generator=generator)
    count = torch.clamp(torch.ceil(torch.cos(math.pi * r / 2) * length), min=1).long()
    rank = torch.rand(n, length, generator=generator).argsort(1).argsort(1)  # a random permutation per row
    return rank < count.unsqueeze(1)


def masked_token_loss(model: MaskedTokenTransformer, tokens: Tensor, generator: torch.Generator) -> Tensor:
    """MaskGIT's loss on ``(N, L)`` unmasked tokens: mean cross-entropy (nats) of the true codes at
    the masked positions of :func:`maskgit_mask`."""
    masked = maskgit_mask(*tokens.shape, generator)
    logits = model(torch.where(masked, model.config.num_codes, tokens))
    return F.cross_entropy(logits[masked], tokens[masked])
