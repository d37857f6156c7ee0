"""The ``invdiff`` command: one module per subcommand (``demo``, ``train-prior``, ``reconstruct``,
``benchmark``), each with ``add_parser(sub)`` and ``run_command(args)``.

The command is the only place that selects a matplotlib backend (Agg: files, no screen).
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from invdiff.cli import benchmark, demo, reconstruct, train_prior

    parser = argparse.ArgumentParser(
        prog="invdiff",
        description="Imaging inverse problems with diffusion priors.",
        epilog="examples:\n  invdiff demo --out outputs/demo\n  invdiff reconstruct demo --sampler dps --particles 4\n"
               "  invdiff benchmark scripts/benchmarks/ct-sparse-view.toml --out outputs/bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (demo, train_prior, reconstruct, benchmark):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    import matplotlib

    matplotlib.use("Agg")  # the command writes PNG files; it never opens a window
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(message)s")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(args, "prior_steps", 0) < 0:
        print("invdiff: --prior-steps must be >= 0", file=sys.stderr)
        return 2
    for name in ("particles", "steps", "batch_slices"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            print(f"invdiff: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
