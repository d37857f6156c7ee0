"""Benchmark reports from the finished cells: ``results.csv``, ``results.md`` and figure grids.

``results.csv`` has one row per cell. ``results.md`` has one table per problem, one row per sampler
and budget, and ``mean ± std`` of every metric over data and seeds (the std of ``n = 1`` is shown as
0), with the particles, the cell count, network evaluations, VJPs and wall time per cell, and a note on
what coverage with few particles can resolve. ``figures/PROBLEM__DATA.png``
is a grid per problem and datum: one row per budget, columns target, baseline and each sampler's
posterior mean (the lowest seed, first slice), and a second grid of the posterior stds.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from invdiff.io import atomic_write_text
from invdiff.plots import labelled_grid

__all__ = ["markdown_tables", "write_reports"]

IMAGE_METRICS = ("PSNR", "SSIM", "NMSE", "coverage_0.50", "coverage_0.90", "coverage_0.95")
GMM_METRICS = ("sw", "sw_exact", "mean_rel", "cov_rel", "mode_tv", "ess")


COVERAGE_NOTE = ("Coverage: the fraction of pixels whose target lies inside the central credible interval of the "
                 "particles' weighted magnitudes. With N equally weighted particles the widest such interval is "
                 "[min, max], which covers an exchangeable draw with probability (N-1)/(N+1) (0.6 for N = 4): "
                 "levels above that are not resolved and read the same.")


def _fmt(values: list[float]) -> str:
    if not values:
        return ""
    a = np.asarray(values, dtype=float)
    digits = 2 if np.nanmax(np.abs(a)) >= 10 else 3 if np.nanmax(np.abs(a)) >= 1 else 4
    return f"{a.mean():.{digits}f} ± {a.std():.{digits}f}"


def markdown_tables(rows: list[dict[str, Any]]) -> str:
    """The Markdown of ``results.md`` (module docstring)."""
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_problem[r["problem"]].append(r)
    parts = []
    for problem, prs in by_problem.items():
        names = GMM_METRICS if prs[0].get("family") == "gmm" else IMAGE_METRICS
        names = [m for m in names if any(m in r["metrics"] for r in prs)]
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for r in prs:
            groups[(r["sampler"], r["nfe"])].append(r)
        head = ["sampler", "NFE budget", "particles", "cells", *names, "network evals", "VJPs", "wall (s)"]
        lines = [f"### {problem}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        order = list(dict.fromkeys(r["sampler"] for r in prs))
        for (sampler, nfe), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
            cells = [sampler, str(nfe), "/".join(str(n) for n in sorted({r.get("particles", 1) for r in rs})), str(len(rs))]
            cells += [_fmt([r["metrics"][m] for r in rs if m in r["metrics"]]) for m in names]
            cells += [f"{np.mean([r['network_evals'] for r in rs]):.0f}", f"{np.mean([r['vjps'] for r in rs]):.0f}",
                      f"{np.mean([r['wall_time_s'] for r in rs]):.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        if any(m.startswith("coverage") for m in names):
            lines += ["", COVERAGE_NOTE]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    metric_names = sorted({m for r in rows for m in r["metrics"]})
    fields = ["problem", "data", "sampler", "sampler_name", "nfe", "seed", "particles", *metric_names,
              "network_evals", "vjps", "wall_time_s", "setup_s"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, **r["metrics"]})
    return buf.getvalue()


def _grid(path: Path, rows: list[dict[str, Any]], cells_dir: Path, key: str) -> None:
    budgets = sorted({r["nfe"] for r in rows if r["nfe"] > 0}) or [0]
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    seed = min(r["seed"] for r in rows)
    arrays = {}
    for r in rows:
        f = cells_dir / f"{r['key']}.npz"
        if r["seed"] == seed and f.is_file():
            arrays[(r["sampler"], r["nfe"])] = dict(np.load(f))
    if not arrays:
        return
    first = next(iter(arrays.values()))
    lead = [("target", first.get("target")), (rows[0].get("baseline", "baseline"), first["baseline"])]
    lead = [(n, a) for n, a in lead if a is not None and n not in samplers] if key == "mean" else []
    vmax = float(np.percentile(first.get("target", first["mean"]), 99.5))
    grid = []
    for nfe in budgets:
        row = list(lead)
        for s in samplers:
            a = arrays.get((s, nfe)) or arrays.get((s, 0))
            row.append((f"{s} ({nfe} NFE)" if (s, nfe) in arrays else s, None if a is None else a[key]))
        grid.append(row)
    labelled_grid(path, grid, "image" if key == "mean" else "std", vmax, f"{path.stem}: posterior {key}")


def write_reports(rows: list[dict[str, Any]], out: str | Path) -> list[Path]:
    """Write ``results.csv``, ``results.md`` and the figure grids into ``out``; return the paths."""
    out = Path(out)
    if not rows:
        return []
    written = [atomic_write_text(out / "results.csv", _csv(rows)),
               atomic_write_text(out / "results.md", markdown_tables(rows))]
    by_data: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("family") != "gmm":
            by_data[(r["problem"], r["data"])].append(r)
    for (problem, data), rs in by_data.items():
        stem = f"{problem}__{rs[0]['key'].split('__')[1]}"
        for key in ("mean", "std"):
            path = out / "figures" / f"{stem}_{key}.png"
            _grid(path, rs, out / "cells", key)
            if path.exists():
                written.append(path)
    return written
