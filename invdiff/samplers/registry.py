"""Samplers by name: what each is, what it needs, and how to build it.

A :class:`SamplerSpec` holds a sampler's class, its description, the arguments that define the name
(``fixed``: ``dps`` and ``dps-ddim`` are the same class with ``eta`` 1 and 0) and its capabilities.
:func:`make_sampler` builds one from a name, a network-evaluation budget and settings. The settings
tuned per problem family live as data with the problems (:mod:`invdiff.problems.defaults`), which is
what ``invdiff reconstruct`` and ``invdiff benchmark`` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from invdiff.samplers.aps import APS, GuidedRemasking
from invdiff.samplers.base import Sampler
from invdiff.samplers.classical import ConjugateGradient, DirectReconstruction, TotalVariation
from invdiff.samplers.ddim import DDIM, ImportanceSampling
from invdiff.samplers.deepinv_bridge import DDRM, DiffPIR
from invdiff.samplers.dps import DPS
from invdiff.samplers.ensemble import ApproximationFreeEnsemble
from invdiff.samplers.red_diff import REDDiff
from invdiff.samplers.tds import TDS

__all__ = ["SAMPLERS", "SamplerSpec", "make_sampler"]


@dataclass(frozen=True)
class SamplerSpec:
    """A named sampler.

    Attributes:
        cls: the sampler class; ``cls(num_steps=nfe, **settings)`` for diffusion samplers,
            ``cls(**settings)`` for the classical baselines (they take no budget).
        description: one line.
        fixed: the arguments that make this name (``eta`` of ``dps-ddim``, ``kind`` of ``fbp``).
        uses_prior: False for the classical baselines (they ignore the prior and the budget).
        token_prior: the prior is a masked token prior (:mod:`invdiff.priors.tokens`), not a denoiser.
        particles: False for deterministic methods, whose particles would all be equal.
        weighted: the particles carry importance weights (SMC).
        needs_linear: the operator must be linear; ``needs_svd``: it must expose a real SVD.
        vjp: each step back-propagates through the network.
    """

    cls: type
    description: str
    fixed: dict[str, Any] = field(default_factory=dict)
    uses_prior: bool = True
    token_prior: bool = False
    particles: bool = True
    weighted: bool = False
    needs_linear: bool = False
    needs_svd: bool = False
    vjp: bool = False

    def build(self, nfe: int, settings: dict[str, Any]) -> Sampler:
        kwargs = {**self.fixed, **settings}
        return self.cls(num_steps=nfe, **kwargs) if self.uses_prior else self.cls(**kwargs)


SAMPLERS: dict[str, SamplerSpec] = {
    "dps": SamplerSpec(DPS, "DPS, ancestral (Chung et al. 2023)", {"eta": 1.0}, vjp=True),
    "dps-ddim": SamplerSpec(DPS, "DPS on the deterministic DDIM chain", {"eta": 0.0}, vjp=True),
    "red-diff": SamplerSpec(REDDiff, "RED-Diff (Mardani et al. 2024), a variational mode-seeker"),
    "diffpir": SamplerSpec(DiffPIR, "deepinv's DiffPIR driven with an invdiff prior", needs_linear=True),
    "ddrm": SamplerSpec(DDRM, "deepinv's DDRM (needs an SVD: inpainting, circular blur)",
                        needs_linear=True, needs_svd=True),
    "tds": SamplerSpec(TDS, "twisted diffusion sampler (Wu et al. 2023), weighted SMC", weighted=True, vjp=True),
    "afe": SamplerSpec(ApproximationFreeEnsemble, "approximation-free ensemble, SDE (weighted SMC)",
                       {"variant": "sde"}, weighted=True),
    "afe-ode": SamplerSpec(ApproximationFreeEnsemble, "approximation-free ensemble, ODE + Langevin corrector",
                           {"variant": "ode"}, weighted=True),
    "aps": SamplerSpec(APS, "anchored posterior sampling with a masked token prior (Rout et al. 2025)",
                       token_prior=True, vjp=True),
    "guided-remasking": SamplerSpec(GuidedRemasking, "derivative-free guided remasking with a masked token prior",
                                    token_prior=True),
    "prior": SamplerSpec(DDIM, "unconditional ancestral prior samples (ignores the data)", {"eta": 1.0}),
    "prior-is": SamplerSpec(ImportanceSampling, "ancestral prior samples importance-weighted by the likelihood",
                            {"eta": 1.0}, weighted=True),
    "zero-filled": SamplerSpec(DirectReconstruction, "adjoint A^T y (zero-filled for MRI)", {"kind": "adjoint"},
                               uses_prior=False, particles=False, needs_linear=True),
    "fbp": SamplerSpec(DirectReconstruction, "the operator's own pseudo-inverse (filtered back-projection for CT)",
                       {"kind": "physics"}, uses_prior=False, particles=False, needs_linear=True),
    "cg": SamplerSpec(ConjugateGradient, "CG least squares (CG-SENSE for MRI), early stopped",
                      uses_prior=False, particles=False, needs_linear=True),
    "tv": SamplerSpec(TotalVariation, "total variation, PDHG, 300 iterations", {"iterations": 300, "init": "scaled-adjoint"},
                      uses_prior=False, particles=False, needs_linear=True),
}


def make_sampler(name: str, nfe: int, settings: dict[str, Any] | None = None) -> Sampler:
    """Build sampler ``name`` with ``nfe`` steps (one network evaluation each for the diffusion samplers)
    and ``settings`` on top of its fixed arguments.

    Raises ``KeyError`` for an unknown name and ``ValueError`` for a budget below 1 or a setting the
    sampler does not take, naming both.
    """
    if name not in SAMPLERS:
        raise KeyError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
    if nfe < 1:
        raise ValueError(f"sampler {name!r}: the network-evaluation budget must be >= 1, got {nfe}")
    spec = SAMPLERS[name]
    try:
        return spec.build(nfe, dict(settings or {}))
    except TypeError as err:
        raise ValueError(f"sampler {name!r} does not take settings {sorted({**spec.fixed, **(settings or {})})}: "
                         f"{err}") from None
