"""The ``invdiff`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from invdiff.demo import format_summary, gaussian_mixture_demo
    from invdiff.demo_mri import format_zero_filled, zero_filled_demo

    summary = gaussian_mixture_demo(args.out, n_particles=args.particles, num_steps=args.steps,
                                    seed=args.seed, progress=not args.quiet)
    print(format_summary(summary))
    print()
    print(format_zero_filled(zero_filled_demo(args.out)))
    out = Path(args.out)
    print(f"\noutputs in {out}: gmm_posterior.json/.png, demo_brain_zero_filled.h5/.json/.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invdiff",
        description="Imaging inverse problems with diffusion priors.",
        epilog="example: invdiff demo --out outputs/demo",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="posterior sampling on a Gaussian-mixture problem beside its exact answer, and the demo scan's zero-filled baseline",
                          description="Sample a Gaussian-mixture posterior and print it beside the exact one.")
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--particles", type=int, default=16384, help="number of particles (default: 16384)")
    demo.add_argument("--steps", type=int, default=100, help="diffusion steps (default: 100)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("particles", "steps"):
        if getattr(args, name, 1) < 1:
            print(f"invdiff: --{name} must be >= 1", file=sys.stderr)
            return 2
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
