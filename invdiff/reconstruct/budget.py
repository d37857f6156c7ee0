"""Memory estimates checked before a run allocates anything, and the slice grouping they imply.

The estimates are upper bounds, in bytes, of the parts that grow with the inputs:

* the CT projector (Joseph's sparse matrix and its transpose, or matrix-free above 2 GiB of build,
  :mod:`operators.ct_projector`): at most
  ``2 n`` entries per ray, 12 bytes each, stored twice, and as much again while it is built
  (``views x detectors x 2 n x 48`` bytes; 60 views at 128 x 128: 134 MB estimated, 28 MB stored);
* a slice group's working set: per slice the multi-coil operator (coil maps, k-space, mask: ``3 x
  coils x k_h x k_w x 8`` bytes) and per particle and slice the sampler's state and the network's
  activations (:data:`BYTES_PER_PIXEL` per image pixel, :data:`VJP_BYTES_PER_PIXEL` for samplers that
  back-propagate through the network).

:func:`check_budget` refuses a run whose estimate exceeds the budget with the estimate in the message;
:func:`slice_group_size` is the largest group (at most :data:`MAX_GROUP`) that fits, which that message
suggests. The default group (:func:`default_group_size`) is the largest of at most :data:`MAX_GROUP`
slices whose estimate stays under :data:`DEFAULT_GROUP_BYTES`: it depends on the image size, the
sampler and the particles, never on the free memory, so a resumed run groups its slices as the first
run did. At fastMRI's 320 x 320 with 15 coils that is 8 slices for RED-Diff and 3 for DPS.

Samplers that attach the exact row-block solver of multi-coil MRI (``Sampler.attaches_exact_solver``: PnP-DM,
FPS, the approximation-free ensemble, ΠGDM and DiffPIR where asked) also hold its eigenvectors,
:func:`exact_solver_bytes` per slice (0.62 GB at 320 x 320), and their default group is at most as many
slices as :data:`~invdiff.samplers.splitting.EXACT_SOLVE_BYTES` holds (3 at 320 x 320), so the solver is
attached rather than refused for its size (and the solve left to CG, 2-140 times slower there).
"""

from __future__ import annotations

import os

from invdiff.problems.spec import ProblemSpec

__all__ = ["VOLUME_STATE_BYTES_PER_PIXEL", "BYTES_PER_PIXEL", "DEFAULT_GROUP_BYTES", "MAX_GROUP", "MemoryBudgetError", "VJP_BYTES_PER_PIXEL",
           "available_memory_gib", "check_budget", "ct_projector_bytes", "default_group_size", "exact_solver_bytes",
           "exact_solver_group", "group_bytes",
           "slice_group_size", "volume_state_bytes"]

#: working memory per pixel of one particle's image in a forward pass of the shipped 32-channel U-Nets
#: (state and activations): measured 2274-2635 B/px (peak RSS over the process's base, 320 x 320, batch
#: 1 and 4, CPU float32), rounded up
BYTES_PER_PIXEL = 2700
#: the same for a forward pass kept for a vector-Jacobian product and the product itself: measured
#: 8611-9824 B/px under the same conditions, rounded up
VJP_BYTES_PER_PIXEL = 10000
#: a volume sampler's state per pixel of one particle's slice, held for every slice at once: about 16
#: float32 copies of a two-channel image (the iterate, A^T y, the denoised estimate, the ADMM's splitting
#: and dual variables, CG's residual, direction and product, and temporaries)
VOLUME_STATE_BYTES_PER_PIXEL = 16 * 2 * 4
#: the most slices in one group: a volume is checkpointed at least every this many slices
MAX_GROUP = 8
#: the working set the default slice group stays under
DEFAULT_GROUP_BYTES = 4 * 2**30


class MemoryBudgetError(ValueError):
    """A run's memory estimate exceeds the budget (``--max-memory``)."""


def ct_projector_bytes(spec: ProblemSpec) -> int:
    """Upper bound of the bytes the CT projector of ``spec`` takes while it is built: the stored
    matrix's build when ``projector="auto"`` stores it, else the matrix-free projector's rays and chunk."""
    from invdiff.operators.ct import _BUILD_PEAK_FACTOR, STORED_MATRIX_BUDGET
    from invdiff.operators.ct_geometry import default_num_detectors
    from invdiff.operators.ct_projector import stored_matrix_bytes

    n = spec.size
    detectors = (default_num_detectors(n, 2.0 * n, 4.0 * n) if spec.geometry == "fan"
                 else default_num_detectors(n))
    rays = spec.views * detectors
    stored = _BUILD_PEAK_FACTOR * stored_matrix_bytes(rays, n)
    if stored <= STORED_MATRIX_BUDGET:
        return max(int(stored), rays * 2 * n * 48)  # the measured build of small matrices
    return rays * 2 * 2 * 8 + (1 << 24)


def group_bytes(image_shape: tuple[int, int], slices: int, particles: int, vjp: bool,
                coils: int = 0, kspace_shape: tuple[int, int] | None = None) -> int:
    """Upper bound of one slice group's working set (module docstring)."""
    h, w = image_shape
    per_image = h * w * (VJP_BYTES_PER_PIXEL if vjp else BYTES_PER_PIXEL)
    kh, kw = kspace_shape or image_shape
    operator = 3 * coils * kh * kw * 8
    return slices * (particles * per_image + operator)


def exact_solver_bytes(image_shape: tuple[int, int], coils: int) -> int:
    """Bytes per slice of the exact row-block solver of a multi-coil image of ``image_shape`` ``(h, w)``
    (:func:`invdiff.normal_solvers.row_block_bytes` of one slice); 0 for single-coil data (closed form)."""
    from invdiff.normal_solvers import row_block_shape_bytes

    return row_block_shape_bytes(1, *image_shape) if coils > 0 else 0


def exact_solver_group(image_shape: tuple[int, int], coils: int) -> int:
    """The most slices whose exact solver :func:`~invdiff.samplers.splitting.with_exact_solver` attaches (at
    least 1, at most :data:`MAX_GROUP`)."""
    from invdiff.samplers.splitting import EXACT_SOLVE_BYTES

    per_slice = exact_solver_bytes(image_shape, coils)
    return MAX_GROUP if per_slice == 0 else int(max(1, min(MAX_GROUP, EXACT_SOLVE_BYTES // per_slice)))


def volume_state_bytes(image_shape: tuple[int, int], slices: int, particles: int, coils: int = 0,
                       kspace_shape: tuple[int, int] | None = None) -> int:
    """Upper bound of a volume sampler's state for all ``slices`` at once (:data:`VOLUME_STATE_BYTES_PER_PIXEL`
    per pixel and particle) plus each slice's multi-coil operator; the network's working set is separate
    (:func:`group_bytes` of one network chunk)."""
    h, w = image_shape
    kh, kw = kspace_shape or image_shape
    return slices * (particles * h * w * VOLUME_STATE_BYTES_PER_PIXEL + 3 * coils * kh * kw * 8)


def check_budget(parts: dict[str, int], budget_bytes: int, hint: str = "") -> None:
    """``MemoryBudgetError`` when the parts add up to more than the budget; the message lists them."""
    total = sum(parts.values())
    if total > budget_bytes:
        listed = ", ".join(f"{k} {v / 2**30:.3g} GiB" for k, v in parts.items())
        raise MemoryBudgetError(f"estimated memory {total / 2**30:.3g} GiB ({listed}) exceeds the budget of "
                                f"{budget_bytes / 2**30:.3g} GiB (--max-memory){'; ' + hint if hint else ''}")


def slice_group_size(num_slices: int, per_slice_bytes: int, budget_bytes: int) -> int:
    """The largest group that the budget holds: at most :data:`MAX_GROUP` slices (at least 1)."""
    fits = budget_bytes // max(per_slice_bytes, 1)
    return int(max(1, min(num_slices, MAX_GROUP, fits)))


def default_group_size(num_slices: int, per_slice_bytes: int) -> int:
    """The default slice group: at most :data:`MAX_GROUP` slices and :data:`DEFAULT_GROUP_BYTES` (at least 1)."""
    return slice_group_size(num_slices, per_slice_bytes, DEFAULT_GROUP_BYTES)


def available_memory_gib() -> float:
    """The memory this machine has free for a run (``MemAvailable``; the physical total where that is
    unknown), in GiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 8.0
