"""``invdiff reconstruct``: inputs (fastMRI files, volumes, phantoms) as problems, the resumable job, its outputs."""

from invdiff.problems.inputs import ProblemSpec, ReconInput, ReconProblem, open_input
from invdiff.reconstruct.job import ReconSettings, SliceResults, reconstruct, solve_problem
from invdiff.reconstruct.outputs import format_summary, write_outputs

__all__ = ["ProblemSpec", "ReconInput", "ReconProblem", "ReconSettings", "SliceResults", "format_summary",
           "open_input", "reconstruct", "solve_problem", "write_outputs"]
