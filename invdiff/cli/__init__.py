"""The ``invdiff`` command: one module per subcommand (``demo``, ``train-prior``, ``reconstruct``,
``acquire``, ``evaluate``, ``calibrate``, ``benchmark``, ``priors``), each with ``add_parser(sub)`` and ``run_command(args)``.

One error path (:func:`main`): the library's typed errors (``ValueError`` and its subclasses such as
``DataFormatError``, ``KeyError``, ``CapabilityError``) and the operating system's (a folder that is
not writable, a missing file) print one line naming the file or option and exit 1; Ctrl-C prints how
to resume and exits 130; ``--debug`` shows the traceback instead. The command is the only place that
selects a matplotlib backend (Agg: files, no screen).
"""

from __future__ import annotations

import argparse
import sys

from invdiff.cli.errors import USER_ERRORS, error_line

def build_parser() -> argparse.ArgumentParser:
    from invdiff.cli import acquire, benchmark, calibrate, demo, evaluate, priors, reconstruct, train_prior

    parser = argparse.ArgumentParser(
        prog="invdiff",
        description="Imaging inverse problems with diffusion priors.",
        epilog="examples:\n  invdiff demo --out outputs/demo\n  invdiff reconstruct demo --sampler dps --particles 4\n"
               "  invdiff benchmark scripts/benchmarks/ct-sparse-view.toml --out outputs/bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default INFO)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (demo, train_prior, reconstruct, acquire, evaluate, calibrate, benchmark, priors):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    import matplotlib

    matplotlib.use("Agg")  # the command writes PNG files; it never opens a window
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # argparse: --help (0) or a bad option (2, its message already printed)
        return exit.code if isinstance(exit.code, int) else 2
    logging.basicConfig(level=args.log_level, format="%(message)s")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"invdiff {args.command}: interrupted. Finished parts are kept: run the same command again to "
              "resume.", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"invdiff {args.command}: {error_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
