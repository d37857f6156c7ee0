"""Benchmark reports from the finished cells: ``results.csv``, ``results.md``, figures, results pages.

``results.csv`` has one row per cell. ``results.md`` has one table per problem, one row per sampler
and budget, and ``mean ± std`` of every metric over data and seeds (the std of ``n = 1`` is shown as
0), with the particles, the cell count, network evaluations, VJPs and wall time per cell, and a note on
what coverage with few particles can resolve; for Gaussian-mixture cells, how many pass the exact-posterior
tests (:func:`fidelity_table`); with tuning, a table of the settings chosen on validation
data and their validation scores. ``figures/PROBLEM__DATA_mean.png`` is a grid per problem and datum:
one row per budget, columns target, baseline and each sampler's posterior mean (the lowest seed, first
slice; one row when every sampler ran at one budget of its own), and ``..._std.png`` the posterior stds; a problem run at several budgets gets
``figures/PROBLEM_quality.png``, PSNR against network evaluations and wall time (:func:`quality_curves`). :func:`publish` turns a run into a results page
(``docs/results/NAME/README.md``): the command, the commit, the date, the report and its figures.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import platform
import shutil
import subprocess
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from invdiff.io import atomic_write, atomic_write_text
from invdiff.plots import calibration_figure, labelled_grid, quality_figure
from invdiff.problems.gmm import COVERAGE_TOLERANCE

__all__ = ["fidelity_table", "markdown_tables", "publish", "quality_curves", "script_page", "tuning_table",
           "write_reports"]

IMAGE_METRICS = ("PSNR", "SSIM", "NMSE", "coverage_0.50", "coverage_0.90", "coverage_0.95", "object_coverage_0.50",
                 "object_coverage_0.90", "equal_weight_object_coverage_0.90", "calibrated_coverage_0.90",
                 "calibrated_half_width_0.90", "delta_cal", "object_delta_cal", "ceiling_PSNR")
GMM_METRICS = ("sw", "sw_exact", "sw_floor_q99", "mean_rel", "cov_rel", "mode_tv", "ess", "delta_cal",
               "coverage_90_min", "coverage_90_max")
RECORD_COLUMNS = {"ess_min_steps": "min ESS", "ess_median_steps": "median ESS", "resampled_steps": "resampled steps",
                  "tempering_exponent": "mean weight exponent"}


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
        extra = [k for k in RECORD_COLUMNS if any(k in r for r in prs)]
        head = ["sampler", "NFE budget", "particles", "cells", *names, *[RECORD_COLUMNS[k] for k in extra],
                "network evals", "VJPs", "wall (s)"]
        lines = [f"### {problem}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        order = list(dict.fromkeys(r["sampler"] for r in prs))
        for (sampler, nfe), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
            cells = [sampler, str(nfe), "/".join(str(n) for n in sorted({r.get("particles", 1) for r in rs})), str(len(rs))]
            cells += [_fmt([r["metrics"][m] for r in rs if m in r["metrics"]]) for m in names]
            cells += [_fmt([r[k] for r in rs if k in r]) for k in extra]
            cells += [f"{np.mean([r['network_evals'] for r in rs]):.0f}", f"{np.mean([r['vjps'] for r in rs]):.0f}",
                      f"{np.mean([r['wall_time_s'] for r in rs]):.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        if any(m.startswith("coverage") for m in names):
            lines += ["", COVERAGE_NOTE]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def fidelity_table(rows: list[dict[str, Any]]) -> str:
    """Markdown of the exact-posterior tests per sampler and budget: on how many Gaussian-mixture cells
    (problems x seeds) the samples pass the sliced Wasserstein test, the 90 % coverage test, and both
    (:func:`invdiff.problems.gmm.score_posterior`); empty without such cells."""
    gmm = [r for r in rows if r.get("family") == "gmm" and "sw_pass" in r["metrics"]]
    if not gmm:
        return ""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in gmm:
        groups[(r["sampler"], r["nfe"])].append(r)
    order = list(dict.fromkeys(r["sampler"] for r in gmm))
    lines = ["### Exact-posterior tests passed", "",
             "Sliced Wasserstein: the distance is within the 99th percentile of an exact sampler's with as many "
             f"samples as the sampler has particles. Coverage: every coordinate's 90 % interval holds {0.9 - COVERAGE_TOLERANCE:.2f}-"
             f"{0.9 + COVERAGE_TOLERANCE:.2f} of the exact posterior.", "",
             "| sampler | NFE budget | particles | SW test | coverage test | both |", "|---|---:|---:|---:|---:|---:|"]
    for (sampler, nfe), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        sw = [r["metrics"]["sw_pass"] == 1.0 for r in rs]
        cov = [r["metrics"]["coverage_pass"] == 1.0 for r in rs]
        both = sum(a and b for a, b in zip(sw, cov))
        particles = "/".join(str(n) for n in sorted({r.get("particles", 1) for r in rs}))
        lines.append(f"| {sampler} | {nfe} | {particles} | {sum(sw)}/{len(rs)} | {sum(cov)}/{len(rs)} | {both}/{len(rs)} |")
    return "\n".join(lines) + "\n"


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
    own = {s: [nfe for (t, nfe) in arrays if t == s] for s in samplers}
    if len(budgets) > 1 and all(len(v) <= 1 for v in own.values()):
        # every sampler at one budget of its own: one row, each panel captioned with its budget
        grid = [list(lead) + [(f"{s} ({v[0]} NFE)" if v[0] else s, arrays[(s, v[0])][key])
                              for s, v in own.items() if v]]
    else:
        grid = []
        for nfe in budgets:
            row = list(lead)
            for s in samplers:
                a = arrays.get((s, nfe)) or arrays.get((s, 0))
                row.append((f"{s} ({nfe} NFE)" if (s, nfe) in arrays else s, None if a is None else a[key]))
            grid.append(row)
    labelled_grid(path, grid, "image" if key == "mean" else "std", vmax, f"{path.stem}: posterior {key}")


def tuning_table(folder: Path) -> str:
    """Markdown of the settings chosen on validation data (``OUT/tuning/*.json`` summaries)."""
    rows = []
    for path in sorted(Path(folder).glob("*__nfe*.json")):
        d = json.loads(path.read_text())
        if "chosen" not in d:
            continue
        scores = "; ".join(f"{_settings(s['settings'])}: {s['score']:.4g}" for s in d["scores"])
        rows.append(f"| {d['problem']} | {d['sampler']} | {d['nfe']} | {_settings(d['chosen'])} | {scores} |")
    if not rows:
        return ""
    return "\n".join(["### Settings chosen on validation data", "",
                      "Each grid point ran on the problem's validation data; the best (highest PSNR, lowest sliced "
                      "Wasserstein distance) went into the test cells above.", "",
                      "| problem | sampler | NFE | chosen | validation score per setting |", "|---|---|---:|---|---|",
                      *rows]) + "\n"


def _settings(values: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def _calibration(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[float, float]]]:
    """problem -> sampler (and its equal-weight reading) -> {level: mean object coverage}."""
    out: dict[str, dict[str, dict[float, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        for key, value in r["metrics"].items():
            for prefix, suffix in (("object_coverage_", ""), ("equal_weight_object_coverage_", ", weights dropped")):
                if key.startswith(prefix):
                    out[r["problem"]][r["sampler"] + suffix][float(key[len(prefix):])].append(value)
    return {p: {s: {a: float(np.mean(v)) for a, v in levels.items()} for s, levels in curves.items()}
            for p, curves in out.items()}


def quality_curves(rows: list[dict[str, Any]], metric: str = "PSNR"
                   ) -> dict[str, tuple[dict[str, dict[int, tuple[float, float]]], dict[str, float]]]:
    """problem -> (sampler -> {budget: (mean ``metric``, mean wall seconds)}, baseline -> mean ``metric``) for
    the image problems run at two or more network-evaluation budgets; baselines are the budget-0 rows."""
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("family") != "gmm" and metric in r["metrics"]:
            by_problem[r["problem"]].append(r)
    out = {}
    for problem, rs in by_problem.items():
        if len({r["nfe"] for r in rs if r["nfe"] > 0}) < 2:
            continue
        groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
        for r in rs:
            groups[(r["sampler"], r["nfe"])].append(r)
        curves: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)
        baselines = {}
        for (sampler, nfe), g in groups.items():
            score = float(np.mean([r["metrics"][metric] for r in g]))
            if nfe > 0:
                curves[sampler][nfe] = (score, float(np.mean([r.get("wall_time_s", 0.0) for r in g])))
            else:
                baselines[sampler] = score
        out[problem] = (dict(curves), baselines)
    return out


def write_reports(rows: list[dict[str, Any]], out: str | Path, tuning: Path | None = None) -> list[Path]:
    """Write ``results.csv``, ``results.md`` (with the tuning table when ``tuning`` holds summaries) and the
    figure grids into ``out``; return the paths."""
    out = Path(out)
    if not rows:
        return []
    markdown = markdown_tables(rows)
    fidelity = fidelity_table(rows)
    markdown += ("\n" + fidelity) if fidelity else ""
    if tuning is not None and tuning.is_dir():
        table = tuning_table(tuning)
        markdown += ("\n" + table) if table else ""
    written = [atomic_write_text(out / "results.csv", _csv(rows)), atomic_write_text(out / "results.md", markdown)]
    by_data: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("family") != "gmm":
            by_data[(r["problem"], r["data"])].append(r)
    for problem, curves in _calibration(rows).items():
        written.append(calibration_figure(out / "figures" / f"{problem}_calibration.png", curves,
                                          f"{problem}: coverage over the object (mean over cells)"))
    for problem, (curves, baselines) in quality_curves(rows).items():
        written.append(quality_figure(out / "figures" / f"{problem}_quality.png", curves, baselines,
                                      f"{problem}: PSNR of the posterior mean against cost (mean over cells)"))
    for (problem, data), rs in by_data.items():
        stem = f"{problem}__{rs[0]['key'].split('__')[1]}"
        for key in ("mean", "std"):
            path = out / "figures" / f"{stem}_{key}.png"
            _grid(path, rs, out / "cells", key)
            if path.exists():
                written.append(path)
    return written


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the invdiff that runs, ``+dirty`` with uncommitted changes to tracked files
    (``unknown`` outside a git checkout); recorded in every cell and on every results page."""
    where = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _provenance(command: str, threads: str | None = None) -> str:
    """Who wrote a page: the command, commit, date and machine; ``threads`` says with how many torch threads
    the measurements ran (default: this process's count, right where measuring and writing are one process)."""
    threads = threads or f"{torch.get_num_threads()} torch threads"
    return (f"Written by `{command}` at commit {code_version()}, {datetime.date.today().isoformat()}; "
            f"{platform.machine()}, {threads}, torch {torch.__version__}.")


def script_page(folder: str | Path, title: str, rows: Any, table: str, notes: str = "") -> Path:
    """The results page of a measurement script: ``folder/README.md`` (title, the command and commit that
    produced it, ``notes``, the table) and ``folder/results.json`` (the rows), written atomically; the
    table is printed. Returns the page's path."""
    import sys

    folder = Path(folder)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    provenance = _provenance(command)  # before writing: the page's own files do not make the tree dirty
    atomic_write_text(folder / "results.json", json.dumps(rows, indent=2, sort_keys=True, default=str) + "\n")
    page = [f"# {title}", "", provenance, ""] + ([notes.strip(), ""] if notes else []) + [table]
    print(table)
    return atomic_write_text(folder / "README.md", "\n".join(page).rstrip() + "\n")


def publish(out: str | Path, dest: str | Path, config, command: str, total_cells: int) -> Path:
    """A results page: ``dest/README.md`` (what ran, the command, the commit, the date, the machine, the
    report), ``dest/results.csv``, ``dest/config.toml`` and ``dest/figures/``; every file written atomically.
    Returns the page's path."""
    out, dest = Path(out), Path(dest)
    report = (out / "results.md").read_text()
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    done = len(records)
    versions = sorted({r.get("commit", "not recorded") for r in records})
    # the cells' own thread counts (Ray workers set theirs), not the count of the process that writes the page
    counts = sorted({r["torch_threads"] for r in records if "torch_threads" in r})
    recorded = sum("torch_threads" in r for r in records)
    threads = (f"{'/'.join(map(str, counts))} torch threads per cell"
               + (f" ({recorded} of {done} cells recorded it)" if recorded < done else "")) if counts else None
    header = [f"# {config.name}", "",
              _provenance(command, threads) + f" Configuration: [config.toml](config.toml) "
              f"(a copy of `{config.path}`); every cell: [results.csv](results.csv). {done} finished cell file(s) for "
              f"{total_cells} cells, computed by the code at commit(s) {', '.join(versions)}.", ""]
    if config.only_budgets is not None:
        header += [f"Run at {', '.join(map(str, config.only_budgets))} network evaluations only, of the configuration's "
                   f"{', '.join(map(str, config.all_budgets))} (`--budgets`); the cells of the other budgets are not here.", ""]
    if config.only_problems is not None:
        header += [f"Run for {', '.join(config.only_problems)} only (`--problems`); the configuration's other problems "
                   "are not here.", ""]
    if config.tune:
        header += ["Each sampler's settings were chosen on the problems' validation data and the test problems were "
                   "run once with them (the table at the end).", ""]
        carried = {n: m for n, m in config.settings_from_budget.items()
                   if config.only_budgets is None or n in config.only_budgets}
        if carried:
            header += ["; ".join(f"The {n}-evaluation cells ran at the settings chosen at {m}" for n, m in
                                 sorted(carried.items())) + " (`settings_from_budget`): those grids were not searched "
                       "at the larger budget, so its settings may be short of its best.", ""]
    figures = sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
    links = [f"![{p.stem}](figures/{p.name})" for p in figures]
    atomic_write_text(dest / "README.md", "\n".join(header) + report + ("\n## Figures\n\n" + "\n\n".join(links) + "\n"
                                                                        if links else ""))
    atomic_write_text(dest / "results.csv", (out / "results.csv").read_text())
    atomic_write_text(dest / "config.toml", Path(config.path).read_text())
    for p in figures:
        atomic_write(dest / "figures" / p.name, lambda tmp, p=p: shutil.copyfile(p, tmp))
    return dest / "README.md"
