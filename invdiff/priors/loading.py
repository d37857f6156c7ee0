"""Loading a prior checkpoint of any supported architecture (:mod:`invdiff.priors.checkpoint`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from invdiff.priors.base import Denoiser
from invdiff.priors.checkpoint import FAMILY_ARCHITECTURES, FORMAT, TOKEN_ARCHITECTURE, check_payload, read_checkpoint
from invdiff.priors.tokens.checkpoint import token_prior_from_payload
from invdiff.priors.tokens.image import ImageTokenPrior
from invdiff.priors.unet import UNetPrior, unet_prior_from_payload

__all__ = ["load_prior", "open_weights_file"]


def load_prior(path: str | os.PathLike, device: str | torch.device = "cpu") -> UNetPrior | ImageTokenPrior | Denoiser:
    """Rebuild the prior saved by :func:`~invdiff.priors.unet.save_prior` (a :class:`UNetPrior`), by
    :func:`~invdiff.priors.tokens.checkpoint.save_token_prior` (an :class:`ImageTokenPrior`) or by
    :func:`~invdiff.priors.families.convert` (a published family's prior), in evaluation mode, on
    ``device``. The file is read with ``weights_only=True``: no code runs from it."""
    return prior_from_checked(read_checkpoint(path), path, device)


def prior_from_checked(payload: dict, path: str | os.PathLike, device: str | torch.device = "cpu"):
    """The prior of a checked invdiff checkpoint payload (:func:`~invdiff.priors.checkpoint.check_payload`)."""
    if payload["architecture"] == TOKEN_ARCHITECTURE:
        return token_prior_from_payload(payload, path, device)
    if payload["architecture"] in FAMILY_ARCHITECTURES.values():
        from invdiff.priors.families import prior_from_payload

        return prior_from_payload(payload, path, device)
    return unet_prior_from_payload(payload, path, device)


def open_weights_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> Denoiser | ImageTokenPrior:
    """Any supported prior file or folder: an invdiff checkpoint, a published family's weights file
    (recognised by :func:`invdiff.priors.families.identify`) or a diffusers folder. Read once, without
    running code from it."""
    from invdiff.priors.families import build_prior, identify
    from invdiff.priors.safe_load import read_weights

    path = Path(path)
    if path.is_dir():
        return build_prior(identify(path, digest=False), device)
    content = read_weights(path)
    if isinstance(content, dict) and content.get("format") == FORMAT:
        return prior_from_checked(check_payload(content, path), path, device)
    return build_prior(identify(path, content=content, digest=False), device)
