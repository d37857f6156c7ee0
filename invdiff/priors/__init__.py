"""Priors. Continuous priors are denoisers in the EDM convention (see :mod:`invdiff.priors.base`)."""

from invdiff.priors.base import Denoiser
from invdiff.priors.checkpoint import CheckpointError, load_prior, save_prior
from invdiff.priors.gaussian_mixture import GaussianMixture, GaussianMixturePrior
from invdiff.priors.unet import UNetConfig, UNetPrior

__all__ = ["CheckpointError", "Denoiser", "GaussianMixture", "GaussianMixturePrior", "UNetConfig", "UNetPrior",
           "load_prior", "save_prior"]
