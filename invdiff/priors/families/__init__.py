"""Published diffusion priors of other projects, loaded exactly and safely.

Families (:data:`FAMILIES`): ``adm`` (guided-diffusion ``UNetModel``: DPS, DDS), ``edm`` (EDM's
``DhariwalUNet`` / ``SongUNet`` with EDM, VP or VE preconditioning: InverseBench, EDM), ``diffusers``
(``UNet2DModel`` folders with a DDPM-type scheduler). :func:`identify` recognises a file or folder
(by its parameter names and shapes against the known presets, or from an explicit config),
:func:`build_prior` makes it an invdiff :class:`~invdiff.priors.base.Denoiser`, and
:func:`convert` writes it as an invdiff checkpoint with provenance (:mod:`invdiff.priors.checkpoint`).
"""

from invdiff.priors.families.registry import (ARCHITECTURES, FAMILIES, PRESETS, ForeignCheckpoint, build_prior,
                                              convert, describe, identify, prior_from_payload)

__all__ = ["ARCHITECTURES", "FAMILIES", "PRESETS", "ForeignCheckpoint", "build_prior", "convert", "describe",
           "identify", "prior_from_payload"]
