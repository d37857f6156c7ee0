"""Discrete (masked token) diffusion priors and their posterior samplers.

* :mod:`invdiff.discrete.prior`: the :class:`TokenPrior` interface (a masked token model with a
  codebook and a differentiable decoder) and :class:`TokenPosterior`;
* :mod:`invdiff.discrete.enumerable`: a toy token prior small enough that every token grid can be
  enumerated, so posteriors are exact;
* :mod:`invdiff.discrete.aps`: anchored posterior sampling (APS) and the derivative-free
  guided-remasking baseline;
* :mod:`invdiff.discrete.image_prior`: :class:`ImageTokenPrior`, the prior for real images — a VQ
  patch tokenizer (:mod:`~invdiff.discrete.tokenizer`) and a masked token transformer
  (:mod:`~invdiff.discrete.token_model`), trained by :mod:`~invdiff.discrete.training`
  (``invdiff train-prior --kind token``) and saved by :mod:`~invdiff.discrete.checkpoint`.
"""

from invdiff.discrete.aps import APS, GuidedRemasking, masking_schedule, quantized_expectation
from invdiff.discrete.enumerable import EnumerableTokenPrior, tv_distance
from invdiff.discrete.image_prior import ImageTokenPrior, PhaseLiftedTokenPrior, smooth_phase
from invdiff.discrete.prior import TokenPosterior, TokenPrior

__all__ = ["APS", "EnumerableTokenPrior", "GuidedRemasking", "ImageTokenPrior", "PhaseLiftedTokenPrior", "TokenPosterior",
           "TokenPrior", "masking_schedule", "quantized_expectation", "smooth_phase", "tv_distance"]
