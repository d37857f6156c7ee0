"""A token prior over images: a patch tokenizer's codebook and decoder plus a masked token transformer.

:class:`ImageTokenPrior` is the :class:`~invdiff.priors.tokens.base.TokenPrior` the APS samplers run on
for real images. Its decoder returns data units (``offset + scale * model space``, like the
continuous priors). :meth:`ImageTokenPrior.with_phase` lifts it to complex images in the
2-channel (re, im) layout of the MRI problems: ``x = m * exp(i theta)`` with the decoded magnitude
``m`` and a fixed phase map ``theta`` (for MRI, the smoothed phase of a classical reconstruction,
:func:`invdiff.problems.tokens.smooth_phase`; zero for real images).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from invdiff.priors.tokens.base import TokenPrior
from invdiff.priors.tokens.token_model import MaskedTokenTransformer
from invdiff.priors.tokens.tokenizer import PatchTokenizer

__all__ = ["ImageTokenPrior", "PhaseLiftedTokenPrior"]


@dataclass(eq=False)
class ImageTokenPrior(TokenPrior):
    """Tokenizer + masked token model (module docstring).

    Attributes:
        tokenizer: the VQ autoencoder (its codebook is this prior's codebook).
        model: the masked token transformer over the tokenizer's ``L`` positions and ``K`` codes.
        scale, offset: data = ``offset + scale * model space``.
        data_range: the data units' nominal range, or ``None``.
    """

    tokenizer: PatchTokenizer
    model: MaskedTokenTransformer
    scale: float = 1.0
    offset: float = 0.0
    data_range: tuple[float, float] | None = None

    def __post_init__(self):
        t, m = self.tokenizer.config, self.model.config
        if (m.num_positions, m.num_codes) != (t.grid ** 2, t.num_codes):
            raise ValueError(f"the token model is over {m.num_positions} positions and {m.num_codes} codes, the "
                             f"tokenizer has {t.grid ** 2} and {t.num_codes}")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")

    @property
    def codebook(self) -> Tensor:  # type: ignore[override]
        return self.tokenizer.codebook

    @property
    def num_positions(self) -> int:
        return self.tokenizer.num_positions

    @property
    def event_shape(self) -> tuple[int, int, int]:
        c = self.tokenizer.config
        return c.in_channels, c.image_size, c.image_size

    def log_probs(self, tokens: Tensor) -> Tensor:
        self.check_tokens(tokens)
        with torch.no_grad():
            return torch.log_softmax(self.model(tokens).to(torch.float64), -1)

    def decode(self, embeddings: Tensor) -> Tensor:
        return self.offset + self.scale * self.tokenizer.decode(embeddings)

    def tokenize(self, images: Tensor) -> Tensor:
        """``(N, C, S, S)`` images in data units -> ``(N, L)`` tokens."""
        with torch.no_grad():
            return self.tokenizer.tokenize((images - self.offset) / self.scale)

    def reconstruct(self, images: Tensor) -> Tensor:
        """``(N, C, S, S)`` images in data units, tokenized and decoded: the closest this prior's token
        grids come to them (the ceiling of any reconstruction with it)."""
        with torch.no_grad():
            return self.decode(self.codebook[self.tokenize(images)])

    def with_phase(self, phase: Tensor) -> PhaseLiftedTokenPrior:
        """This prior on complex images ``m exp(i theta)`` (module docstring); ``phase`` ``(B, S, S)``."""
        return PhaseLiftedTokenPrior(self, phase)


@dataclass(eq=False)
class PhaseLiftedTokenPrior(TokenPrior):
    """``base``'s magnitudes times a fixed phase, as ``(N, 2, S, S)`` (re, im) images.

    ``phase`` is ``(B, S, S)`` radians, one map per measured item; decoded rows are item-major
    (``B * n`` rows: ``n`` particles of item 0, then of item 1, ...), as the samplers batch them.
    """

    base: ImageTokenPrior
    phase: Tensor

    def __post_init__(self):
        s = self.base.event_shape
        if s[0] != 1:
            raise ValueError(f"phase lifting needs a single-channel (magnitude) prior, got {s[0]} channels")
        if self.phase.dim() != 3 or tuple(self.phase.shape[1:]) != s[1:]:
            raise ValueError(f"phase must be (B, {s[1]}, {s[2]}) radians, got {tuple(self.phase.shape)}")

    @property
    def codebook(self) -> Tensor:  # type: ignore[override]
        return self.base.codebook

    @property
    def num_positions(self) -> int:
        return self.base.num_positions

    @property
    def event_shape(self) -> tuple[int, int, int]:
        """``(2, S, S)``: (re, im) images of the base prior's size."""
        return (2, *self.base.event_shape[1:])

    def log_probs(self, tokens: Tensor) -> Tensor:
        return self.base.log_probs(tokens)

    def decode(self, embeddings: Tensor) -> Tensor:
        m = self.base.decode(embeddings)  # (B * n, 1, S, S)
        b = self.phase.shape[0]
        if m.shape[0] % b:
            raise ValueError(f"{m.shape[0]} decoded rows do not split into the phase maps' {b} items")
        theta = self.phase.to(m.device, m.dtype).repeat_interleave(m.shape[0] // b, 0).unsqueeze(1)
        return torch.cat([m * torch.cos(theta), m * torch.sin(theta)], 1)
