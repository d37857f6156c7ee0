"""Benchmarks: TOML grids of samplers x problems x data x seeds x budgets (:mod:`~invdiff.benchmark.config`),
run cell by cell, resumably (:mod:`~invdiff.benchmark.cells`, :mod:`~invdiff.benchmark.executors`), and
reported as CSV, Markdown and figures (:mod:`~invdiff.benchmark.report`)."""
