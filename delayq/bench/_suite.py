"""The bench's one registry of phases, its options, and the run: every phase in turn, then the report.

Adding a phase is adding its module (a :class:`~delayq.bench._harness.Phase` named
``PHASE``), a line in :data:`PHASES`, and its ``benchmarks/NAME.py``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

from .._cli_base import CliError, exit_status, invocation
from . import cluster, consumers, enqueue, lateness, scaling, throughput, worker
from ._harness import Phase, Progress, Targets, environment, open_target, plot, write_json

__all__ = ["PHASES", "add_arguments", "report", "run", "run_script"]

PHASES: dict[str, Phase] = {
    phase.name: phase
    for phase in (
        throughput.PHASE,
        enqueue.PHASE,
        scaling.PHASE,
        consumers.PHASE,
        lateness.PHASE,
        cluster.PHASE,
        worker.PHASE,
    )
}

INTRO = """\
What one Lua call per batch buys over the per-item round-trip version.

Every phase measures both sides in one run, on one server, interleaved over
several rounds, and reports medians and ratios: absolute figures move by about
±25% from run to run on a shared 2-core machine, ratios much less."""


def description(phases: Sequence[Phase]) -> str:
    """The suite's --help text, listing the phases from the registry."""
    lines = [f"  {p.name:<11} {p.summary}" for p in phases]
    return INTRO + "\n\nPhases (each also runnable alone: delayq bench --only NAME, or benchmarks/NAME.py):\n" + "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser, *, phase: str | None = None) -> None:
    """The bench's options and its phases' own (all phases, or only ``phase``); sets the --help text."""
    chosen = [PHASES[phase]] if phase else list(PHASES.values())
    parser.description = f"{chosen[0].summary[0].upper()}{chosen[0].summary[1:]}.\n\n{INTRO}" if phase else description(chosen)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--url", help="Redis to run against (default $DELAYQ_REDIS_URL, else a private redis-server)")
    parser.add_argument("--full", action="store_true", help="larger sizes, 10^6 queued, more rounds (about 10 minutes)")
    if phase is None:
        parser.add_argument("--only", action="append", choices=list(PHASES), help="run only this phase (repeatable)")
    else:
        parser.set_defaults(only=[phase])
    parser.add_argument("--rounds", type=_positive, help="interleaved rounds per measurement (default 5, 7 with --full)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG (needs the plot extra: matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for p in chosen:
        if p.add_arguments is not None:
            p.add_arguments(parser)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= 50:
        raise argparse.ArgumentTypeError(f"must be between 1 and 50, got {value}")
    return value


def run(opts: argparse.Namespace, command: str) -> int:
    """Run the phases ``opts.only`` names (default all), print the report, write the JSON and the plot if asked.

    Args:
        opts: Options from a parser set up by :func:`add_arguments`.
        command: The command line that asked for this run, recorded in the JSON.

    Returns:
        The exit status (0).

    Raises:
        CliError: A bad URL, an unreachable server, or --plot without matplotlib.
    """
    phases = [PHASES[name] for name in opts.only or PHASES]
    if opts.plot:
        try:
            import matplotlib  # noqa: F401, PLC0415 (optional extra: fail before the run, not after)
        except ImportError as exc:
            raise CliError("--plot needs matplotlib: pip install 'delayq[plot]'", code=2) from exc
    for phase in phases:
        if phase.check_options is not None:
            phase.check_options(opts)
    opts.rounds = opts.rounds or (7 if opts.full else 5)
    target = open_target(opts.url or os.environ.get("DELAYQ_REDIS_URL"), lambda line: print(line, file=sys.stderr))
    try:
        results: dict[str, Any] = {"environment": environment(target), "rounds": opts.rounds, "full": opts.full}
        results["command"] = command
        progress = Progress(opts.quiet)
        for phase in phases:
            started = time.perf_counter()
            results[phase.name] = phase.measure(target, opts, progress)
            results.setdefault("seconds", {})[phase.name] = round(time.perf_counter() - started, 1)
    finally:
        target.close()
    print(report(results))
    if opts.json:
        write_json(results, opts.json)
        print(f"\nresults written to {opts.json}")
    if opts.plot:
        plot(results, opts.plot, list(PHASES.values()))
        print(f"plot written to {opts.plot}")
    return 0


def report(results: dict[str, Any]) -> str:
    """The run as text: where it ran, each phase's table (or why it was skipped), and the targets."""
    env = results["environment"]
    out = [
        f"delayq bench: {env['target']}, Redis {env['redis_version']}, {env['machine']}",
        f"Python {env['python']}, redis-py {env['redis_py']} ({env['parser']} parser); medians of {results['rounds']} rounds",
    ]
    checks = Targets()
    for name, phase in PHASES.items():
        result = results.get(name)
        if result is not None:
            out.append(f"\n{name}: skipped, {result['skipped']}" if "skipped" in result else "\n" + phase.report(result))
        if phase.targets is not None:
            phase.targets(None if result is None or "skipped" in result else result, checks)
    out.append("\n" + checks.text())
    return "\n".join(out)


def run_script(phase: str, argv: Sequence[str] | None = None) -> int:
    """The body of ``benchmarks/PHASE.py``: that phase alone, with the options of ``delayq bench`` but --only.

    Args:
        phase: The phase's name.
        argv: The arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 1 on a runtime failure, 2 on bad usage.
    """
    if argv is None:
        args, program = sys.argv[1:], invocation()
    else:
        args, program = list(argv), ["python", f"benchmarks/{phase}.py"]
    parser = argparse.ArgumentParser(prog=" ".join(program))
    add_arguments(parser, phase=phase)
    opts = parser.parse_args(args)
    return exit_status(parser.prog, lambda: run(opts, shlex.join([*program, *args])))
