"""Priors. Continuous priors are denoisers in the EDM convention (see :mod:`invdiff.priors.base`)."""

from invdiff.priors.base import Denoiser
from invdiff.priors.gaussian_mixture import GaussianMixture, GaussianMixturePrior

__all__ = ["Denoiser", "GaussianMixture", "GaussianMixturePrior"]
