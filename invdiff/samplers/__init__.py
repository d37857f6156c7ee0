"""Samplers: step kernels on the init/step/result protocol, driven by :func:`run`.

Diffusion-prior samplers (:class:`DPS`, :class:`REDDiff`, :class:`DDIM` for prior samples; the
field's MRI leaders :class:`DDS`, :class:`DAPS`, :class:`PnPDM`, :class:`PiGDM`), the
classical baselines (:class:`DirectReconstruction`, :class:`ConjugateGradient`, :class:`TotalVariation`)
deepinv's DiffPIR/DDRM/DPS with an invdiff prior (:class:`DiffPIR`, :class:`DDRM`, :class:`DeepinvSampler`),
the weighted SMC ensembles (:class:`ApproximationFreeEnsemble`, :class:`TDS`) and, for discrete token
priors, :class:`APS` and :class:`GuidedRemasking` all return a :class:`Posterior`. Samplers by name, with
their capabilities: :mod:`invdiff.samplers.registry`.
"""

from invdiff.posterior import Diagnostics, Posterior
from invdiff.samplers.aps import APS, GuidedRemasking
from invdiff.samplers.base import Sampler, SamplerState, run
from invdiff.samplers.classical import ConjugateGradient, DirectReconstruction, TotalVariation
from invdiff.samplers.daps import DAPS
from invdiff.samplers.ddim import DDIM, ImportanceSampling
from invdiff.samplers.dds import DDS
from invdiff.samplers.deepinv_bridge import DDRM, DeepinvPiGDM, DeepinvSampler, DiffPIR
from invdiff.samplers.dps import DPS
from invdiff.samplers.ensemble import ApproximationFreeEnsemble
from invdiff.samplers.fps import FPS
from invdiff.samplers.pigdm import PiGDM
from invdiff.samplers.pnp_dm import PnPDM
from invdiff.samplers.red_diff import REDDiff
from invdiff.samplers.tds import TDS

__all__ = ["APS", "ApproximationFreeEnsemble", "ConjugateGradient", "DAPS", "DDIM", "DDRM", "DDS", "DPS", "DeepinvPiGDM", "DeepinvSampler", "FPS",
           "Diagnostics", "DiffPIR", "DirectReconstruction", "GuidedRemasking", "ImportanceSampling", "PiGDM", "PnPDM", "Posterior", "REDDiff", "Sampler",
           "SamplerState", "TDS", "TotalVariation", "run"]
