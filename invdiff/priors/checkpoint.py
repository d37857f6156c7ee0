"""The prior checkpoint format: one file, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values (no pickled classes)::

    format          "invdiff-prior"
    version         1
    architecture    "monai.DiffusionModelUNet" and its UNetConfig as a dict ("config"), or
                    "invdiff.MaskedTokenPrior" and {"tokenizer": TokenizerConfig, "token_model":
                    TokenModelConfig} as dicts (:mod:`invdiff.priors.tokens.image`), or a published
                    family's tag (FAMILY_ARCHITECTURES) and its network config
                    (:mod:`invdiff.priors.families`)
    state_dict      the network weights (EMA weights for a trained UNet prior; for a token prior
                    "tokenizer.*" and "model.*", the codebook among the tokenizer's buffers)
    betas           float64 (T,) VP schedule (VP-trained networks: UNet, ADM, diffusers)
    prediction      "epsilon" | "v" | "sample" (VP-trained networks)
    event_shape     [C, H, W]
    normalization   {"scale": s, "offset": o}: data = offset + scale * model space
    data_range      [low, high] or None
    pixel_size_mm   optional [smallest, largest] pixel size (mm) a UNet prior serves
    provenance      JSON-like dict: training data, command, licence, ...
    training        optional resumable state (optimizer, step, RNG states), ignored by load_prior

Files are written atomically; :func:`read_checkpoint` names the file and the field when anything is off.
The UNet prior's own fields are written and read by :mod:`invdiff.priors.unet`, a token prior's by
:mod:`invdiff.priors.tokens.checkpoint`; :func:`invdiff.priors.loading.load_prior` dispatches on the architecture.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from invdiff.io import atomic_write

__all__ = ["CheckpointError", "FAMILY_ARCHITECTURES", "FORMAT", "TOKEN_ARCHITECTURE", "UNET_ARCHITECTURE", "VERSION", "check_payload", "read_checkpoint",
           "write_checkpoint"]

FORMAT = "invdiff-prior"
VERSION = 1
UNET_ARCHITECTURE = "monai.DiffusionModelUNet"
TOKEN_ARCHITECTURE = "invdiff.MaskedTokenPrior"
#: published families converted by :func:`invdiff.priors.families.convert`: family -> architecture tag
FAMILY_ARCHITECTURES = {"adm": "guided-diffusion.UNetModel", "edm": "edm.Network", "diffusers": "diffusers.UNet2DModel"}
#: architecture -> the fields its checkpoints must carry
_REQUIRED = {UNET_ARCHITECTURE: ("config", "state_dict", "betas", "prediction", "event_shape", "normalization"),
             TOKEN_ARCHITECTURE: ("config", "state_dict", "event_shape", "normalization"),
             FAMILY_ARCHITECTURES["adm"]: ("config", "state_dict", "betas", "prediction", "event_shape",
                                           "normalization"),
             FAMILY_ARCHITECTURES["edm"]: ("config", "state_dict", "event_shape", "normalization"),
             FAMILY_ARCHITECTURES["diffusers"]: ("config", "state_dict", "betas", "prediction", "event_shape",
                                                 "normalization")}


class CheckpointError(ValueError):
    """A file that is not an invdiff prior checkpoint of a supported version."""


def write_checkpoint(path: str | os.PathLike, architecture: str, config: dict, modules: torch.nn.Module,
                     event_shape, scale: float, offset: float, data_range, provenance: dict | None = None,
                     training: dict | None = None, **fields) -> Path:
    """Write a checkpoint of ``architecture`` (the module docstring's fields; ``modules``' state dict as
    the weights, ``fields`` any architecture-specific ones) to ``path`` atomically."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": architecture,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in modules.state_dict().items()},
        **fields,
        "event_shape": list(event_shape),
        "normalization": {"scale": float(scale), "offset": float(offset)},
        "data_range": list(data_range) if data_range is not None else None,
        "provenance": provenance or {},
    }
    if training is not None:
        payload["training"] = training
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checked payload of a checkpoint file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors, truncated zip archives, foreign formats
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise CheckpointError(f"{path}: not an invdiff prior (corrupt, or unsafe to load: it was read with "
                              f"weights_only=True and refused; {first})") from None
    return check_payload(payload, path)


def check_payload(payload: object, path: str | os.PathLike) -> dict:
    """``payload`` (a read checkpoint file) after checking it is an invdiff prior of a supported version
    and architecture with the fields that architecture needs; ``path`` names the errors."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not an invdiff prior checkpoint (format {found!r}, expected {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('version')!r} is not supported "
                              f"(this invdiff reads version {VERSION})")
    if payload.get("architecture") not in _REQUIRED:
        raise CheckpointError(f"{path}: unknown architecture {payload.get('architecture')!r} "
                              f"(known: {sorted(_REQUIRED)})")
    missing = [k for k in _REQUIRED[payload["architecture"]] if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: missing fields {missing}")
    return payload
