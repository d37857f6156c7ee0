"""Active subsampling (ADS): choose k-space lines (or pixels) during posterior sampling by maximum entropy.

:class:`ActiveSubsampling`, a policy run between a sampler's steps (``invdiff.samplers.run(...,
between_steps=policy)``, or :func:`run_active`), with an :class:`AcquisitionPlan` and an
:class:`Oracle`; the score in
:mod:`invdiff.active.entropy`; its per-frequency calibration on validation scans in
:mod:`invdiff.active.calibration`; candidates (columns, pixels) in :mod:`invdiff.active.candidates`;
MRI plans and fixed-mask comparisons in :mod:`invdiff.problems.active_mri`.
"""

from invdiff.active.calibration import fit_column_scale, fit_records
from invdiff.active.candidates import Candidates, candidates_for
from invdiff.active.entropy import auto_width, mixture_entropy_scores
from invdiff.active.policy import AcquisitionPlan, ActiveResult, ActiveSubsampling, Oracle, budget_spacing, run_active

__all__ = ["AcquisitionPlan", "ActiveResult", "ActiveSubsampling", "Candidates", "Oracle", "auto_width",
           "budget_spacing", "candidates_for", "fit_column_scale", "fit_records", "mixture_entropy_scores",
           "run_active"]
