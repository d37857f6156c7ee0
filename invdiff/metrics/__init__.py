"""Metrics: fastMRI's image metrics (:mod:`~invdiff.metrics.image`), posterior fidelity against an
exact posterior (:mod:`~invdiff.metrics.posterior`), pixel-wise credible intervals and their
coverage (:mod:`~invdiff.metrics.calibration`), and scoring a folder of fastMRI prediction files
(:mod:`~invdiff.metrics.evaluate`).
"""

from invdiff.metrics.calibration import interval_coverage, weighted_quantiles, weighted_std
from invdiff.metrics.evaluate import evaluate_predictions
from invdiff.metrics.image import fastmri_volume_metrics, mse, nmse, psnr, ssim
from invdiff.metrics.posterior import (PROJECTION_SEED, mode_weights, moment_errors, sliced_wasserstein,
                                       sliced_wasserstein_draws, wasserstein_1d_squared, weighted_moments)
from invdiff.operators.fft import center_crop

__all__ = ["PROJECTION_SEED", "center_crop", "evaluate_predictions", "fastmri_volume_metrics", "interval_coverage",
           "mode_weights", "moment_errors", "mse", "nmse", "psnr", "sliced_wasserstein",
           "sliced_wasserstein_draws", "ssim", "wasserstein_1d_squared",
           "weighted_moments", "weighted_quantiles", "weighted_std"]
