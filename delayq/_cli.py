"""The `delayq` command line: its parser and :func:`main`, and the commands that work on a queue
(stats, peek, enqueue, cancel, dead, redrive, purge, worker); ``delayq bench`` is ``delayq.bench``.

Exit status: 0 success, 1 a runtime failure (e.g. Redis unreachable), 2 bad usage.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster

from . import __version__, _cli_admin, aio, bench
from ._cli_base import (
    DEFAULT_URL,
    CliError,
    emit,
    exit_status,
    invocation,
    iso,
    max_attempts_of,
    open_queue,
    payload_fields,
    preview,
    resolve_url,
)
from ._core import DEFAULT_MAX_ATTEMPTS
from ._errors import DelayqError
from ._types import DeadJob, PendingJob
from ._worker import Worker
from .periodic import AsyncScheduler, PeriodicJob, Scheduler
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


def load_handler(spec: str) -> Callable[..., Any]:
    """Import ``module:function`` (the current directory is importable, as for python -m).

    Raises:
        CliError: The spec is malformed, the module does not import, or the name is not callable.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CliError(f"the handler must be given as module:function, got {spec!r}", 2)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise CliError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}", 2) from exc
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise CliError(f"{spec!r} is not a callable in {module_name!r}", 2)
    return handler  # type: ignore[no-any-return]


def cmd_worker(args: argparse.Namespace) -> int:
    target = load_target(args.handler)
    tasks: Tasks | None = None
    handler: Callable[..., Any]
    if isinstance(target, Tasks):
        tasks, handler = target, (target.arun if target.has_async else target.run)
    else:
        handler = target
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings: dict[str, Any] = {
        "concurrency": args.concurrency,
        "lock_ttl": args.lock_ttl,
        "poll": args.poll,
        "grace": args.grace,
        "timeout": args.timeout or None,
    }
    if getattr(args, "metrics", False):
        settings["on_event"] = worker_metrics(args.queue)
    queue = open_queue(args)  # checks the connection, and the queue's arguments
    if inspect.iscoroutinefunction(handler):
        queue._client.close()
        return asyncio.run(_run_async_worker(args, handler, settings, tasks))
    scheduler = None
    if tasks is not None:
        tasks.bind(queue)  # tasks that enqueue tasks enqueue here
        if tasks.periodic_jobs and not args.no_scheduler:
            scheduler = Scheduler(queue, tasks.periodic_jobs).start()
    stats = Worker(queue, handler, **settings).run()
    if scheduler is not None:
        scheduler.stop()
    print(json.dumps(vars(stats)) if args.json else f"stopped: {stats}")
    # running handlers given back on a hard stop may still be in their daemon threads: do not wait for them
    sys.stdout.flush()
    os._exit(0)


def worker_metrics(queue: str) -> Callable[..., None]:
    """The Prometheus on_event hook for ``delayq worker --metrics``.

    Raises:
        CliError: The prometheus extra is not installed.
    """
    try:
        from .metrics import WorkerMetrics  # noqa: PLC0415  (the prometheus extra is optional)
    except ImportError as exc:
        raise CliError(f"--metrics needs the prometheus extra: pip install 'delayq[prometheus]' ({exc})", 2) from exc
    return WorkerMetrics(queue)


async def _run_async_worker(
    args: argparse.Namespace, handler: Callable[..., Any], settings: dict[str, Any], tasks: Tasks | None = None
) -> int:
    url = resolve_url(args.url)
    client: Any = redis.asyncio.cluster.RedisCluster.from_url(url) if args.cluster else redis.asyncio.Redis.from_url(url)
    queue = aio.Queue(client, args.queue, prefix=args.prefix, max_attempts=max_attempts_of(args), shards=args.shards)
    scheduler = None
    if tasks is not None:
        tasks.bind(queue)
        if tasks.periodic_jobs and not args.no_scheduler:
            scheduler = AsyncScheduler(queue, tasks.periodic_jobs).start()
    stats = await aio.Worker(queue, handler, **settings).run()
    if scheduler is not None:
        await scheduler.stop()
    print(json.dumps(vars(stats)) if args.json else f"stopped: {stats}")
    await client.aclose()
    return 0


# ---------------------------------------------------------------- tasks and periodic jobs


def _import(module_name: str) -> Any:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise CliError(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc} "
            "(give module:function, or a module that holds a delayq.tasks.Tasks)",
            2,
        ) from exc


def load_target(spec: str) -> Callable[..., Any] | Tasks:
    """What ``delayq worker`` runs: ``module:function`` (a handler), ``module:name`` naming a
    delayq.tasks.Tasks, or ``module`` holding exactly one Tasks.

    Raises:
        CliError: The module does not import, or holds no such thing (exit 2).
    """
    module_name, colon, attr = spec.partition(":")
    if not module_name or (colon and not attr):
        raise CliError(f"the handler must be given as module:function or a tasks module, got {spec!r}", 2)
    module = _import(module_name)
    if attr:
        target = getattr(module, attr, None)
        if isinstance(target, Tasks) or callable(target):
            return target
        raise CliError(f"{spec!r} is not a callable (nor a delayq.tasks.Tasks) in {module_name!r}", 2)
    found = {name: value for name, value in vars(module).items() if isinstance(value, Tasks)}
    if len({id(value) for value in found.values()}) == 1:  # one registry, maybe under two names
        return next(iter(found.values()))
    if not found:
        raise CliError(f"module {module_name!r} holds no delayq.tasks.Tasks; give module:function for a plain handler", 2)
    raise CliError(f"module {module_name!r} holds several Tasks ({', '.join(sorted(found))}): give {module_name}:NAME", 2)


def load_periodic(spec: str) -> list[PeriodicJob]:
    """The periodic jobs of a tasks module (``module`` or ``module:tasks``), or a list of PeriodicJob at ``module:name``.

    Raises:
        CliError: Nothing of the kind there (exit 2).
    """
    module_name, _, attr = spec.partition(":")
    if attr:
        value = getattr(_import(module_name), attr, None)
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
    "worker": cmd_worker,
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
    p = commands.add_parser("worker", parents=[common], help="run a worker: call module:function, or the tasks, for every job")
    p.add_argument(
        "handler",
        help="module:function, called with each Job (async def runs on asyncio); or a module holding a "
        "delayq.tasks.Tasks (or module:NAME of one), whose tasks it runs and whose periodic jobs it schedules",
    )
    p.add_argument("queue", help="the queue's name")
    p.add_argument("--concurrency", type=_count, default=8, help="handlers at once (default 8)")
    p.add_argument(
        "--lock-ttl", type=_seconds, default=30.0, help="lock length in seconds, kept alive while running (default 30)"
    )
    p.add_argument(
        "--max-attempts",
        type=_count,
        default=DEFAULT_MAX_ATTEMPTS,
        help=f"dead-letter after this many claims (default {DEFAULT_MAX_ATTEMPTS}; 0 = never)",
    )
    p.add_argument("--no-scheduler", action="store_true", help="do not enqueue the tasks' periodic jobs from this process")
    p.add_argument("--poll", type=_seconds, default=1.0, help="longest long-poll wait when idle (default 1)")
    p.add_argument("--grace", type=_seconds, default=30.0, help="seconds running jobs get to finish on SIGTERM (default 30)")
    p.add_argument(
        "--timeout", type=_seconds, default=300.0, help="seconds a handler may run before it fails (default 300; 0 = no limit)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default info")
    p.add_argument(
        "--metrics",
        action="store_true",
        help="count job outcomes in Prometheus metrics (the prometheus extra; several processes: PROMETHEUS_MULTIPROC_DIR)",
    )
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
