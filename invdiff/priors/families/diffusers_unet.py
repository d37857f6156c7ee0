"""diffusers ``UNet2DModel`` folders (a model config, weights, and a DDPM/DDIM/PNDM scheduler config).

The layout ``save_pretrained`` writes and the hub serves (the DM4CT CT priors are published this way)::

    FOLDER/unet/config.json                        (or FOLDER/config.json)
    FOLDER/unet/diffusion_pytorch_model.safetensors  (or .bin: a pickle, read with weights_only=True)
    FOLDER/scheduler/scheduler_config.json         (or FOLDER/scheduler_config.json)

The network is built from its config with diffusers' own class and the weights loaded by
:func:`invdiff.priors.safe_load.read_weights`, never by diffusers' loader. The scheduler's
``betas`` give the VP schedule and its ``prediction_type`` (``epsilon``, ``v_prediction``,
``sample``) the network's output; :class:`~invdiff.priors.unet.UNetPrior` then converts any
``sigma`` exactly, with fractional steps between the trained ones. diffusers is an optional extra
(``pip install 'invdiff[diffusers]'``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from invdiff.priors.checkpoint import CheckpointError

__all__ = ["DiffusersNoisePredictor", "build_unet2d", "diffusers_folder_parts", "read_unet_config", "scheduler_betas"]

_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_PREDICTIONS = {"epsilon": "epsilon", "v_prediction": "v", "sample": "sample"}


def _diffusers():
    try:
        import diffusers
    except ImportError:
        raise CheckpointError("this is a diffusers model folder; reading it needs the diffusers package "
                              "(pip install 'invdiff[diffusers]')") from None
    return diffusers


def diffusers_folder_parts(folder: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``(model config, weights file, scheduler config)`` of a diffusers folder.

    Raises:
        CheckpointError: a part is missing (named, with the places looked in).
    """
    folder = Path(folder)
    unet = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    config = unet / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{folder}: not a diffusers model folder (no config.json here or in unet/)")
    weights = next((unet / w for w in _WEIGHTS if (unet / w).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{unet}: no weights file (expected one of {list(_WEIGHTS)})")
    for sched in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        if sched.is_file():
            return config, weights, sched
    raise CheckpointError(f"{folder}: no scheduler config (expected scheduler/scheduler_config.json or "
                          "scheduler_config.json): the noise schedule the network was trained with is needed")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not readable JSON ({err})") from None


def read_unet_config(config_path: Path) -> dict:
    """A ``UNet2DModel``'s ``config.json`` (another class is refused, named)."""
    config = _read_json(config_path)
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise CheckpointError(f"{config_path}: a {config.get('_class_name')!r}; invdiff reads UNet2DModel folders "
                              "(pixel-space, unconditional)")
    return config


def build_unet2d(config: dict, where: str | os.PathLike = "config") -> nn.Module:
    """diffusers' ``UNet2DModel`` from its config (random weights); ``where`` names errors."""
    diffusers = _diffusers()
    try:
        return diffusers.UNet2DModel.from_config(config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: not a valid UNet2DModel config ({err})") from None


def scheduler_betas(path: Path) -> tuple[Tensor, str, str]:
    """``(betas float64 (T,), invdiff prediction name, scheduler class)`` from a scheduler config, computed by the
    scheduler class the config names (DDPM, DDIM, PNDM, ... : any with ``betas``)."""
    diffusers = _diffusers()
    config = _read_json(path)
    name = config.get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Scheduler"):
        raise CheckpointError(f"{path}: unknown scheduler {name!r}")
    scheduler = cls.from_config(config)
    if not hasattr(scheduler, "betas"):
        raise CheckpointError(f"{path}: scheduler {name} has no discrete VP betas; invdiff reads DDPM-type schedules")
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in _PREDICTIONS:
        raise CheckpointError(f"{path}: prediction_type {prediction!r} is not one of {sorted(_PREDICTIONS)}")
    return scheduler.betas.detach().to(torch.float64), _PREDICTIONS[prediction], name


class DiffusersNoisePredictor(nn.Module):
    """``net(z_t, t)`` -> the ``UNet2DModel``'s output for fractional steps ``t`` ``(B,)``."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet
        blocks = len(getattr(unet.config, "down_block_types", ())) or 1
        self.size_multiple = 2 ** (blocks - 1)

    def forward(self, z_t: Tensor, t: Tensor) -> Tensor:
        return self.unet(z_t, t).sample

    def state_dict(self, *args, **kwargs):
        return self.unet.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.unet.load_state_dict(state_dict, strict=strict, assign=assign)
