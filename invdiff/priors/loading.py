"""Loading a prior checkpoint of any supported architecture (:mod:`invdiff.priors.checkpoint`)."""

from __future__ import annotations

import os

import torch

from invdiff.priors.checkpoint import TOKEN_ARCHITECTURE, read_checkpoint
from invdiff.priors.tokens.checkpoint import token_prior_from_payload
from invdiff.priors.tokens.image import ImageTokenPrior
from invdiff.priors.unet import UNetPrior, unet_prior_from_payload

__all__ = ["load_prior"]


def load_prior(path: str | os.PathLike, device: str | torch.device = "cpu") -> UNetPrior | ImageTokenPrior:
    """Rebuild the prior saved by :func:`~invdiff.priors.unet.save_prior` (a :class:`UNetPrior`) or by
    :func:`~invdiff.priors.tokens.checkpoint.save_token_prior` (an :class:`ImageTokenPrior`), in
    evaluation mode, on ``device``. The file is read with ``weights_only=True``: no code runs from it."""
    payload = read_checkpoint(path)
    if payload["architecture"] == TOKEN_ARCHITECTURE:
        return token_prior_from_payload(payload, path, device)
    return unet_prior_from_payload(payload, path, device)
