"""Samplers: step kernels on the init/step/result protocol, driven by :func:`run`."""

from invdiff.samplers.base import Diagnostics, Posterior, Sampler, SamplerState, run
from invdiff.samplers.ddim import DDIM

__all__ = ["DDIM", "Diagnostics", "Posterior", "Sampler", "SamplerState", "run"]
