"""Samplers by name: what each is, what it needs, and how to build it.

A :class:`SamplerSpec` holds a sampler's class, its description, the arguments that define the name
(``fixed``: ``dps`` and ``dps-ddim`` are the same class with ``eta`` 1 and 0) and its capabilities.
:func:`make_sampler` builds one from a name, a network-evaluation budget and settings. The settings
tuned per problem family live as data with the problems (:mod:`invdiff.problems.defaults`), which is
what ``invdiff reconstruct`` and ``invdiff benchmark`` call.
"""

from __future__ import annotations

import ast
import inspect
import math
from dataclasses import dataclass, field
from typing import Any

from invdiff.samplers.aps import APS, GuidedRemasking
from invdiff.samplers.base import Sampler
from invdiff.samplers.classical import ConjugateGradient, DirectReconstruction, TotalVariation
from invdiff.samplers.daps import DAPS
from invdiff.samplers.ddim import DDIM, ImportanceSampling
from invdiff.samplers.dds import DDS
from invdiff.samplers.deepinv_bridge import DDRM, DeepinvPiGDM, DiffPIR
from invdiff.samplers.dps import DPS
from invdiff.samplers.ensemble import ApproximationFreeEnsemble
from invdiff.samplers.fps import FPS
from invdiff.samplers.pigdm import PiGDM
from invdiff.samplers.pnp_dm import PnPDM
from invdiff.samplers.red_diff import REDDiff
from invdiff.samplers.sparsity import L1Wavelet
from invdiff.samplers.tds import TDS
from invdiff.samplers.volume import DDSVolume, DiffusionMBIR, TotalVariation3D

__all__ = ["SAMPLERS", "SamplerSpec", "check_settings", "make_sampler"]


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
        needs_linear: the operator must be linear; ``needs_svd``: it must expose a real SVD;
            ``needs_fbp``: it must have a filtered back-projection (the CT operators).
        vjp: each step back-propagates through the network.
        volume: the batch is one volume's slices, in order, coupled along z (:mod:`invdiff.samplers.volume`):
            ``invdiff reconstruct --volume`` runs these, and only these, on all slices at once.
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
    needs_fbp: bool = False
    vjp: bool = False
    volume: bool = False

    def build(self, nfe: int, settings: dict[str, Any]) -> Sampler:
        kwargs = {**self.fixed, **settings}
        return self.cls(num_steps=nfe, **kwargs) if self.uses_prior else self.cls(**kwargs)


SAMPLERS: dict[str, SamplerSpec] = {
    "dps": SamplerSpec(DPS, "DPS, ancestral (Chung et al. 2023)", {"eta": 1.0}, vjp=True),
    "dps-ddim": SamplerSpec(DPS, "DPS on the deterministic DDIM chain", {"eta": 0.0}, vjp=True),
    "red-diff": SamplerSpec(REDDiff, "RED-Diff (Mardani et al. 2024), a variational mode-seeker"),
    "dds": SamplerSpec(DDS, "decomposed diffusion sampling: DDIM with CG data consistency (Chung et al. 2024)",
                       needs_linear=True),
    "daps": SamplerSpec(DAPS, "decoupled annealing posterior sampling, Langevin (Zhang et al. 2025)"),
    "pnp-dm": SamplerSpec(PnPDM, "PnP-DM split Gibbs sampler with a diffusion prior step (Wu et al. 2024)",
                          needs_linear=True),
    "pigdm": SamplerSpec(PiGDM, "pseudoinverse-guided diffusion, linear Gaussian form (Song et al. 2023)",
                         needs_linear=True, vjp=True),
    "pigdm-deepinv": SamplerSpec(DeepinvPiGDM, "deepinv's ΠGDM (PosteriorDiffusion + PiGDMDataFidelity) with an invdiff "
                                 "prior: the peer of pigdm", needs_linear=True, vjp=True),
    "diffpir": SamplerSpec(DiffPIR, "deepinv's DiffPIR driven with an invdiff prior", needs_linear=True),
    "ddrm": SamplerSpec(DDRM, "deepinv's DDRM (needs an SVD: inpainting, circular blur)",
                        needs_linear=True, needs_svd=True),
    "tds": SamplerSpec(TDS, "twisted diffusion sampler (Wu et al. 2023), weighted SMC", weighted=True, vjp=True),
    "fps": SamplerSpec(FPS, "filtering posterior sampling: SMC on a diffused copy of the data, exact Gaussian moves "
                       "(Dou & Song 2024)", weighted=True, needs_linear=True),
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
    "fbp": SamplerSpec(DirectReconstruction, "filtered back-projection, ramp filter (CT operators only)",
                       {"kind": "fbp"}, uses_prior=False, particles=False, needs_linear=True, needs_fbp=True),
    "lsq": SamplerSpec(DirectReconstruction, "least squares by the operator's A_dagger (deepinv's iterative "
                       "solve for CT; named fbp before it was told apart from filtered back-projection)",
                       {"kind": "physics"}, uses_prior=False, particles=False, needs_linear=True),
    "cg": SamplerSpec(ConjugateGradient, "CG least squares (CG-SENSE for MRI), early stopped",
                      uses_prior=False, particles=False, needs_linear=True),
    "tv": SamplerSpec(TotalVariation, "total variation, PDHG, 300 iterations", {"iterations": 300, "init": "scaled-adjoint"},
                      uses_prior=False, particles=False, needs_linear=True),
    "l1-wavelet": SamplerSpec(L1Wavelet, "l1-wavelet least squares (db4, 4 levels), FISTA, 100 iterations",
                              {"iterations": 100}, uses_prior=False, particles=False, needs_linear=True),
    "dds-volume": SamplerSpec(DDSVolume, "DDS's volume form: DDIM with ADMM (CG + TV along z) on the denoised "
                              "slices (Chung et al. 2024)", needs_linear=True, volume=True),
    "diffusion-mbir": SamplerSpec(DiffusionMBIR, "DiffusionMBIR: VE predictor-corrector per slice, ADMM-TV along z "
                                  "(Chung et al. 2023)", needs_linear=True, volume=True),
    "tv-3d": SamplerSpec(TotalVariation3D, "3-D total variation over the volume, PDHG, 300 iterations",
                         {"iterations": 300}, uses_prior=False, particles=False, needs_linear=True, volume=True),
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
    check_settings(name, settings or {})
    try:
        return spec.build(nfe, dict(settings or {}))
    except TypeError as err:
        raise ValueError(f"sampler {name!r} does not take settings {sorted({**spec.fixed, **(settings or {})})}: "
                         f"{err}") from None


def check_settings(name: str, settings: dict[str, Any]) -> None:
    """``ValueError`` naming the setting when ``settings`` holds a name sampler ``name`` does not take (with
    the names it does take) or a value of the wrong kind for the default it replaces (a number for a
    number, an integer for an ``int`` parameter, true/false for a flag, text for text); ``NaN`` and
    infinite numbers are refused."""
    spec = SAMPLERS[name]
    signature = inspect.signature(spec.cls.__init__).parameters
    params = {k: v for k, v in signature.items()
              if k not in ("self", "num_steps") and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)}
    takes_any = any(v.kind == v.VAR_KEYWORD for v in signature.values())
    for key, value in settings.items():
        if key not in params:
            if takes_any:
                continue
            raise ValueError(f"sampler {name!r} has no setting {key!r}; it takes {sorted(params)}")
        expected = _expected_kind(params[key])
        if expected is None or (value is None and params[key].default is None):
            continue
        kind, choices = expected
        if kind == "flag":
            ok, what = isinstance(value, bool), "true or false"
        elif kind in ("integer", "number"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
                kind == "number" or float(value).is_integer())
            what = "an integer" if kind == "integer" else "a finite number"
        else:
            ok = isinstance(value, str) and (choices is None or value in choices)
            what = f"one of {list(choices)}" if choices else "text"
        default = params[key].default
        if not ok:
            shown = "" if default is inspect.Parameter.empty else f" (default {default!r})"
            raise ValueError(f"sampler {name!r}: setting {key} must be {what}{shown}, got {value!r}")


def _expected_kind(param: inspect.Parameter) -> tuple[str, tuple | None] | None:
    """``("flag" | "integer" | "number" | "text", choices)`` from a constructor parameter's annotation
    (or its default when the annotation says nothing simple); ``None``: not checked here."""
    ann = str(param.annotation).strip("'\"")
    if param.annotation is not inspect.Parameter.empty:
        if ann.startswith("Literal["):
            try:
                return "text", tuple(ast.literal_eval("(" + ann[len("Literal["):-1] + ",)"))
            except (ValueError, SyntaxError):
                return None
        types = {part.strip() for part in ann.split("|")} - {"None"}
        for names, kind in (({"bool"}, "flag"), ({"int"}, "integer"), ({"float"}, "number"),
                            ({"float", "int"}, "number"), ({"str"}, "text")):
            if types == names:
                return kind, None
        if types & {"float", "int", "str", "bool"} == set() and types:
            return None
    default = param.default
    if isinstance(default, bool):
        return "flag", None
    if isinstance(default, int):
        return "integer", None
    if isinstance(default, float):
        return "number", None
    if isinstance(default, str):
        return "text", None
    return None
