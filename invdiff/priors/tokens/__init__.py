"""Discrete (masked token) priors.

* :mod:`~invdiff.priors.tokens.base`: the :class:`TokenPrior` interface (a masked token model with a
  codebook and a differentiable decoder);
* :mod:`~invdiff.priors.tokens.enumerable`: a toy token prior small enough that every token grid can
  be enumerated, so posteriors are exact;
* :mod:`~invdiff.priors.tokens.image`: :class:`ImageTokenPrior`, the prior for real images — a VQ patch
  tokenizer (:mod:`~invdiff.priors.tokens.tokenizer`) and a masked token transformer
  (:mod:`~invdiff.priors.tokens.token_model`), trained by :mod:`invdiff.training.tokens`
  (``invdiff train-prior --kind token``) and saved by :mod:`~invdiff.priors.tokens.checkpoint`.

Their posterior samplers (APS, guided remasking) are in :mod:`invdiff.samplers.aps`.
"""

from invdiff.priors.tokens.base import TokenPrior
from invdiff.priors.tokens.enumerable import EnumerableTokenPrior, tv_distance
from invdiff.priors.tokens.image import ImageTokenPrior, PhaseLiftedTokenPrior

__all__ = ["EnumerableTokenPrior", "ImageTokenPrior", "PhaseLiftedTokenPrior", "TokenPrior", "tv_distance"]
