"""The resumable reconstruct job (:mod:`~invdiff.reconstruct.job`) and what it writes
(:mod:`~invdiff.reconstruct.outputs`): an input's slices solved group by group, each group saved as
soon as it is done, then a fastMRI prediction file, NIfTI volumes, figures and a metrics JSON."""

from invdiff.reconstruct.job import ReconSettings, SliceResults, load_denoiser, reconstruct, solve_problem
from invdiff.reconstruct.outputs import format_summary, write_outputs

__all__ = ["ReconSettings", "SliceResults", "format_summary", "load_denoiser", "reconstruct", "solve_problem",
           "write_outputs"]
