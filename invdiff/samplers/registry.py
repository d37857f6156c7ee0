"""Samplers by name, with the settings chosen on validation data, for the command line and benchmarks.

:func:`make_sampler` builds a sampler from a name, a network-evaluation budget and optional
overrides. Each name has default settings per problem *family*:

* ``mri``: multi-coil MRI with the shipped MRI prior,
* ``ct``: CT with the shipped CT prior (``A`` has norm ~60, so step sizes are smaller),
* ``image``: deblurring and inpainting of brain slices with the MRI prior,
* ``gmm``: the Gaussian-mixture exact-posterior suite.

The ``mri``/``ct``/``image`` defaults are the settings :mod:`scripts.eval_image_tasks` chose by
validation PSNR at 100 network evaluations (README, "Image tasks": mri-4x, ct-30 and deblur); they
are a starting point, not tuned for other budgets or data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from invdiff.samplers.base import Sampler

__all__ = ["FAMILIES", "SAMPLERS", "SamplerSpec", "make_sampler", "parse_overrides", "sampler_settings"]

FAMILIES = ("mri", "ct", "image", "gmm")


@dataclass(frozen=True)
class SamplerSpec:
    """A named sampler: ``build(nfe, **settings)`` and its default settings per family.

    ``uses_prior`` is False for the classical baselines (they ignore the prior and the budget);
    ``particles`` is False for deterministic methods, whose particles would all be equal.
    """

    description: str
    build: Callable[..., Sampler]
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    uses_prior: bool = True
    particles: bool = True


def _per_family(**settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    base = settings.pop("all", {})
    return {fam: {**base, **settings.get(fam, settings.get("image", {}))} for fam in FAMILIES}


def _dps(nfe, **s):
    from invdiff.samplers.dps import DPS
    return DPS(nfe, **s)


def _red_diff(nfe, **s):
    from invdiff.samplers.red_diff import REDDiff
    return REDDiff(nfe, **s)


def _ddim(nfe, **s):
    from invdiff.samplers.ddim import DDIM
    return DDIM(nfe, **s)


def _deepinv(algorithm):
    def build(nfe, **s):
        from invdiff.samplers.deepinv_bridge import DeepinvSampler
        return DeepinvSampler(algorithm, nfe, **s)
    return build


def _afe(nfe, **s):
    from invdiff.samplers.ensemble import ApproximationFreeEnsemble
    return ApproximationFreeEnsemble(nfe, **s)


def _tds(nfe, **s):
    from invdiff.samplers.tds import TDS
    return TDS(nfe, **s)


def _direct(nfe, **s):
    from invdiff.samplers.classical import DirectReconstruction
    return DirectReconstruction(**s)


def _cg(nfe, **s):
    from invdiff.samplers.classical import ConjugateGradient
    return ConjugateGradient(**s)


def _tv(nfe, **s):
    from invdiff.samplers.classical import TotalVariation
    return TotalVariation(**s)


SAMPLERS: dict[str, SamplerSpec] = {
    "dps": SamplerSpec("DPS, ancestral (Chung et al. 2023)", _dps,
                       _per_family(all={"eta": 1.0}, mri={"step_size": 3.0}, ct={"step_size": 0.03},
                                   image={"step_size": 3.0}, gmm={"step_size": 1.0})),
    "dps-ddim": SamplerSpec("DPS on the deterministic DDIM chain", _dps,
                            _per_family(all={"eta": 0.0}, mri={"step_size": 0.3}, ct={"step_size": 0.003},
                                        image={"step_size": 0.3}, gmm={"step_size": 1.0})),
    "red-diff": SamplerSpec("RED-Diff (Mardani et al. 2024), a variational mode-seeker", _red_diff,
                            _per_family(mri={"lam": 512.0, "lr": 0.1}, ct={"lam": 512.0, "lr": 0.03},
                                        image={"lam": 128.0, "lr": 0.1}, gmm={"lam": 0.25, "lr": 0.1})),
    "diffpir": SamplerSpec("deepinv's DiffPIR driven with an invdiff prior", _deepinv("diffpir"),
                           _per_family(mri={"lambda_": 7.0}, ct={"lambda_": 0.0204}, image={"lambda_": 7.0},
                                       gmm={"lambda_": 7.0})),
    "ddrm": SamplerSpec("deepinv's DDRM (needs an SVD: inpainting, circular blur)", _deepinv("ddrm"),
                        _per_family(all={"eta": 0.5})),
    # the twist's tempering in units of ||A||^2 on images (CT: ||A||^2 ~ 3600; without it the first
    # twisted step overshoots by orders of magnitude). CT, 30 views, 50 NFE, 4 particles: inflation 1
    # scored 14.2 dB (the twist barely moves the prior samples), 0.1 scored 18.1 dB, 0.01 diverged.
    # The Gaussian-mixture settings are issue 7's.
    "tds": SamplerSpec("twisted diffusion sampler (Wu et al. 2023), weighted SMC", _tds,
                       _per_family(all={"twist_inflation": 1.0, "operator_norm": True},
                                   ct={"twist_inflation": 0.1}, gmm={"operator_norm": False})),
    "afe": SamplerSpec("approximation-free ensemble, SDE (weighted SMC)", _afe,
                       _per_family(all={"variant": "sde"})),
    "afe-ode": SamplerSpec("approximation-free ensemble, ODE + Langevin corrector", _afe,
                           _per_family(all={"variant": "ode"})),
    "prior": SamplerSpec("unconditional ancestral prior samples (ignores the data)", _ddim,
                         _per_family(all={"eta": 1.0})),
    "zero-filled": SamplerSpec("adjoint A^T y (zero-filled for MRI)", _direct,
                               _per_family(all={"kind": "adjoint"}), uses_prior=False, particles=False),
    "fbp": SamplerSpec("the operator's own pseudo-inverse (filtered back-projection for CT)", _direct,
                       _per_family(all={"kind": "physics"}), uses_prior=False, particles=False),
    "cg": SamplerSpec("CG least squares (CG-SENSE for MRI), early stopped", _cg,
                      _per_family(mri={"iterations": 40}, ct={"iterations": 40}, image={"iterations": 5},
                                  gmm={"iterations": 40}), uses_prior=False, particles=False),
    "tv": SamplerSpec("total variation, PDHG, 300 iterations", _tv,
                      _per_family(all={"iterations": 300, "init": "scaled-adjoint"}, mri={"lam": 0.001}, ct={"lam": 0.1},
                                  image={"lam": 0.01}), uses_prior=False, particles=False),
}


def sampler_settings(name: str, family: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The defaults of ``name`` for ``family`` updated by ``overrides`` (unknown names are the sampler's to refuse)."""
    if name not in SAMPLERS:
        raise KeyError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
    if family not in FAMILIES:
        raise KeyError(f"unknown problem family {family!r}; choose from {FAMILIES}")
    return {**SAMPLERS[name].defaults[family], **(overrides or {})}


def make_sampler(name: str, nfe: int, family: str, overrides: dict[str, Any] | None = None) -> Sampler:
    """Build sampler ``name`` with ``nfe`` steps (one network evaluation each for the diffusion samplers).

    Raises ``KeyError`` for an unknown name or family and ``ValueError`` for a setting the sampler
    does not take, naming both.
    """
    settings = sampler_settings(name, family, overrides)
    if nfe < 1:
        raise ValueError(f"sampler {name!r}: the network-evaluation budget must be >= 1, got {nfe}")
    try:
        return SAMPLERS[name].build(nfe, **settings)
    except TypeError as err:
        raise ValueError(f"sampler {name!r} does not take settings {sorted(settings)}: {err}") from None


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lam=512", "lr=0.1"]`` -> ``{"lam": 512, "lr": 0.1}`` (ints, floats, true/false, else strings)."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"sampler setting {item!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = _value(text.strip())
    return out
