"""The masked token prior interface.

Tokens are ``(N, L)`` int64 grids over ``L`` positions (a flattened token image, row-major), each
entry a code ``0..K-1`` or ``K`` (:attr:`TokenPrior.mask_id`) for a masked position. A masked token
model predicts, for every masked position, the distribution of its code given the unmasked ones
(MaskGIT's objective; positions are predicted independently given the visible tokens). A decoder
maps a grid of code *embeddings* ``(N, L, D)`` — codebook rows, or any point of the embedding
space such as an expected embedding — to images, differentiably.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

__all__ = ["TokenPrior"]


class TokenPrior(ABC):
    """A masked token model with a codebook ``(K, D)`` and a decoder (module docstring)."""

    codebook: Tensor

    @property
    @abstractmethod
    def num_positions(self) -> int:
        """``L``, the number of token positions of one image."""

    @property
    def num_codes(self) -> int:
        """``K``, the codebook size."""
        return int(self.codebook.shape[0])

    @property
    def mask_id(self) -> int:
        """The token value of a masked position (``K``)."""
        return self.num_codes

    @abstractmethod
    def log_probs(self, tokens: Tensor) -> Tensor:
        """``(N, L)`` tokens -> ``(N, L, K)`` log-probabilities of each masked position's code given the
        unmasked tokens. Rows of unmasked positions are unspecified; callers must not use them."""

    @abstractmethod
    def decode(self, embeddings: Tensor) -> Tensor:
        """``(N, L, D)`` embeddings -> ``(N, *image_shape)`` images; differentiable in ``embeddings``."""

    def embed(self, tokens: Tensor) -> Tensor:
        """``(N, L)`` fully unmasked tokens -> ``(N, L, D)`` codebook rows."""
        self.check_tokens(tokens)
        if bool((tokens == self.mask_id).any()):
            raise ValueError("embed needs fully unmasked tokens; got masked positions")
        return self.codebook[tokens]

    def check_tokens(self, tokens: Tensor) -> None:
        """Raise ``ValueError`` unless ``tokens`` is an ``(N, L)`` integer grid with values in ``0..K``."""
        if tokens.dim() != 2 or tokens.shape[1] != self.num_positions or tokens.dtype.is_floating_point:
            raise ValueError(f"tokens must be integer (N, {self.num_positions}), got {tuple(tokens.shape)} "
                             f"{tokens.dtype}")
        if bool((tokens < 0).any()) or bool((tokens > self.mask_id).any()):
            raise ValueError(f"token values must lie in 0..{self.mask_id} (the mask id), got "
                             f"{int(tokens.min())}..{int(tokens.max())}")
