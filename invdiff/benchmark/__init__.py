"""Benchmarks: the Gaussian-mixture exact-posterior suite, and the image tasks (`invdiff.benchmark.image_tasks`,
imported on demand: it loads datasets and priors). Grid runner and reports: issue 10."""

from invdiff.benchmark.gmm_suite import GMMProblem, gmm_problem, score_posterior, standard_problems

__all__ = ["GMMProblem", "gmm_problem", "score_posterior", "standard_problems"]
