"""Active subsampling of a multi-coil fastMRI volume, on the same footing as fixed fastMRI masks.

:func:`mri_active_setup` builds, for one acceleration and centre fraction, the fixed-mask problems
(fastMRI's ``equispaced_fraction`` and ``random`` masks with the per-file seed) and the active one:
the same ESPIRiT coil maps (estimated from the same centre lines), the same units and noise level,
the same centre lines to start from, the same number of lines at the end, and an :class:`Oracle`
holding the fully sampled k-space (retrospective acquisition).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invdiff.active.policy import AcquisitionPlan, Oracle
from invdiff.datasets import FastMRIFile
from invdiff.measurement import Measurement
from invdiff.operators import MaskFunc, from_complex
from invdiff.problems.base import Problem
from invdiff.problems.fastmri import fastmri_problem

__all__ = ["MRIActiveSetup", "low_pass_problem", "mri_active_setup", "sampled_columns"]

FIXED_MASKS = ("equispaced_fraction", "random")


@dataclass(frozen=True)
class MRIActiveSetup:
    """``fixed``: mask type -> its :class:`~invdiff.problems.base.Problem`; ``measurement``: the template
    for :func:`~invdiff.active.policy_active` (maps, noise, units of the equispaced problem); ``oracle``,
    ``plan``: the centre lines of the fixed masks and their line budget."""

    fixed: dict[str, Problem]
    measurement: Measurement
    oracle: Oracle
    plan: AcquisitionPlan

    @property
    def reference(self) -> Problem:
        return self.fixed["equispaced_fraction"]


def mri_active_setup(file: FastMRIFile, acceleration: int, center_fraction: float = 0.08,
                     slices: list[int] | None = None, per_acquisition: int = 1,
                     window: tuple[float, float] = (0.0, 0.75)) -> MRIActiveSetup:
    """The fixed-mask problems and the active one for ``file`` (module docstring)."""
    fixed = {kind: fastmri_problem(file, MaskFunc(kind, (center_fraction,), (acceleration,)), slices=slices)
             for kind in FIXED_MASKS}
    ref = fixed["equispaced_fraction"]
    slices = list(range(file.num_slices)) if slices is None else list(slices)
    left, right = file.acquired_columns
    kspace = torch.stack([file.kspace(i) for i in slices])
    y_full = from_complex(kspace) / ref.info["scale"]
    w = kspace.shape[-1]
    num_low = ref.info["center_lines"]
    initial = torch.zeros(w, dtype=torch.bool)
    pad = (w - num_low + 1) // 2  # fastMRI's centre block
    initial[pad : pad + num_low] = True
    budget = ref.info["sampled_columns"]
    available = torch.zeros(w, dtype=torch.bool)
    available[left:right] = True
    if not bool(available[initial].all()):
        raise ValueError(f"{file.path}: the centre lines are not all acquired in the file")
    plan = AcquisitionPlan(initial, budget=budget, per_acquisition=per_acquisition, window=window, allowed=available)
    return MRIActiveSetup(fixed, ref.measurement, Oracle(y_full), plan)


def low_pass_problem(file: FastMRIFile, setup: MRIActiveSetup, slices: list[int] | None = None) -> Problem:
    """The fixed mask of ``setup``'s line budget spent on central lines only (a centre block, no other line:
    fastMRI's random mask whose centre fraction is the budget), with the coil maps estimated from the same
    centre lines as ``setup``'s problems — the fixed mask an active policy that widens the centre must beat."""
    width = setup.plan.initial.shape[-1]
    budget = setup.plan.budget
    mask = MaskFunc("random", (budget / width,), (width / budget,))
    problem = fastmri_problem(file, mask, slices=slices, calib_width=min(setup.reference.info["center_lines"], 24))
    if problem.info["sampled_columns"] != budget:
        raise ValueError(f"{file.path}: the low-pass mask has {problem.info['sampled_columns']} lines, the budget "
                         f"{budget}")
    return problem


def sampled_columns(problem: Problem) -> torch.Tensor:
    """``(W,)`` bool: the k-space columns a fixed-mask problem samples (its first item's mask)."""
    m = problem.measurement
    return m.physics.mask.reshape(-1, m.y.shape[-1])[0].bool()
