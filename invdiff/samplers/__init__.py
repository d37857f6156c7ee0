"""Samplers: step kernels on the init/step/result protocol, driven by :func:`run`.

Diffusion-prior samplers (:class:`DPS`, :class:`REDDiff`, :class:`DDIM` for prior samples), the
classical baselines (:class:`DirectReconstruction`, :class:`ConjugateGradient`, :class:`TotalVariation`)
and deepinv's DiffPIR/DDRM/DPS with an invdiff prior (:class:`DeepinvSampler`) and the weighted SMC
ensembles (:class:`ApproximationFreeEnsemble`, :class:`TDS`) all return a :class:`Posterior`.
"""

from invdiff.posterior import Diagnostics, Posterior
from invdiff.samplers.aps import APS, GuidedRemasking
from invdiff.samplers.base import Sampler, SamplerState, run
from invdiff.samplers.classical import ConjugateGradient, DirectReconstruction, TotalVariation
from invdiff.samplers.ddim import DDIM
from invdiff.samplers.deepinv_bridge import DeepinvSampler
from invdiff.samplers.dps import DPS
from invdiff.samplers.ensemble import ApproximationFreeEnsemble
from invdiff.samplers.red_diff import REDDiff
from invdiff.samplers.tds import TDS

__all__ = ["APS", "ApproximationFreeEnsemble", "DDIM", "DPS", "ConjugateGradient", "DeepinvSampler", "Diagnostics", "DirectReconstruction", "GuidedRemasking", "Posterior",
           "REDDiff", "Sampler", "SamplerState", "TDS", "TotalVariation", "run"]
