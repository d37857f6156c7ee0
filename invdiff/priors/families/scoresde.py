"""score-SDE NCSN++ / DDPM++ checkpoints (Song et al. 2021; score-MRI's fastMRI knee prior).

score-SDE keeps its network as one flat ``all_modules`` list; EDM re-implemented the same network as
``SongUNet`` with named blocks and converted score-SDE's published weights to it. invdiff does the
same: :func:`to_edm_names` walks score-SDE's module order for a config and renames every parameter
to deepinv's ``NCSNpp`` (EDM's names), so the prior runs on :class:`~invdiff.priors.families.edm.EDMNetwork`.

Conventions (EDM's Table 1, ``VEPrecond`` / ``VPPrecond``):

* NCSN++, VE, continuous, ``data.centered=False`` (score-MRI): the network maps ``[0, 1]`` inputs to
  ``[-1, 1]`` itself, embeds ``log sigma`` with random Fourier features and returns ``h / sigma``;
  that is EDM's VE preconditioning in ``[-1, 1]`` (scale 0.5, offset 0.5), ``F = h``.
* DDPM++, VP, continuous, ``data.centered=True``: time labels ``999 t`` and epsilon output: EDM's VP
  preconditioning (``beta_min`` 0.1, ``beta_d`` 19.9), scale 0.5, offset 0.5.

The attention's query, key and value (score-SDE's ``NIN_0..2``, ``x @ W``) become EDM's one ``qkv``
1x1 convolution, whose output channels interleave them (``3 c + j``). Checkpoints hold the raw
weights under ``model`` and the EMA copy as a list under ``ema.shadow_params`` (in parameter order);
the EMA weights are used, as score-SDE samples with them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor

from invdiff.priors.checkpoint import CheckpointError
from invdiff.priors.families.edm import EDMConfig

__all__ = ["SCORESDE_PRESETS", "add_resample_filters", "is_scoresde", "scoresde_weights", "to_edm_names"]

_RESNET = {"GroupNorm_0": "norm0", "Conv_0": "conv0", "Dense_0": "affine", "GroupNorm_1": "norm1",
           "Conv_1": "conv1", "Conv_2": "skip"}


def is_scoresde(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith("all_modules.") for k in state)


def scoresde_weights(state: Mapping[str, Tensor], content: object, path: str | os.PathLike) -> dict[str, Tensor]:
    """The EMA weights of a score-SDE checkpoint (``{"model", "ema": {"shadow_params"}}``) put under the
    names of ``state`` (its model weights, prefixes removed), or ``state`` itself for a bare file; the
    ``sigmas`` buffer removed."""
    state = dict(state)
    ema = content.get("ema") if isinstance(content, Mapping) else None
    state.pop("sigmas", None)
    if isinstance(ema, Mapping) and isinstance(ema.get("shadow_params"), (list, tuple)):
        shadow = ema["shadow_params"]
        # parameters in registration order: every entry but buffers; the only buffer is "sigmas"
        if len(shadow) != len(state):
            raise CheckpointError(f"{path}: {len(shadow)} EMA parameters for {len(state)} model parameters")
        for (name, value), avg in zip(list(state.items()), shadow):
            if tuple(avg.shape) != tuple(value.shape):
                raise CheckpointError(f"{path}: EMA parameter for {name} has shape {tuple(avg.shape)}, the model's "
                                      f"{tuple(value.shape)}")
            state[name] = avg
    return state


def _slots(cfg: EDMConfig) -> list[tuple[str, str]]:
    """``(kind, EDM prefix)`` for each entry of score-SDE's ``all_modules``, in order."""
    res0, levels = cfg.img_resolution, len(cfg.channel_mult)
    ncsn = cfg.architecture == "song-ncsn"
    name = lambda side, res, what: f"{side}.{res}x{res}_{what}"  # noqa: E731
    slots = ([("fourier", "map_noise")] if ncsn else []) + [
        ("linear", "map_layer0"), ("linear", "map_layer1"), ("conv", name("enc", res0, "conv"))]
    for level in range(levels):
        res = res0 >> level
        for b in range(cfg.num_blocks):
            slots.append(("resnet", name("enc", res, f"block{b}")))
            if res in cfg.attn_resolutions:
                slots.append(("attn", name("enc", res, f"block{b}")))
        if level != levels - 1:
            slots.append(("resnet", name("enc", res >> 1, "down")))
            if ncsn:  # progressive_input="residual": the input pyramid's downsampling convolution
                slots.append(("conv", name("enc", res >> 1, "aux_residual")))
    low = res0 >> (levels - 1)
    slots += [("resnet", name("dec", low, "in0")), ("attn", name("dec", low, "in0")), ("resnet", name("dec", low, "in1"))]
    for level in reversed(range(levels)):
        res = res0 >> level
        for b in range(cfg.num_blocks + 1):
            slots.append(("resnet", name("dec", res, f"block{b}")))
        if res in cfg.attn_resolutions:
            slots.append(("attn", name("dec", res, f"block{cfg.num_blocks}")))
        if level != 0:
            slots.append(("resnet", name("dec", res << 1, "up")))
    return slots + [("norm", name("dec", res0, "aux_norm")), ("conv", name("dec", res0, "aux_conv"))]


def to_edm_names(state: Mapping[str, Tensor], cfg: EDMConfig, path: str | os.PathLike) -> dict[str, Tensor]:
    """score-SDE's ``all_modules.N.*`` weights renamed (and the attention re-laid) for EDM's network.

    Raises:
        CheckpointError: a module count or a parameter that does not fit ``cfg`` (named).
    """
    modules: dict[int, dict[str, Tensor]] = {}
    for key, value in state.items():
        if not key.startswith("all_modules."):
            raise CheckpointError(f"{path}: {key!r} is not a score-SDE all_modules parameter")
        index, _, rest = key[len("all_modules."):].partition(".")
        modules.setdefault(int(index), {})[rest] = value
    slots = _slots(cfg)
    if sorted(modules) != list(range(len(slots))):
        raise CheckpointError(f"{path}: {len(modules)} score-SDE modules with weights, the config "
                              f"({cfg.architecture}, {cfg.img_resolution} px, channel_mult {cfg.channel_mult}, "
                              f"{cfg.num_blocks} blocks, attention at {cfg.attn_resolutions}) has {len(slots)}")
    out: dict[str, Tensor] = {}
    for index, (kind, prefix) in enumerate(slots):
        params = modules[index]
        try:
            if kind == "fourier":
                out[f"{prefix}.freqs"] = params["W"]
            elif kind in ("linear", "conv", "norm"):
                for p in ("weight", "bias"):
                    out[f"{prefix}.{p}"] = params.get(p, params.get(f"Conv2d_0.{p}"))
                    if out[f"{prefix}.{p}"] is None:
                        raise KeyError(p)
            elif kind == "resnet":
                for sub, value in params.items():
                    block, _, p = sub.partition(".")
                    out[f"{prefix}.{_RESNET[block]}.{p}"] = value
            else:  # attention
                out[f"{prefix}.norm2.weight"] = params["GroupNorm_0.weight"]
                out[f"{prefix}.norm2.bias"] = params["GroupNorm_0.bias"]
                w = torch.stack([params[f"NIN_{j}.W"].t() for j in range(3)], 1)  # (C_out, 3, C_in)
                b = torch.stack([params[f"NIN_{j}.b"] for j in range(3)], 1)  # (C_out, 3)
                out[f"{prefix}.qkv.weight"] = w.reshape(-1, w.shape[-1])[:, :, None, None].contiguous()
                out[f"{prefix}.qkv.bias"] = b.reshape(-1).contiguous()
                out[f"{prefix}.proj.weight"] = params["NIN_3.W"].t()[:, :, None, None].contiguous()
                out[f"{prefix}.proj.bias"] = params["NIN_3.b"]
        except KeyError as err:
            raise CheckpointError(f"{path}: score-SDE module {index} ({kind} -> {prefix}) lacks {err}; found "
                                  f"{sorted(params)}") from None
    return out


def add_resample_filters(state: dict[str, Tensor], names: list[str], cfg: EDMConfig) -> dict[str, Tensor]:
    """``state`` with EDM's ``resample_filter`` buffers among ``names`` added: score-SDE computes its
    FIR filter (``[1, 3, 3, 1]`` for NCSN++, ``[1, 1]`` for DDPM++) rather than storing it; EDM stores
    the normalised outer product."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0] if cfg.architecture == "song-ncsn" else [1.0, 1.0])
    filt = (f.ger(f) / f.sum().square())[None, None]
    return {**state, **{n: filt.clone() for n in names if n.endswith("resample_filter") and n not in state}}


#: published score-SDE checkpoints: name -> (config, what it is, data units, scale, offset, data_range)
SCORESDE_PRESETS: dict[str, dict] = {
    "score-mri-knee-320": dict(
        config=EDMConfig(architecture="song-ncsn", img_resolution=320, in_channels=1, model_channels=128,
                         channel_mult=(1, 2, 2, 2), num_blocks=4, attn_resolutions=(16,), precond="ve"),
        description="score-MRI's fastMRI knee prior (NCSN++, VE SDE, continuous, 1 channel 320x320; "
                    "checkpoint_95.pth)",
        scaling="images in [0, 1] (data.centered=False: the network maps them to [-1, 1]); score-MRI applies it "
                "to the real and imaginary parts of complex images separately",
        scale=0.5, offset=0.5, data_range=(0.0, 1.0),
        source="score-MRI (Chung & Ye 2022), github.com/HJ-harry/score-MRI, "
               "configs/ve/fastmri_knee_320_ncsnpp_continuous.py"),
}
