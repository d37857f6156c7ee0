"""Fill the README's headline table from the image-task results page (no number is typed by hand).

    python scripts/headline.py            # rewrite the block between the README's headline markers
    python scripts/headline.py --check    # exit 1 if the README's block differs from the results

Reads ``docs/results/image-tasks/results.csv`` (written by
``invdiff benchmark scripts/benchmarks/image-tasks.toml --publish docs/results/image-tasks``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "image-tasks" / "results.csv"
START = "<!-- headline: filled from docs/results/image-tasks/results.csv by scripts/headline.py -->"
END = "<!-- /headline -->"
TASKS = ["mri-4x", "mri-8x", "ct-30", "ct-60", "deblur", "inpaint"]
BASELINES = ("adjoint (zero-filled)", "FBP (ramp)")
CLASSICAL = ("CG least squares", "TV (PDHG, 300 it.)", "l1-wavelet (db4, FISTA, 100 it.)")
COLUMNS = {"DPS": "DPS (ancestral)", "RED-Diff": "RED-Diff", "DiffPIR": "DiffPIR (deepinv)"}
#: the samplers that lead the field's MRI tables, shown as one column: the best of them, named
LEADERS = ("DDS", "DAPS (Langevin)", "PnP-DM", "ΠGDM")


def table(path: Path = RESULTS) -> str:
    psnr: dict[tuple[str, str], float] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            psnr[(row["problem"], row["sampler"])] = float(row["PSNR"])
    lines = ["| task | classical baseline | best classical (tuned) | DPS | RED-Diff | DiffPIR | best of DDS, DAPS, PnP-DM, ΠGDM |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for task in TASKS:
        base = next((f"{psnr[(task, b)]:.2f} ({'FBP' if b.startswith('FBP') else 'zero-filled'})"
                     for b in BASELINES if (task, b) in psnr), "")
        tuned = [(psnr[(task, c)], c.split(" (")[0]) for c in CLASSICAL if (task, c) in psnr]
        best = max(tuned) if tuned else None
        values = {k: psnr.get((task, v)) for k, v in COLUMNS.items()}
        leaders = [(psnr[(task, name)], name.split(" (")[0]) for name in LEADERS if (task, name) in psnr]
        leader = max(leaders) if leaders else None
        top = max([v for v in values.values() if v is not None] + ([best[0]] if best else [])
                  + ([leader[0]] if leader else []))
        cells = [f"**{v:.2f}**" if v == top else f"{v:.2f}" if v is not None else "" for v in values.values()]
        cells.append("" if leader is None else (f"**{leader[0]:.2f}**" if leader[0] == top else f"{leader[0]:.2f}")
                     + f" ({leader[1]})")
        best_cell = "" if best is None else (f"**{best[0]:.2f}**" if best[0] == top else f"{best[0]:.2f}") + f" ({best[1]})"
        lines.append(f"| {task} | {base} | {best_cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme = (ROOT / "README.md").read_text()
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    updated = f"{head}{START}\n{table()}\n{END}{tail}"
    if args.check:
        return 0 if updated == readme else 1
    (ROOT / "README.md").write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
