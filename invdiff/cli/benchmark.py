"""``invdiff benchmark``: the parser and the handler."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

EPILOG = """examples:
  invdiff benchmark scripts/benchmarks/gmm-suite.toml --out outputs/bench/gmm
  invdiff benchmark scripts/benchmarks/image-tasks.toml --publish docs/results/image-tasks   # tune = true
  invdiff benchmark scripts/benchmarks/ct-sparse-view.toml --out outputs/bench/ct --executor ray
  invdiff benchmark CONFIG.toml --out DIR --report-only      # tables and figures from finished cells
  invdiff benchmark scripts/benchmarks/mri-nfe.toml --budgets 50,100   # part of a long grid now, the rest later
  invdiff benchmark scripts/benchmarks/mri-nfe.toml --budgets 500 --problems mri-4x   # and mri-8x in a second process

Each cell (sampler x problem x datum x seed x budget) is written to DIR/cells as soon as it is done;
rerunning the command skips finished cells, so an interrupted benchmark resumes. With tune = true in
the config, each sampler's grid is first run on the problems' validation data (DIR/tuning, resumable
too) and the test cells take the best setting. --publish writes the report, the figures, the command
and the commit to a results page (docs/results/NAME)."""

log = logging.getLogger("invdiff.benchmark")


def add_parser(sub) -> None:
    p = sub.add_parser("benchmark", help="run a grid of samplers x problems x data x seeds x budgets from a TOML "
                       "config, resumably (optionally tuned on validation data first), and write CSV/Markdown/figure "
                       "reports", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run the benchmark grid of CONFIG (see invdiff.benchmark.config for the format) "
                       "and write results.csv, results.md and figures/ into --out.", epilog=EPILOG)
    p.add_argument("config")
    p.add_argument("--out", default=None, help="output folder (default outputs/benchmark/NAME)")
    p.add_argument("--publish", default=None, metavar="DIR",
                   help="also write the report, figures, command and commit to this results page folder")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local instance)")
    p.add_argument("--cpus-per-task", type=float, default=1.0, help="Ray: CPUs (and torch threads) per cell")
    p.add_argument("--num-cpus", type=int, default=None, help="Ray: CPUs of a local instance (default: all)")
    p.add_argument("--device", default="cpu", help="local executor: cpu or cuda")
    p.add_argument("--report-only", action="store_true", help="only write the reports from finished cells")
    p.add_argument("--budgets", default=None, metavar="N[,N...]",
                   help="run (and tune, and report) only these network-evaluation budgets of the config; the "
                   "classical baselines always run")
    p.add_argument("--problems", default=None, metavar="NAME[,NAME...]",
                   help="run (and tune, and report) only these problems of the config, under the whole grid's keys "
                   "(two processes on two parts share one --out)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and whether they are done, run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from invdiff.benchmark.cells import cell_done, load_results
    from invdiff.benchmark.config import load_config
    from invdiff.benchmark.executors import run_local, run_ray
    from invdiff.benchmark.report import publish, write_reports
    from invdiff.benchmark.tuning import tune_all

    config = load_config(args.config)  # a ConfigError names the file and the key
    budgets = problems = None
    if args.budgets:
        try:
            budgets = tuple(int(b) for b in args.budgets.split(","))
        except ValueError:
            raise ValueError(f"--budgets must be integers separated by commas, got {args.budgets!r}") from None
    if args.problems:
        problems = tuple(name.strip() for name in args.problems.split(",") if name.strip())
    if budgets is not None or problems is not None:
        config = config.restricted(budgets, problems)
    out = Path(args.out or Path("outputs") / "benchmark" / config.name)
    start = time.perf_counter()
    tuned = {}
    if config.tune and not args.dry_run:
        try:
            tuned = tune_all(config, out, args.device, log=log.info)
        except (ValueError, KeyError, FileNotFoundError) as err:
            raise ValueError(f"tuning on validation data: {err}") from None
    cells = config.cells(tuned)
    if args.dry_run:
        for c in cells:
            print(f"{'done' if cell_done(out, c) else 'todo'}  {c.key}")
        note = " (before tuning: tuned samplers' keys change once their settings are chosen)" if config.tune else ""
        print(f"{len(cells)} cells, {sum(cell_done(out, c) for c in cells)} done{note}")
        return 0
    failures = {}
    if not args.report_only:
        log.info(f"{config.name}: {len(cells)} cells -> {out}")
        if args.executor == "ray":
            failures = run_ray(cells, out, address=args.ray_address, num_cpus=args.num_cpus,
                               cpus_per_task=args.cpus_per_task, gpus_per_task=config.gpus_per_task,
                               progress=not args.quiet)
        else:
            failures = run_local(cells, out, args.device, progress=not args.quiet)
    order = {c.key: i for i, c in enumerate(cells)}
    rows = sorted((r for r in load_results(out) if r["key"] in order), key=lambda r: order[r["key"]])
    written = write_reports(rows, out, tuning=out / "tuning" if config.tune else None)
    if rows:
        print((out / "results.md").read_text())
    if args.publish and rows:
        command = "invdiff " + " ".join(shlex.quote(a) for a in (getattr(args, "argv", None) or sys.argv[1:]))
        page = publish(out, args.publish, config, command, len(cells))
        print(f"results page: {page}")
    print(f"{len(rows)} of {len(cells)} cells done ({time.perf_counter() - start:.1f} s); reports: "
          + ", ".join(str(p) for p in written))
    if failures:
        print(f"{len(failures)} cell(s) failed: " + "; ".join(f"{k}: {v}" for k, v in failures.items()))
        return 1
    return 0
