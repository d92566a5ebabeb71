"""The ``delayq`` command line (also ``python -m delayq``).

Exit status: 0 success, 1 a runtime failure (e.g. Redis unreachable), 2 bad usage.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__, _bench, _cli, _cli_admin

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subcommand per action."""
    parser = argparse.ArgumentParser(
        prog="delayq",
        description="delayq: a delayed-job queue on Redis. Exit status: 0 success, 1 failure, 2 bad usage.",
    )
    parser.add_argument("--version", action="version", version=f"delayq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = commands.add_parser(
        "bench",
        help="benchmark the Lua queue against the per-item round-trip version",
        description=(_bench.__doc__ or "").split("\n\n")[0],
    )
    _bench.add_arguments(bench)
    _cli.add_queue_commands(commands)
    _cli_admin.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            return _bench.run(args)
        if args.command in _cli_admin.COMMANDS:
            return _cli_admin.run_command(args)
        return _cli.run_command(args)
    except _cli.CliError as exc:
        print(f"delayq {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"delayq {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
