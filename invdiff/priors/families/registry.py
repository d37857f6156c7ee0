"""Recognising, building and converting published priors (see :mod:`invdiff.priors.families`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from invdiff.io import content_hash
from invdiff.priors.base import Denoiser
from invdiff.priors.checkpoint import FAMILY_ARCHITECTURES, CheckpointError, write_checkpoint
from invdiff.priors.families.adm import ADM_PRESETS, ADMConfig, ADMNetwork
from invdiff.priors.families.edm import EDM_PRESETS, EDMConfig, EDMNetwork, EDMPrior
from invdiff.priors.families.scoresde import (SCORESDE_PRESETS, add_resample_filters, is_scoresde, scoresde_weights,
                                              to_edm_names)
from invdiff.priors.safe_load import find_state_dict, read_weights, strip_prefix
from invdiff.priors.unet import UNetPrior
from invdiff.schedule import VPSchedule

__all__ = ["ARCHITECTURES", "FAMILIES", "PRESETS", "ForeignCheckpoint", "build_prior", "convert", "describe",
           "identify", "prior_from_payload"]

#: family -> what it is
FAMILIES = {
    "adm": "guided-diffusion UNetModel (ADM), VP epsilon-prediction, linear betas 1e-4..0.02 over 1000 steps",
    "edm": "EDM DhariwalUNet / SongUNet (NCSN++, DDPM++) with EDM, VP or VE preconditioning",
    "diffusers": "diffusers UNet2DModel folder with a DDPM/DDIM/PNDM scheduler config",
    "score-sde": "score-SDE NCSN++ (VE) / DDPM++ (VP) all_modules checkpoints, run as EDM's SongUNet",
}
#: the architecture tag of each family in invdiff's checkpoint format
ARCHITECTURES = {**FAMILY_ARCHITECTURES, "score-sde": FAMILY_ARCHITECTURES["edm"]}  # renamed to EDM's network
#: family -> preset name -> its description (config, scaling, source)
PRESETS = {"adm": ADM_PRESETS, "edm": EDM_PRESETS, "score-sde": SCORESDE_PRESETS}
#: the network config class of each family read from a weights file
_CONFIGS = {"adm": ADMConfig, "edm": EDMConfig, "score-sde": EDMConfig}


@dataclass
class ForeignCheckpoint:
    """A recognised published checkpoint: everything needed to build and to describe its prior.

    Attributes:
        family: a key of :data:`FAMILIES`.
        config: the family's network config as a plain dict (for diffusers: the model's config.json).
        state_dict: the network's weights (EDM and DDP prefixes removed).
        scale, offset: data = ``offset + scale * model space``.
        preset: the matching preset, or ``None`` for an explicit config.
        betas, prediction: the VP schedule and output of the ``adm`` and ``diffusers`` families.
        info: description, data scaling, source, the file and its SHA-256.
    """

    family: str
    config: dict
    state_dict: dict[str, Tensor]
    scale: float
    offset: float
    preset: str | None = None
    data_range: tuple[float, float] | None = None
    pixel_size_mm: tuple[float, float] | None = None
    betas: Tensor | None = None
    prediction: str = "epsilon"
    info: dict = field(default_factory=dict)

    @property
    def num_parameters(self) -> int:
        return sum(int(v.numel()) for k, v in self.state_dict.items() if v.is_floating_point())


def _network(family: str, config: dict) -> nn.Module:
    if family == "adm":
        return ADMNetwork(ADMConfig.from_dict(config))
    if family in ("edm", "score-sde"):
        return EDMNetwork(EDMConfig.from_dict(config))
    raise ValueError(f"no network builder for family {family!r}")


def _signature(family: str, config: dict) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = _network(family, config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _mismatch(state: dict[str, Tensor], signature: dict[str, tuple[int, ...]]) -> str:
    """'' when ``state`` has exactly the names and shapes of ``signature``, else the first differences."""
    missing = [k for k in signature if k not in state]
    unexpected = [k for k in state if k not in signature]
    shapes = [f"{k}: file {tuple(state[k].shape)}, expected {signature[k]}"
              for k in signature if k in state and tuple(state[k].shape) != signature[k]]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape (e.g. {shapes[:2]})")
    return "; ".join(parts)


def _family_of(state: dict[str, Tensor]) -> str | None:
    if is_scoresde(state):
        return "score-sde"
    if "time_embed.0.weight" in state and "input_blocks.0.0.weight" in state:
        return "adm"
    if "map_layer0.weight" in state and any(k.startswith("enc.") for k in state):
        return "edm"
    return None


def _from_state(path: Path, state: dict[str, Tensor], family: str | None, preset: str | None,
                spec: dict | None, digest: bool) -> ForeignCheckpoint:
    detected = _family_of(state)
    if family is None:
        family = spec.get("family") if spec else None
    family = family or detected
    if family is None:
        raise CheckpointError(f"{path}: unknown checkpoint family: its parameter names match none of "
                              f"{sorted(FAMILIES)} (first names: {list(state)[:4]}); a network of a known family under "
                              "other names needs `invdiff priors convert FILE --family F --config JSON`")
    if family not in PRESETS:
        raise CheckpointError(f"{path}: family {family!r} is read from a folder, not a weights file "
                              f"(known: {sorted(FAMILIES)})")

    named: dict[str, dict[str, Tensor]] = {}  # candidate -> its weights under the network's names

    def mismatch(name: str, config: dict) -> str:
        """'' when the weights fit ``config`` (then kept in ``named``), else the differences."""
        signature = _signature(family, config)
        weights = state
        if family == "score-sde":  # score-SDE's weights under EDM's names for this config
            cfg = EDMConfig.from_dict(config)
            try:
                weights = add_resample_filters(to_edm_names(state, cfg, path), list(signature), cfg)
            except CheckpointError as err:
                return str(err).split(": ", 1)[-1]
        why = _mismatch(weights, signature)
        if not why:
            named[name] = weights
        return why

    explicit = spec.get("config") if spec is not None else None
    if explicit is not None:
        try:
            config = _CONFIGS[family].from_dict(spec["config"]).to_dict()
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: {err}") from None
        why = mismatch("", config)
        if why:
            raise CheckpointError(f"{path}: the weights do not fit the given {family} config: {why}")
        entry = {"description": spec.get("description", f"{family} network from an explicit config"),
                 "scaling": spec.get("scaling", "as given"), "source": spec.get("source", "user-supplied"),
                 "scale": spec.get("scale", 1.0), "offset": spec.get("offset", 0.0),
                 "data_range": spec.get("data_range")}
    else:
        candidates = [preset] if preset else list(PRESETS[family])
        if preset and preset not in PRESETS[family]:
            raise CheckpointError(f"{path}: unknown {family} preset {preset!r} (known: {sorted(PRESETS[family])})")
        reasons = {name: mismatch(name, PRESETS[family][name]["config"].to_dict()) for name in candidates}
        matches = [name for name, why in reasons.items() if not why]
        if not matches:
            detail = "; ".join(f"{name}: {why}" for name, why in reasons.items())
            raise CheckpointError(f"{path}: a checkpoint of family {family!r} ({FAMILIES[family]}) that matches no known preset "
                                  f"({detail}); give its hyperparameters: `invdiff priors convert FILE --config JSON`")
        preset = matches[0]
        entry = PRESETS[family][preset]
        config = entry["config"].to_dict()
    overrides = spec or {}
    data_range = overrides.get("data_range", entry.get("data_range"))
    return ForeignCheckpoint(
        family=family, config=config, state_dict=named[preset if explicit is None else ""],
        preset=preset if explicit is None else None,
        scale=float(overrides.get("scale", entry["scale"])), offset=float(overrides.get("offset", entry["offset"])),
        data_range=tuple(data_range) if data_range is not None else None,
        betas=VPSchedule.linear().betas if family == "adm" else None,
        info={"description": entry["description"], "scaling": entry["scaling"], "source": entry["source"],
              "file": str(path), "sha256": content_hash(path) if digest else None})


def _from_diffusers(path: Path, spec: dict | None, digest: bool) -> ForeignCheckpoint:
    from invdiff.priors.families.diffusers_unet import diffusers_folder_parts, read_unet_config, scheduler_betas

    config_path, weights, scheduler = diffusers_folder_parts(path)
    config = read_unet_config(config_path)
    state = find_state_dict(read_weights(weights), weights)
    betas, prediction, scheduler_class = scheduler_betas(scheduler)
    spec = spec or {}
    data_range = spec.get("data_range", (0.0, 1.0))
    return ForeignCheckpoint(
        family="diffusers", config=config, state_dict=state, scale=float(spec.get("scale", 0.5)),
        offset=float(spec.get("offset", 0.5)), data_range=tuple(data_range) if data_range is not None else None,
        betas=betas, prediction=prediction,
        info={"description": spec.get("description", f"diffusers UNet2DModel ({config.get('in_channels')} channels, "
                                                     f"{config.get('sample_size')} px), {scheduler.parent.name}"),
              "scaling": spec.get("scaling", "diffusers' convention: images in [0, 1] mapped to [-1, 1] "
                                             "(scale 0.5, offset 0.5)"),
              "source": spec.get("source", "user-supplied diffusers folder"), "file": str(path),
              "sha256": content_hash(weights) if digest else None, "scheduler": scheduler_class})


def identify(path: str | os.PathLike, family: str | None = None, preset: str | None = None,
             config: str | os.PathLike | dict | None = None, content: object = None,
             digest: bool = True) -> ForeignCheckpoint:
    """Recognise a published checkpoint (a weights file, or a diffusers folder).

    Args:
        path: the file or folder; read without running code from it (:mod:`invdiff.priors.safe_load`).
        family, preset: force them instead of detecting (names from :data:`FAMILIES`, :data:`PRESETS`).
        config: a JSON file or dict ``{"family", "config": {...}, "scale", "offset", "data_range",
            "description", "scaling", "source"}``: a checkpoint of a configuration no preset has, or other
            data scaling.
        content: the file's content when the caller has already read it (:func:`read_weights`).
        digest: record the weights file's SHA-256 in ``info`` (for provenance; reading a GiB-size file
            again costs seconds, so loading a prior to use it skips it).

    Raises:
        CheckpointError: unknown family, no preset matching the weights' names and shapes (the
            differences named), weights that do not fit the given config, unsafe or truncated files.
    """
    path = Path(path)
    spec = None
    if config is not None:
        if isinstance(config, dict):
            spec = dict(config)
        else:
            try:
                spec = json.loads(Path(config).read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise CheckpointError(f"{config}: not a readable JSON prior config ({err})") from None
    if family is not None and family not in FAMILIES:
        raise CheckpointError(f"{path}: unknown family {family!r} (known: {sorted(FAMILIES)})")
    if path.is_dir():
        if family not in (None, "diffusers"):
            raise CheckpointError(f"{path}: a folder; only the diffusers family is read from folders")
        return _from_diffusers(path, spec, digest)
    if family == "diffusers":
        raise CheckpointError(f"{path}: the diffusers family is a folder (config.json, weights, scheduler config)")
    content = read_weights(path) if content is None else content
    if isinstance(content, dict) and content.get("format") == "invdiff-prior":
        raise CheckpointError(f"{path}: already an invdiff prior checkpoint; load it with load_prior")
    state = strip_prefix(find_state_dict(content, path))
    if is_scoresde(state) and family in (None, "score-sde"):
        state = scoresde_weights(state, content, path)  # the EMA copy, which score-SDE keeps apart
    return _from_state(path, state, family, preset, spec, digest)


def build_prior(ckpt: ForeignCheckpoint, device: str | torch.device = "cpu") -> Denoiser:
    """The invdiff denoiser of a recognised checkpoint, in evaluation mode, on ``device``."""
    if ckpt.family == "diffusers":
        from invdiff.priors.families.diffusers_unet import DiffusersNoisePredictor, build_unet2d

        net = DiffusersNoisePredictor(build_unet2d(ckpt.config, ckpt.info.get("file", "config")))
    else:
        net = _network(ckpt.family, ckpt.config)
    try:
        net.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0][:300]
        raise CheckpointError(f"{ckpt.info.get('file', '?')}: weights do not fit the {ckpt.family} network: "
                              f"{first}") from None
    net.eval().requires_grad_(False).to(device)
    if ckpt.family in ("edm", "score-sde"):
        return EDMPrior(net, EDMConfig.from_dict(ckpt.config), ckpt.scale, ckpt.offset, ckpt.data_range,
                        ckpt.pixel_size_mm)
    if ckpt.family == "adm":
        c = ADMConfig.from_dict(ckpt.config)
        shape = (c.in_channels, c.image_size, c.image_size)
    else:
        size = ckpt.config.get("sample_size") or 64
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        shape = (int(ckpt.config.get("in_channels", 3)), int(h), int(w))
    return UNetPrior(net, VPSchedule(ckpt.betas.to(torch.float64)), shape, ckpt.prediction, ckpt.scale, ckpt.offset,
                     None, ckpt.data_range, ckpt.pixel_size_mm)


def describe(ckpt: ForeignCheckpoint) -> dict:
    """What ``invdiff priors info`` prints: family, architecture, shapes, noise range, scaling, provenance."""
    d = {"family": ckpt.family, "architecture": ARCHITECTURES[ckpt.family], "preset": ckpt.preset,
         "parameters": ckpt.num_parameters, "scale": ckpt.scale, "offset": ckpt.offset,
         "data_range": list(ckpt.data_range) if ckpt.data_range else None, **ckpt.info}
    if ckpt.family in ("edm", "score-sde"):
        c = EDMConfig.from_dict(ckpt.config)
        d.update(image_shape=[c.in_channels, c.img_resolution, c.img_resolution],
                 image_size="fixed (layer names carry the resolution)", channels=c.in_channels,
                 complex_layout="2 channels (re, im)" if c.in_channels == 2 else "real",
                 noise_range=f"any sigma > 0 ({c.precond} preconditioning, continuous)", precond=c.precond)
    else:
        if ckpt.family == "adm":
            c = ADMConfig.from_dict(ckpt.config)
            channels, size, multiple = c.in_channels, c.image_size, c.size_multiple
        else:
            channels = int(ckpt.config.get("in_channels", 3))
            size = ckpt.config.get("sample_size")
            multiple = 2 ** (len(ckpt.config.get("down_block_types", ())) - 1)
        sched = VPSchedule(ckpt.betas.to(torch.float64))
        sig = sched.sigmas
        d.update(image_shape=[channels, size, size] if isinstance(size, int) else [channels, *size],
                 image_size=f"any with sides that are multiples of {multiple} (convolutional)", channels=channels,
                 complex_layout="2 channels (re, im)" if channels == 2 else "real",
                 noise_range=f"sigma {float(sig[0]) * ckpt.scale:.3g}..{float(sig[-1]) * ckpt.scale:.3g} in data "
                             f"units ({sched.num_steps} trained steps, fractional between them)",
                 prediction=ckpt.prediction)
    return d


def convert(ckpt: ForeignCheckpoint, out: str | os.PathLike, provenance: dict | None = None) -> Path:
    """Write ``ckpt`` as an invdiff prior checkpoint (:mod:`invdiff.priors.checkpoint`), atomically."""
    prior = build_prior(ckpt)
    fields = {}
    if ckpt.betas is not None:
        fields.update(betas=ckpt.betas.to(torch.float64), prediction=ckpt.prediction)
    if ckpt.pixel_size_mm is not None:
        fields["pixel_size_mm"] = list(ckpt.pixel_size_mm)
    prov = {"converted_from": ckpt.info, "family": ckpt.family, "preset": ckpt.preset, **(provenance or {})}
    return write_checkpoint(out, ARCHITECTURES[ckpt.family], ckpt.config, prior.net, prior.event_shape, ckpt.scale,
                            ckpt.offset, ckpt.data_range, prov, **fields)


def prior_from_payload(payload: dict, path: str | os.PathLike, device: str | torch.device = "cpu") -> Denoiser:
    """The prior of an invdiff checkpoint of a published family (written by :func:`convert`)."""
    family = {v: k for k, v in FAMILY_ARCHITECTURES.items()}[payload["architecture"]]
    norm = payload["normalization"]
    data_range = payload.get("data_range")
    pixel = payload.get("pixel_size_mm")
    betas = payload.get("betas")
    if family != "edm" and betas is None:
        raise CheckpointError(f"{path}: a {family} checkpoint needs its VP betas")
    ckpt = ForeignCheckpoint(family=family, config=payload["config"], state_dict=payload["state_dict"],
                             scale=float(norm["scale"]), offset=float(norm["offset"]),
                             preset=payload.get("provenance", {}).get("preset"),
                             data_range=tuple(data_range) if data_range is not None else None,
                             pixel_size_mm=tuple(pixel) if pixel is not None else None, betas=betas,
                             prediction=payload.get("prediction", "epsilon"), info={"file": str(path)})
    try:
        return build_prior(ckpt, device)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: {err}") from None
