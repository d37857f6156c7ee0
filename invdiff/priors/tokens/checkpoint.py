"""Token priors in the prior checkpoint format (:mod:`invdiff.priors.checkpoint`, architecture
``"invdiff.MaskedTokenPrior"``): one file, loadable with ``torch.load(weights_only=True)`` and by
:func:`invdiff.priors.load_prior`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from invdiff.priors.checkpoint import TOKEN_ARCHITECTURE, CheckpointError, write_checkpoint
from invdiff.priors.tokens.image import ImageTokenPrior
from invdiff.priors.tokens.token_model import MaskedTokenTransformer, TokenModelConfig
from invdiff.priors.tokens.tokenizer import PatchTokenizer, TokenizerConfig

__all__ = ["save_token_prior", "token_prior_from_payload", "weights_module"]


def weights_module(tokenizer: PatchTokenizer, model: MaskedTokenTransformer) -> torch.nn.ModuleDict:
    """The module whose state dict is a token prior's ``state_dict`` (``"tokenizer.*"``, ``"model.*"``)."""
    return torch.nn.ModuleDict({"tokenizer": tokenizer, "model": model})


def save_token_prior(path: str | os.PathLike, prior: ImageTokenPrior, provenance: dict | None = None,
                     training: dict | None = None) -> Path:
    """Write ``prior`` (and optionally resumable ``training`` state) to ``path`` atomically."""
    config = {"tokenizer": prior.tokenizer.config.to_dict(), "token_model": prior.model.config.to_dict()}
    return write_checkpoint(path, TOKEN_ARCHITECTURE, config, weights_module(prior.tokenizer, prior.model),
                            prior.event_shape, prior.scale, prior.offset, prior.data_range, provenance, training)


def token_prior_from_payload(payload: dict, path: str | os.PathLike,
                             device: str | torch.device = "cpu") -> ImageTokenPrior:
    """The :class:`ImageTokenPrior` of a checked checkpoint payload (``path`` names errors)."""
    config, norm, data_range = payload["config"], payload["normalization"], payload.get("data_range")
    try:
        prior = ImageTokenPrior(PatchTokenizer(TokenizerConfig.from_dict(config["tokenizer"])),
                                MaskedTokenTransformer(TokenModelConfig.from_dict(config["token_model"])),
                                float(norm["scale"]), float(norm["offset"]),
                                tuple(data_range) if data_range is not None else None)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid token prior config: {err}") from None
    try:
        weights_module(prior.tokenizer, prior.model).load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the recorded architecture: {err}") from None
    for module in (prior.tokenizer, prior.model):
        module.eval().requires_grad_(False).to(device)
    return prior
