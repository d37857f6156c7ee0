"""A token prior small enough to enumerate: exact conditionals and exact posteriors.

:class:`EnumerableTokenPrior` holds an arbitrary joint distribution over all ``K^L`` token grids, a
codebook ``(K, D)`` and a linear decoder ``x = W vec(e)`` (``W``: ``(P, L*D)``). Its masked-token
predictions are the exact conditionals ``p(z_i = k | z_visible)`` by enumeration, so it is the
perfect masked token model of its own joint; with a linear-Gaussian measurement of the decoded image
the posterior over grids, ``p(z | y) ∝ p(z) N(y; A W vec(C[z]), σ²)``, is exact too
(:meth:`EnumerableTokenPrior.exact_posterior`). Samplers are scored by the total-variation distance
of their samples' histogram over grids to it (:func:`tv_distance`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from invdiff.measurement import Measurement
from invdiff.priors.tokens.base import TokenPrior

__all__ = ["EnumerableTokenPrior", "tv_distance"]


class EnumerableTokenPrior(TokenPrior):
    """Exact masked token model of the joint ``log_joint`` (module docstring).

    Args:
        log_joint: ``(K**L,)`` unnormalised log-probabilities of the grids, in :meth:`index` order
            (base-``K`` digits, position 0 most significant).
        codebook: ``(K, D)``.
        decoder: ``(P, L*D)``; images are ``(N, P)``.
    """

    def __init__(self, log_joint: Tensor, codebook: Tensor, decoder: Tensor):
        k, d = codebook.shape
        if decoder.dim() != 2 or decoder.shape[1] % d:
            raise ValueError(f"decoder must be (P, L*D) with D = {d}, got {tuple(decoder.shape)}")
        self._l = decoder.shape[1] // d
        if log_joint.shape != (k**self._l,):
            raise ValueError(f"log_joint must hold K**L = {k ** self._l} grids, got {tuple(log_joint.shape)}")
        self.codebook = codebook.to(torch.float64)
        self.decoder = decoder.to(torch.float64)
        self.log_joint = torch.log_softmax(log_joint.to(torch.float64), 0)
        powers = k ** torch.arange(self._l - 1, -1, -1)
        self._powers = powers
        self.grids = (torch.arange(k**self._l)[:, None] // powers) % k  # (G, L)

    @classmethod
    def random(cls, num_codes: int, num_positions: int, dim: int, pixels: int, generator: torch.Generator,
               concentration: float = 2.0) -> EnumerableTokenPrior:
        """A random instance: grid log-probabilities ``concentration * N(0, 1)`` (a few dominant grids),
        codebook and decoder entries ``N(0, 1)`` (decoder scaled by ``1/sqrt(L*D)``)."""
        g = generator
        log_joint = concentration * torch.randn(num_codes**num_positions, generator=g, dtype=torch.float64)
        codebook = torch.randn(num_codes, dim, generator=g, dtype=torch.float64)
        decoder = torch.randn(pixels, num_positions * dim, generator=g, dtype=torch.float64)
        return cls(log_joint, codebook, decoder / (num_positions * dim) ** 0.5)

    @property
    def num_positions(self) -> int:
        return self._l

    @property
    def num_grids(self) -> int:
        return int(self.grids.shape[0])

    def index(self, tokens: Tensor) -> Tensor:
        """``(..., L)`` unmasked tokens -> ``(...)`` grid indices."""
        return (tokens * self._powers.to(tokens.device)).sum(-1)

    def log_probs(self, tokens: Tensor) -> Tensor:
        self.check_tokens(tokens)
        visible = tokens != self.mask_id  # (N, L)
        agree = (self.grids[None] == tokens[:, None]) | ~visible[:, None]  # (N, G, L)
        lw = torch.where(agree.all(-1), self.log_joint[None], -torch.inf)  # (N, G)
        onehot = torch.nn.functional.one_hot(self.grids, self.num_codes).to(torch.bool)  # (G, L, K)
        joint = torch.where(onehot[None], lw[:, :, None, None], -torch.inf)  # (N, G, L, K)
        return torch.logsumexp(joint, 1) - torch.logsumexp(lw, 1)[:, None, None]

    def decode(self, embeddings: Tensor) -> Tensor:
        return embeddings.flatten(1).to(self.decoder.dtype) @ self.decoder.T

    def grid_images(self) -> Tensor:
        """``(G, P)``: every grid decoded."""
        return self.decode(self.codebook[self.grids])

    def exact_posterior(self, measurement: Measurement) -> Tensor:
        """``(B, G)`` posterior probabilities of every grid given each item of ``measurement`` (whose
        unknown is the ``(P,)`` decoded image)."""
        b, g = measurement.batch_size, self.num_grids
        x = self.grid_images().to(measurement.y.dtype).repeat(b, 1)  # item-major, like expand(g)
        loglik = measurement.expand(g).log_likelihood(x).to(torch.float64).reshape(b, g)
        return torch.softmax(self.log_joint[None] + loglik, 1)


def tv_distance(indices: Tensor, probs: Tensor, weights: Tensor | None = None) -> Tensor:
    """Total-variation distance ``½ Σ_g |p̂(g) - p(g)|`` between the (weighted) histogram of grid
    ``indices`` ``(B, N)`` and ``probs`` ``(B, G)``, per item ``(B,)``."""
    if indices.dim() != 2 or probs.dim() != 2 or indices.shape[0] != probs.shape[0]:
        raise ValueError(f"indices (B, N) and probs (B, G) must share B, got {tuple(indices.shape)}, "
                         f"{tuple(probs.shape)}")
    w = torch.full(indices.shape, 1.0 / indices.shape[1], dtype=torch.float64) if weights is None else weights
    hist = torch.zeros_like(probs, dtype=torch.float64).scatter_add_(1, indices, w.to(torch.float64))
    return 0.5 * (hist - probs.to(torch.float64)).abs().sum(1)
