"""Priors. Continuous priors are denoisers in the EDM convention (see :mod:`invdiff.priors.base`).

* :class:`UNetPrior` (MONAI ``DiffusionModelUNet``, trained by :mod:`invdiff.training.unet`,
  saved by :mod:`invdiff.priors.checkpoint`), and the shipped priors (:func:`shipped_prior`);
* :class:`GaussianMixturePrior` (exact) and :class:`PCAGaussianMixturePrior` (exact, fitted to images);
* adapters: deepinv denoisers, ADM / guided-diffusion checkpoints (:mod:`invdiff.priors.adapters`);
* discrete token priors (:mod:`invdiff.priors.tokens`), sampled by APS (:mod:`invdiff.samplers.aps`).
"""

from invdiff.priors.adapters import AsDeepinvDenoiser, DeepinvDenoiserPrior, adm_prior
from invdiff.priors.base import Denoiser
from invdiff.priors.checkpoint import CheckpointError, read_checkpoint
from invdiff.priors.gaussian_mixture import GaussianMixture, GaussianMixturePrior
from invdiff.priors.loading import load_prior
from invdiff.priors.pca_gmm import PCAGaussianMixturePrior, fit_pca_gmm
from invdiff.priors.shipped import SHIPPED_PRIORS, open_prior, shipped_prior, shipped_prior_path
from invdiff.priors.unet import UNetConfig, UNetPrior, save_prior

__all__ = ["SHIPPED_PRIORS", "AsDeepinvDenoiser", "CheckpointError", "DeepinvDenoiserPrior", "Denoiser", "GaussianMixture",
           "GaussianMixturePrior", "PCAGaussianMixturePrior", "UNetConfig", "UNetPrior", "adm_prior", "fit_pca_gmm",
           "load_prior", "open_prior", "read_checkpoint", "save_prior", "shipped_prior", "shipped_prior_path"]
