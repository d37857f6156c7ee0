"""Token priors in the prior checkpoint format (:mod:`invdiff.priors.checkpoint`, architecture
``"invdiff.MaskedTokenPrior"``): one file, loadable with ``torch.load(weights_only=True)`` and by
:func:`invdiff.priors.load_prior`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from invdiff.discrete.image_prior import ImageTokenPrior
from invdiff.discrete.token_model import MaskedTokenTransformer, TokenModelConfig
from invdiff.discrete.tokenizer import PatchTokenizer, TokenizerConfig
from invdiff.priors.checkpoint import TOKEN_ARCHITECTURE, CheckpointError, write_checkpoint

__all__ = ["save_token_prior", "token_prior_from_payload"]


def _modules(prior: ImageTokenPrior) -> torch.nn.ModuleDict:
    return torch.nn.ModuleDict({"tokenizer": prior.tokenizer, "model": prior.model})


def save_token_prior(path: str | os.PathLike, prior: ImageTokenPrior, provenance: dict | None = None,
                     training: dict | None = None) -> Path:
    """Write ``prior`` (and optionally resumable ``training`` state) to ``path`` atomically."""
    config = {"tokenizer": prior.tokenizer.config.to_dict(), "token_model": prior.model.config.to_dict()}
    return write_checkpoint(path, TOKEN_ARCHITECTURE, config, _modules(prior), prior.event_shape, prior.scale,
                            prior.offset, prior.data_range, provenance, training)


def token_prior_from_payload(payload: dict, path: str | os.PathLike,
                             device: str | torch.device = "cpu") -> ImageTokenPrior:
    """The :class:`ImageTokenPrior` of a checked checkpoint payload (``path`` names errors)."""
    config = payload["config"]
    try:
        tokenizer = PatchTokenizer(TokenizerConfig.from_dict(config["tokenizer"]))
        model = MaskedTokenTransformer(TokenModelConfig.from_dict(config["token_model"]))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid token prior config: {err}") from None
    prior = ImageTokenPrior(tokenizer, model)
    try:
        _modules(prior).load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the recorded architecture: {err}") from None
    for module in (tokenizer, model):
        module.eval().requires_grad_(False).to(device)
    norm = payload["normalization"]
    data_range = payload.get("data_range")
    return ImageTokenPrior(tokenizer, model, float(norm["scale"]), float(norm["offset"]),
                           tuple(data_range) if data_range is not None else None)
