"""``invdiff evaluate``: score a folder of fastMRI prediction files as fastMRI's ``evaluate.py`` does."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from invdiff.cli.options import check_output_folder

EPILOG = """examples:
  invdiff evaluate multicoil_val/ outputs/recon/reconstructions
  invdiff evaluate knee_singlecoil_val/ predictions/ --challenge singlecoil --out outputs/eval

Every target file (the folder's .h5 files; only the target key is read, so fastMRI's target-only
files work) is paired with the prediction file of the same name (dataset "reconstruction"). Per
volume: NMSE, PSNR and SSIM after fastMRI's centre crop to W x W, data range the volume's maximum;
printed as mean +- std over volumes, for all volumes and per acquisition."""

METRICS = ("NMSE", "PSNR", "SSIM")


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score fastMRI prediction files against their targets (fastMRI's "
                       "evaluate.py definitions), per acquisition", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Score the prediction files in PREDICTIONS against the targets in TARGETS.",
                       epilog=EPILOG)
    p.add_argument("targets", help="a folder (or file) of fastMRI target files")
    p.add_argument("predictions", help="a folder of prediction files named like the targets")
    p.add_argument("--challenge", choices=["multicoil", "singlecoil"], default="multicoil",
                   help="multicoil scores reconstruction_rss, singlecoil reconstruction_esc (default multicoil)")
    p.add_argument("--acquisition", default=None, help="only volumes of this acquisition (e.g. AXT2, CORPD_FBK)")
    p.add_argument("--out", default=None, help="also write evaluation.csv (per volume) and evaluation.json here")
    p.set_defaults(func=run_command)


def summary_rows(result: dict) -> list[tuple[str, int, dict[str, tuple[float, float]]]]:
    """``(group, volumes, {metric: (mean, std)})`` for all volumes and for each acquisition."""
    import numpy as np

    groups: dict[str, list[str]] = {"all": list(result["volumes"])}
    for name, acquisition in sorted(result["acquisitions"].items()):
        groups.setdefault(str(acquisition), []).append(name)
    rows = []
    for group, names in groups.items():
        if group != "all" and len(groups) == 2:
            continue  # one acquisition: its row is the "all" row
        table = np.array([[result["volumes"][n][m] for m in METRICS] for n in names])
        rows.append((group, len(names), {m: (float(table[:, i].mean()), float(table[:, i].std()))
                                         for i, m in enumerate(METRICS)}))
    return rows


def format_table(rows) -> str:
    lines = [f"{'volumes':<12}{'n':>5}  {'NMSE':>18}  {'PSNR (dB)':>16}  {'SSIM':>18}"]
    for group, n, stats in rows:
        cells = [f"{stats['NMSE'][0]:.4f} ± {stats['NMSE'][1]:.4f}", f"{stats['PSNR'][0]:.2f} ± {stats['PSNR'][1]:.2f}",
                 f"{stats['SSIM'][0]:.4f} ± {stats['SSIM'][1]:.4f}"]
        lines.append(f"{group:<12}{n:>5}  {cells[0]:>18}  {cells[1]:>16}  {cells[2]:>18}")
    return "\n".join(lines)


def run_command(args: argparse.Namespace) -> int:
    from invdiff.io import atomic_write_json, atomic_write_text
    from invdiff.metrics import evaluate_predictions

    out = check_output_folder(args.out) if args.out is not None else None
    result = evaluate_predictions(args.targets, args.predictions, args.challenge, args.acquisition)
    rows = summary_rows(result)
    print(format_table(rows))
    if out is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["file", "acquisition", *METRICS])
        for name, values in sorted(result["volumes"].items()):
            writer.writerow([name, result["acquisitions"][name], *(values[m] for m in METRICS)])
        atomic_write_text(Path(out) / "evaluation.csv", buffer.getvalue())
        atomic_write_json(Path(out) / "evaluation.json", {
            "targets": str(args.targets), "predictions": str(args.predictions), "challenge": args.challenge,
            "acquisition": args.acquisition, **result,
            "groups": {g: {"volumes": n, **{m: {"mean": s[0], "std": s[1]} for m, s in stats.items()}}
                       for g, n, stats in rows}})
        print(f"written: {out / 'evaluation.csv'}, {out / 'evaluation.json'}")
    return 0
