"""Where benchmark cells run: in this process, or as tasks on a Ray cluster.

Both executors skip finished cells and let each cell write its own result atomically
(:func:`invdiff.benchmark.cells.run_cell`), so stopping either at any moment loses only running
cells. A failing cell is logged with its key and the run goes on; the failures are returned.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from invdiff.benchmark.cells import cell_done, run_cell
from invdiff.benchmark.config import Cell

__all__ = ["run_local", "run_ray"]

log = logging.getLogger("invdiff.benchmark")


def _pending(cells: Sequence[Cell], out: Path) -> list[Cell]:
    pending = [c for c in cells if not cell_done(out, c)]
    if len(pending) < len(cells):
        log.info(f"{len(cells) - len(pending)} of {len(cells)} cells already done in {out}: skipped")
    return pending


def run_local(cells: Sequence[Cell], out: str | Path, device: str = "cpu", progress: bool = True) -> dict[str, str]:
    """Run the unfinished ``cells`` one after another; return ``{key: error}`` for the ones that failed."""
    out = Path(out)
    failures = {}
    for cell in tqdm(_pending(cells, out), desc="cells", disable=not progress):
        try:
            run_cell(cell, out, device)
        except Exception as err:  # one bad cell must not stop the grid
            failures[cell.key] = f"{type(err).__name__}: {err}"
            log.error(f"cell {cell.key} failed: {failures[cell.key]}\n{traceback.format_exc()}")
    return failures


def run_ray(cells: Sequence[Cell], out: str | Path, *, address: str | None = None, num_cpus: int | None = None,
            cpus_per_task: float = 1.0, gpus_per_task: float = 0.0, progress: bool = True) -> dict[str, str]:
    """Run the unfinished ``cells`` as Ray tasks (``address=None`` starts a local instance).

    Each task gets ``cpus_per_task`` CPUs (and as many torch threads) and ``gpus_per_task`` GPUs
    (then it runs on ``cuda``); the result files are written by the tasks, so ``out`` must be on
    storage the workers share with the driver.
    """
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install 'invdiff[ray]'") from None
    out = Path(out).resolve()
    pending = _pending(cells, out)
    started = not ray.is_initialized()
    if started:
        # a local instance's workers run at the driver's priority, not Ray's default niceness 15 (a job started
        # beside niced cells takes the cores first and their wall times stop being comparable)
        local = {"_system_config": {"worker_niceness": os.nice(0)}} if address is None else {}
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, **local)
    threads = max(1, int(cpus_per_task))
    device = "cuda" if gpus_per_task > 0 else "cpu"
    task = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)(run_cell)
    try:
        futures = {task.remote(c, str(out), device, threads): c for c in pending}
        failures = {}
        with tqdm(total=len(futures), desc="cells (ray)", disable=not progress) as bar:
            remaining = list(futures)
            while remaining:
                done, remaining = ray.wait(remaining, num_returns=1)
                cell = futures[done[0]]
                try:
                    ray.get(done[0])
                except Exception as err:
                    failures[cell.key] = f"{type(err).__name__}: {err}"
                    log.error(f"cell {cell.key} failed: {failures[cell.key]}")
                bar.update(1)
        return failures
    finally:
        if started:
            ray.shutdown()
