"""``invdiff demo``: the main job on the embedded data and the shipped prior, then an exact check.

1. ``invdiff reconstruct demo``: the embedded multi-coil demo scan at 4x, RED-Diff with the shipped MRI
   prior, written to ``OUT/reconstruct`` (prediction file, NIfTI, figures, metrics JSON).
2. Uncertainty: one slice of the same scan with DiffPIR, a stochastic sampler, at 4 particles
   (``OUT/uncertainty``): the particles' mean and pixel-wise std, and the coverage of their intervals.
   ``OUT/summary.png`` is the page to open first: target, zero-filled, the RED-Diff mean, the DiffPIR
   mean, its std and its error, with the scores.
3. A Gaussian-mixture posterior beside its closed form: MCGdiff's 25-component mixture in dimension 8
   seen through a random 1 x 8 operator whose singular values lie in (0, 1); ancestral DDIM draws from
   the diffusion prior (exact mixture denoiser), importance-weighted by the likelihood: an
   asymptotically exact sampler that exercises the prior, schedule, sampler protocol, ``Measurement``
   and particle weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from invdiff.cli.options import nonnegative_int, positive_int
from invdiff.io import atomic_write_json
from invdiff.measurement import Measurement
from invdiff.metrics import mode_weights, moment_errors, sliced_wasserstein
from invdiff.operators import MatrixOperator
from invdiff.plots import gmm_scatter
from invdiff.priors import GaussianMixturePrior
from invdiff.samplers import ImportanceSampling, run


def gaussian_mixture_demo(out_dir: str | Path, n_particles: int = 16384, num_steps: int = 100,
                          seed: int = 0, progress: bool = True) -> dict:
    """Run the demo, write ``gmm_posterior.json`` and ``gmm_posterior.png`` to ``out_dir``, return the summary."""
    g = torch.Generator().manual_seed(seed)
    dim, n_obs, sigma = 8, 1, 0.5
    prior = GaussianMixturePrior.grid(dim, g)
    op = MatrixOperator.random(n_obs, dim, g)
    x_true = prior.sample(1, g)
    y = op.A(x_true) + sigma * torch.randn(1, n_obs, dtype=torch.float64, generator=g)
    measurement = Measurement(op, y, sigma)
    exact = prior.exact_posterior(measurement)

    post = run(ImportanceSampling(num_steps=num_steps, eta=1.0), measurement, prior, n_particles=n_particles,
               generator=g, progress=progress)
    flat = post.samples.reshape(n_particles, dim)
    w = post.weights[0]
    exact_samples = exact.sample(n_particles, g)[0]
    baseline = exact.sample(n_particles, g)[0]
    sampled = post.resampled(g).samples[0]

    summary = {
        "problem": {"dim": dim, "observations": n_obs, "noise_sigma": sigma, "components": 25, "seed": seed},
        "sampler": {"name": "ancestral DDIM prior samples + likelihood importance weights",
                    "particles": n_particles, "steps": num_steps,
                    "network_evals": post.diagnostics.network_evals,
                    "wall_time_s": round(post.diagnostics.wall_time, 3),
                    "ess": float(post.ess[0])},
        "posterior_mean": {"exact": exact.mean()[0].tolist(), "sampled": post.mean[0].tolist()},
        "moment_errors": moment_errors(flat, exact.mean()[0], exact.cov()[0], weights=w),
        "mode_weights": {"exact": exact.weights[0].tolist(),
                         "sampled": mode_weights(exact.responsibilities(flat.unsqueeze(0))[0], w).tolist()},
        "sliced_wasserstein": {"sampled_vs_exact": float(sliced_wasserstein(sampled, exact_samples)),
                               "exact_vs_exact": float(sliced_wasserstein(baseline, exact_samples))},
    }
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "gmm_posterior.json", summary)
    gmm_scatter(out_dir / "gmm_posterior.png", prior.sample(4000, g).numpy(), exact_samples.numpy(), sampled.numpy())
    return summary


def format_summary(s: dict) -> str:
    """Human-readable table of a demo summary."""
    em, sm = s["posterior_mean"]["exact"], s["posterior_mean"]["sampled"]
    ew, sw = s["mode_weights"]["exact"], s["mode_weights"]["sampled"]
    top = sorted(range(len(ew)), key=lambda k: -ew[k])[:4]
    lines = [
        f"Gaussian-mixture posterior (d={s['problem']['dim']}, {s['problem']['observations']} observation(s), "
        f"noise sigma {s['problem']['noise_sigma']})",
        f"sampler: {s['sampler']['name']}, {s['sampler']['particles']} particles, "
        f"{s['sampler']['network_evals']} network evaluations, {s['sampler']['wall_time_s']} s, "
        f"ESS {s['sampler']['ess']:.0f}",
        "",
        f"{'quantity':<22}{'exact':>12}{'sampled':>12}",
    ]
    for i in range(4):
        lines.append(f"{f'mean[{i}]':<22}{em[i]:>12.3f}{sm[i]:>12.3f}")
    for k in top:
        lines.append(f"{f'weight of mode {k}':<22}{ew[k]:>12.3f}{sw[k]:>12.3f}")
    me = s["moment_errors"]
    sw_ = s["sliced_wasserstein"]
    lines += ["",
              f"mean error / posterior spread: {me['mean_rel']:.3f}; covariance relative error: {me['cov_rel']:.3f}",
              f"sliced Wasserstein to exact samples: {sw_['sampled_vs_exact']:.3f} "
              f"(two independent exact sample sets: {sw_['exact_vs_exact']:.3f})"]
    return "\n".join(lines)


def add_parser(sub) -> None:
    demo = sub.add_parser("demo", help="reconstruct the embedded demo scan with the shipped prior, and sample a "
                          "Gaussian-mixture posterior beside its exact answer",
                          description="Reconstruct the embedded demo scan (4x, RED-Diff, shipped MRI prior) into "
                          "OUT/reconstruct, one slice with 4 DiffPIR particles into OUT/uncertainty, draw OUT/summary.png, "
                          "then sample a Gaussian-mixture posterior and print it beside the exact one.")
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--particles", type=positive_int, default=16384,
                      help="Gaussian-mixture particles (default: 16384)")
    demo.add_argument("--steps", type=positive_int, default=100, help="Gaussian-mixture diffusion steps (default: 100)")
    demo.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default: 0)")
    demo.add_argument("--prior-steps", type=nonnegative_int, default=200,
                      help="RED-Diff steps on the demo scan (default 200; 0 skips the reconstruction)")
    demo.add_argument("--uncertainty-steps", type=nonnegative_int, default=100,
                      help="DiffPIR steps of the 4-particle uncertainty run (default 100; 0 skips it)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=run_command)


def _reconstruct_args(out: Path, sampler: str, steps: int, seed: int, quiet: bool, extra: list[str]):
    from invdiff.cli import reconstruct

    parser = argparse.ArgumentParser(prog="invdiff")
    reconstruct.add_parser(parser.add_subparsers())
    return parser.parse_args(["reconstruct", "demo", "--out", str(out), "--sampler", sampler, "--steps", str(steps),
                              "--seed", str(seed), "--force", *extra] + (["--quiet"] if quiet else []))


def summary_page(path: Path, main, uncertain) -> Path:
    """``OUT/summary.png``: the slice the uncertainty run solved, from both runs (``(inp, results, summary)``)."""
    from invdiff.plots import slice_figure

    (_, res, summ), (_, unc, usumm) = main, uncertain
    s = unc.slices[0]
    i = res.slices.index(s)
    psnr = {k: v["PSNR"] for k, v in summ["metrics"].items() if isinstance(v, dict) and "PSNR" in v}
    upsnr = usumm["metrics"]["mean"]["PSNR"]
    cov = usumm["metrics"]["credible_interval_coverage"] or {}
    baseline = res.info["baseline"]
    panels = [("target (RSS)", res.target[i], "image"),
              (f"{baseline}: {psnr[baseline]:.1f} dB (volume)", res.baseline[i], "image"),
              (f"RED-Diff mean: {psnr['mean']:.1f} dB (volume)", res.mean[i], "image"),
              (f"DiffPIR mean, {unc.particles} particles: {upsnr:.1f} dB", unc.mean[0], "image"),
              ("DiffPIR posterior std", unc.std[0], "std"),
              ("|DiffPIR mean - target|", abs(unc.mean[0] - unc.target[0]), "error")]
    cover = ", ".join(f"{float(a):.0%} interval covers {v:.0%}" for a, v in cov.items())
    title = (f"invdiff demo: the embedded multi-coil brain scan at 4x, slice {s}, shipped MRI prior"
             + (f"\nDiffPIR's pixel-wise credible intervals: {cover} of the pixels" if cover else ""))
    return slice_figure(path, panels, title, dpi=90)


def run_command(args: argparse.Namespace) -> int:
    """The demo scan reconstructed by RED-Diff with the shipped prior, one slice's uncertainty from DiffPIR,
    the summary page, then the Gaussian-mixture posterior."""
    from invdiff.cli.reconstruct import run_job
    from invdiff.reconstruct import format_summary as recon_lines

    out = Path(args.out)
    if args.prior_steps > 0:
        # RED-Diff at the settings chosen on the ICBM152 validation volume for 200 steps (docs/results/earlier.md)
        main = run_job(_reconstruct_args(out / "reconstruct", "red-diff", args.prior_steps, args.seed, args.quiet,
                                         ["--set", "lam=512", "--set", "lr=0.001"]))
        print(recon_lines(main[2]))
        if args.uncertainty_steps > 0:
            uncertain = run_job(_reconstruct_args(out / "uncertainty", "diffpir", args.uncertainty_steps, args.seed,
                                                  args.quiet, ["--particles", "4", "--slices", "2"]))
            print(recon_lines(uncertain[2]))
            print(f"summary page: {summary_page(out / 'summary.png', main, uncertain)}")
        print()
    summary = gaussian_mixture_demo(out, n_particles=args.particles, num_steps=args.steps,
                                    seed=args.seed, progress=not args.quiet)
    print(format_summary(summary))
    print(f"\noutputs in {out}: summary.png, reconstruct/ (the demo scan), uncertainty/ (one slice, 4 particles), "
          "gmm_posterior.json, gmm_posterior.png")
    return 0
