"""Samplers: step kernels on the init/step/result protocol, driven by :func:`run`."""

from invdiff.samplers.base import Diagnostics, Posterior, Sampler, SamplerState, run
from invdiff.samplers.ddim import DDIM
from invdiff.samplers.dps import DPS
from invdiff.samplers.red_diff import REDDiff

__all__ = ["DDIM", "DPS", "REDDiff", "Diagnostics", "Posterior", "Sampler", "SamplerState", "run"]
