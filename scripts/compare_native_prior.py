"""Does a prior trained at native resolution beat the shipped 128 prior applied at native size?

Two measurements, both on Colin27 (never seen by either prior), neither on the benchmark's test slices:

1. denoising: the MSE reduction ``E||n||^2 / E||D(x + n) - x||^2`` on the fixture slice
   (:func:`invdiff.datasets.native_brain_slice`, 320 x 320 at 0.6875 mm, a smooth phase ramp) at
   several noise levels;
2. reconstruction: RED-Diff (100 evaluations, the mri defaults) on the native validation file's two
   slices at 4x (``python scripts/make_native_testset.py`` first), PSNR/SSIM against the RSS target.

The 128 prior is applied off its declared pixel range on purpose (``strict=False``).

    python scripts/compare_native_prior.py runs/prior_mri_brain_native/prior.pt [--out docs/results/native-prior]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from invdiff.benchmark.report import script_page
from invdiff.datasets import native_brain_slice
from invdiff.metrics import fastmri_volume_metrics
from invdiff.priors import open_prior
from invdiff.problems import ProblemSpec, configured_sampler, open_source
from invdiff.reconstruct import solve_problem

VALIDATION = Path("outputs/native-brain/multicoil_val/file_brain_AXT1_colin27_val.h5")
SIGMAS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def denoising_gains(prior) -> dict[float, float]:
    m = torch.from_numpy(native_brain_slice())[None]
    phase = 0.5 * torch.linspace(-math.pi, math.pi, m.shape[-1]).reshape(1, -1)
    x = torch.stack([m * torch.cos(phase), m * torch.sin(phase)], dim=1)
    prior = prior.at_size(*x.shape[-2:])
    gains = {}
    for sigma in SIGMAS:
        noisy = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            out = prior.denoise(noisy, sigma)
        gains[sigma] = float(((noisy - x) ** 2).mean() / ((out - x) ** 2).mean())
    return gains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prior", help="the native-resolution prior file")
    parser.add_argument("--out", type=Path, default=Path("docs/results/native-prior"))
    args = parser.parse_args()
    priors = {"native fine-tune": args.prior, "mri_brain_128 (resized)": "mri_brain_128"}
    problem = open_source(str(VALIDATION), ProblemSpec(operator="mri", acceleration=4, center_fraction=0.08)).build([0, 1])
    rows = []
    for label, spec in priors.items():
        prior = open_prior(spec)
        start = time.perf_counter()
        res = solve_problem(problem, configured_sampler("red-diff", 100, "mri", {}), prior, 1,
                            torch.Generator().manual_seed(0), prior_name=spec, strict_pixel=False)
        metrics = fastmri_volume_metrics(problem.target, res["mean"])
        rows.append({"prior": label, "file": spec, "pixel_size_mm": getattr(prior, "pixel_size_mm", None),
                     "denoising_gain": denoising_gains(prior), "red_diff_val_4x": metrics,
                     "red_diff_s": round(time.perf_counter() - start, 1)})
    zero = fastmri_volume_metrics(problem.target, problem.baseline)
    head = "| prior | declared pixels (mm) | " + " | ".join(f"gain σ={s}" for s in SIGMAS) + " | RED-Diff val 4x PSNR | SSIM |"
    lines = [head, "|---|---|" + "---:|" * (len(SIGMAS) + 2)]
    for r in rows:
        px = "-" if r["pixel_size_mm"] is None else "{:.2f}-{:.2f}".format(*r["pixel_size_mm"])
        lines.append(f"| {r['prior']} | {px} | " + " | ".join(f"{r['denoising_gain'][s]:.2f}" for s in SIGMAS)
                     + f" | {r['red_diff_val_4x']['PSNR']:.2f} | {r['red_diff_val_4x']['SSIM']:.4f} |")
    notes = (f"Denoising on `datasets/data/colin27_native_slice.npz`; reconstruction on `{VALIDATION}` (2 slices, "
             f"equispaced 4x, 8 % centre), zero-filled {zero['PSNR']:.2f} dB / SSIM {zero['SSIM']:.4f}. Validation "
             "data only: this decides which prior ships, so it must not be the test set.")
    script_page(args.out, "Native-resolution prior against the 128 prior at native size", rows, "\n".join(lines), notes)


if __name__ == "__main__":
    main()
