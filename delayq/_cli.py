"""The `delayq` command line: its parser and :func:`main`, and the commands that work on a queue
(stats, peek, enqueue, cancel, dead, redrive, purge, periodic); ``worker`` and ``workers`` are in
``_cli_worker``, the admin commands in ``_cli_admin``, ``delayq bench`` is ``delayq.bench``.

Exit status: 0 success, 1 a runtime failure (e.g. Redis unreachable), 2 bad usage.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster

from . import __version__, _cli_admin, _cli_worker, bench
from ._cli_base import (
    DEFAULT_URL,
    CliError,
    emit,
    exit_status,
    invocation,
    iso,
    open_queue,
    payload_fields,
    preview,
)
from ._cli_worker import import_user_module, load_target
from ._errors import DelayqError
from ._types import DeadJob, PendingJob
from .periodic import PeriodicJob, Scheduler
from .tasks import Tasks

__all__ = ["COMMANDS", "add_queue_commands", "build_parser", "main", "run_command"]

# ---------------------------------------------------------------- commands


def cmd_stats(args: argparse.Namespace) -> int:
    stats = open_queue(args).stats()
    data = {
        "queue": args.queue,
        "ready": stats.ready,
        "delayed": stats.delayed,
        "in_flight": stats.in_flight,
        "dead": stats.dead,
        "oldest_ready_age": stats.oldest_ready_age,
        "paused": stats.paused,
    }
    text = {**data, "oldest_ready_age": f"{stats.oldest_ready_age:.3f}s", "paused": "yes" if stats.paused else "no"}
    emit(args, data, "\n".join(f"{k:<18}{v}" for k, v in text.items()))
    return 0


def _jobs_table(rows: list[PendingJob] | list[DeadJob], when: str) -> str:
    if not rows:
        return "(none)"
    lines = []
    for row in rows:
        ms = row.due_ms if isinstance(row, PendingJob) else row.died_ms
        extra = f"  error={row.error!r}" if isinstance(row, DeadJob) and row.error else ""
        lines.append(f"{row.id}  {when}={iso(ms)}  attempts={row.attempts}  payload={preview(row.payload)}{extra}")
    return "\n".join(lines)


def cmd_peek(args: argparse.Namespace) -> int:
    jobs = open_queue(args).peek(args.limit)
    data = [
        {"id": j.id, "due": iso(j.due_ms), "due_ms": j.due_ms, "attempts": j.attempts, **payload_fields(j.payload)} for j in jobs
    ]
    emit(args, data, _jobs_table(jobs, "due"))
    return 0


def cmd_dead(args: argparse.Namespace) -> int:
    jobs = open_queue(args).dead_letters(args.limit)
    data = [
        {
            "id": j.id,
            "died": iso(j.died_ms),
            "died_ms": j.died_ms,
            "attempts": j.attempts,
            "error": j.error,
            **payload_fields(j.payload),
        }
        for j in jobs
    ]
    emit(args, data, _jobs_table(jobs, "died"))
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    if args.payload is None or args.payload == "-":
        payload: bytes | str = sys.stdin.buffer.read()
    else:
        payload = args.payload
    at = None
    if args.at is not None:
        try:
            at = datetime.fromisoformat(args.at)
        except ValueError as exc:
            raise CliError(f"--at must be an ISO 8601 time with a UTC offset, got {args.at!r}", 2) from exc
    queue = open_queue(args)
    job_id = queue.enqueue(payload, delay=args.delay, at=at, id=args.id)
    emit(
        args,
        {"id": job_id if job_id is not None else args.id, "stored": job_id is not None},
        job_id if job_id is not None else f"not stored: job {args.id!r} already exists",
    )
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    found = open_queue(args).cancel(args.id)
    emit(
        args,
        {"id": args.id, "cancelled": found},
        f"cancelled {args.id}" if found else f"no job {args.id!r} in queue {args.queue!r}",
    )
    return 0 if found else 1


def cmd_redrive(args: argparse.Namespace) -> int:
    moved = open_queue(args).redrive(args.ids or None)
    emit(args, {"redriven": moved}, f"{moved} job(s) back in the queue")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    queue = open_queue(args)
    total = queue.stats().total
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("refusing to purge without --yes (standard input is not a terminal to ask on)", 2)
        answer = input(f"Delete all {total} job(s) of queue {args.queue!r}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    removed = queue.purge()
    emit(args, {"purged": removed}, f"purged {removed} job(s)")
    return 0


def load_periodic(spec: str) -> list[PeriodicJob]:
    """The periodic jobs of a tasks module (``module`` or ``module:tasks``), or a list of PeriodicJob at ``module:name``.

    Raises:
        CliError: Nothing of the kind there (exit 2).
    """
    module_name, _, attr = spec.partition(":")
    if attr:
        value = getattr(import_user_module(module_name), attr, None)
        if isinstance(value, (list, tuple)) and all(isinstance(job, PeriodicJob) for job in value):
            return list(value)
    target = load_target(spec)
    if isinstance(target, Tasks):
        return target.periodic_jobs
    raise CliError(f"{spec!r} is neither a delayq.tasks.Tasks nor a list of delayq.periodic.PeriodicJob", 2)


def cmd_periodic(args: argparse.Namespace) -> int:
    jobs = load_periodic(args.source)
    states = Scheduler(open_queue(args), jobs).state()
    data = [
        {
            "name": s.job.name,
            "schedule": str(s.job.schedule),
            "missed": s.job.missed,
            "last_enqueued": None if s.last_ms is None else iso(s.last_ms),
            "next": None if s.next_ms is None else iso(s.next_ms),
        }
        for s in states
    ]
    lines = [
        f"{row['name']}  {row['schedule']}  missed={row['missed']}  last={row['last_enqueued'] or '-'}  next={row['next'] or '-'}"
        for row in data
    ]
    emit(args, data, "\n".join(lines) or "(no periodic jobs)")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "stats": cmd_stats,
    "peek": cmd_peek,
    "enqueue": cmd_enqueue,
    "cancel": cmd_cancel,
    "dead": cmd_dead,
    "redrive": cmd_redrive,
    "purge": cmd_purge,
    "worker": _cli_worker.cmd_worker,
    "workers": _cli_worker.cmd_workers,
    "periodic": cmd_periodic,
}


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    return value


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def add_queue_commands(commands: Any) -> None:
    """Add the queue commands to the `delayq` parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"Redis URL (default $DELAYQ_REDIS_URL, else $REDIS_URL, else {DEFAULT_URL})")
    common.add_argument("--cluster", action="store_true", help="the URL is a Redis Cluster node")
    common.add_argument("--prefix", default="delayq", help="key prefix (default delayq)")
    common.add_argument("--shards", type=_count, default=1, help="the queue's shard count (default 1)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    named = argparse.ArgumentParser(add_help=False, parents=[common])
    named.add_argument("queue", help="the queue's name")

    p = commands.add_parser("stats", parents=[named], help="count a queue's jobs by state")
    p = commands.add_parser("peek", parents=[named], help="show the next waiting jobs without claiming them")
    p.add_argument("--limit", type=_count, default=10, help="how many (1-1000, default 10)")
    p = commands.add_parser("enqueue", parents=[named], help="add a job (payload from the argument, or standard input)")
    p.add_argument("payload", nargs="?", help="the payload; '-' or nothing reads standard input")
    p.add_argument("--delay", type=_seconds, default=0.0, help="seconds until it is due (default 0)")
    p.add_argument("--at", help="an ISO 8601 time with UTC offset instead of --delay")
    p.add_argument("--id", help="the job's id (default: a random one)")
    p = commands.add_parser("cancel", parents=[named], help="remove a job in any state (exit 1 if absent)")
    p.add_argument("id", help="the job's id")
    p = commands.add_parser("dead", parents=[named], help="list dead-lettered jobs")
    p.add_argument("--limit", type=_count, default=100, help="how many (1-1000, default 100)")
    p = commands.add_parser("redrive", parents=[named], help="put dead-lettered jobs back, due now")
    p.add_argument("ids", nargs="*", help="the jobs to put back (default: all)")
    p = commands.add_parser("purge", parents=[named], help="delete every job (asks first unless --yes)")
    p.add_argument("--yes", action="store_true", help="do not ask")
    _cli_worker.add_commands(commands, common, named, _count, _seconds)
    p = commands.add_parser("periodic", parents=[common], help="list periodic jobs: schedule, last slot enqueued, next slot")
    p.add_argument("source", help="a tasks module (or module:NAME of a Tasks, or of a list of PeriodicJob)")
    p.add_argument("queue", help="the queue's name")


def run_command(args: argparse.Namespace) -> int:
    """Run a queue command, turning bad values into one-line errors.

    Raises:
        CliError: For the user to read (exit status in ``code``).
    """
    try:
        return COMMANDS[args.command](args)
    except DelayqError as exc:
        raise CliError(str(exc), 2) from exc
    except redis.RedisError as exc:
        raise CliError(f"Redis error: {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subcommand per action."""
    parser = argparse.ArgumentParser(
        prog="delayq",
        description="delayq: a delayed-job queue on Redis. Exit status: 0 success, 1 failure, 2 bad usage.",
    )
    parser.add_argument("--version", action="version", version=f"delayq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench.add_arguments(commands.add_parser("bench", help="benchmark the Lua queue against the per-item round-trip version"))
    add_queue_commands(commands)
    _cli_admin.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (``delayq``, ``python -m delayq``).

    Args:
        argv: The arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    if argv is None:
        args, program = sys.argv[1:], invocation()
    else:
        args, program = list(argv), ["delayq"]
    opts = build_parser().parse_args(args)
    if opts.command == "bench":
        return exit_status("delayq bench", lambda: bench.run(opts, shlex.join([*program, *args])))
    if opts.command in _cli_admin.COMMANDS:
        return exit_status(f"delayq {opts.command}", lambda: _cli_admin.run_command(opts))
    return exit_status(f"delayq {opts.command}", lambda: run_command(opts))
