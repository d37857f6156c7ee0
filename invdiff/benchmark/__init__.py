"""Benchmarks: the Gaussian-mixture exact-posterior suite (grid runner and reports: issue 10)."""

from invdiff.benchmark.gmm_suite import GMMProblem, gmm_problem, score_posterior, standard_problems

__all__ = ["GMMProblem", "gmm_problem", "score_posterior", "standard_problems"]
