"""The `delayq` commands that work on a queue: stats, peek, enqueue, cancel, dead, redrive, purge, worker."""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions

from . import aio
from ._errors import DelayqError
from ._sync import Queue
from ._types import DeadJob, PendingJob
from ._worker import Worker

__all__ = ["COMMANDS", "CliError", "add_queue_commands", "check_url", "checked_client"]

DEFAULT_URL = "redis://localhost:6379/0"


class CliError(Exception):
    """A one-line error for the user; ``code`` is the exit status (1 runtime, 2 usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def resolve_url(explicit: str | None) -> str:
    """--url, else $DELAYQ_REDIS_URL, else $REDIS_URL, else localhost."""
    return explicit or os.environ.get("DELAYQ_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_URL


def check_url(url: str) -> str:
    """Reject a URL redis-py cannot parse, with a one-line reason.

    Raises:
        CliError: Not a redis://, rediss:// or unix:// URL (exit 2).
    """
    try:
        redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise CliError(f"bad Redis URL {url!r}: {exc}", 2) from exc
    return url


def checked_client(url: str, *, cluster: bool = False) -> Any:
    """A sync client for ``url`` (a RedisCluster with ``cluster``) that has answered PING.

    Raises:
        CliError: A malformed URL (exit 2) or a server that does not answer (exit 1).
    """
    check_url(url)
    try:
        client: Any
        if cluster:
            client = redis.cluster.RedisCluster.from_url(url, socket_connect_timeout=3)
        else:
            client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
        # RedisClusterException (e.g. --cluster on a standalone server) is not a RedisError
        raise CliError(f"cannot reach Redis at {url}: {exc}") from exc
    return client


def connect(args: argparse.Namespace) -> Any:
    """The checked client for the command's --url / --cluster (see :func:`resolve_url`)."""
    return checked_client(resolve_url(args.url), cluster=args.cluster)


def open_queue(args: argparse.Namespace) -> Queue:
    """The queue the command names, on a checked connection."""
    return Queue(
        connect(args), args.queue, prefix=args.prefix, max_attempts=getattr(args, "max_attempts", None), shards=args.shards
    )


def iso(ms: int) -> str:
    """A server-clock time in ms as an ISO 8601 UTC string."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def payload_fields(payload: bytes) -> dict[str, str]:
    """A payload for JSON: as text when it is UTF-8, else base64."""
    try:
        return {"payload": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payload_base64": base64.b64encode(payload).decode("ascii")}


def preview(payload: bytes, width: int = 60) -> str:
    """A one-line look at a payload for tables."""
    text = repr(payload)[2:-1]
    return text if len(text) <= width else text[: width - 3] + "..."


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print JSON with --json, else the human text."""
    print(json.dumps(data, indent=2) if args.json else text)


# ---------------------------------------------------------------- commands


def cmd_stats(args: argparse.Namespace) -> int:
    stats = open_queue(args).stats()
    data = {"queue": args.queue, "ready": stats.ready, "delayed": stats.delayed, "in_flight": stats.in_flight, "dead": stats.dead}
    emit(args, data, "\n".join(f"{k:<10}{v}" for k, v in data.items()))
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
    handler = load_handler(args.handler)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings: dict[str, Any] = {
        "concurrency": args.concurrency,
        "lock_ttl": args.lock_ttl,
        "poll": args.poll,
        "grace": args.grace,
        "timeout": args.timeout or None,
    }
    queue = open_queue(args)  # checks the connection, and the queue's arguments
    if inspect.iscoroutinefunction(handler):
        queue._client.close()
        return asyncio.run(_run_async_worker(args, handler, settings))
    stats = Worker(queue, handler, **settings).run()
    print(json.dumps(vars(stats)) if args.json else f"stopped: {stats}")
    # running handlers given back on a hard stop may still be in their daemon threads: do not wait for them
    sys.stdout.flush()
    os._exit(0)


async def _run_async_worker(args: argparse.Namespace, handler: Callable[..., Any], settings: dict[str, Any]) -> int:
    url = resolve_url(args.url)
    client: Any = redis.asyncio.cluster.RedisCluster.from_url(url) if args.cluster else redis.asyncio.Redis.from_url(url)
    queue = aio.Queue(client, args.queue, prefix=args.prefix, max_attempts=args.max_attempts, shards=args.shards)
    stats = await aio.Worker(queue, handler, **settings).run()
    print(json.dumps(vars(stats)) if args.json else f"stopped: {stats}")
    await client.aclose()
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
    p = commands.add_parser("worker", parents=[common], help="run a worker: call module:function for every job")
    p.add_argument("handler", help="module:function, called with each Job (async def runs on asyncio)")
    p.add_argument("queue", help="the queue's name")
    p.add_argument("--concurrency", type=_count, default=8, help="handlers at once (default 8)")
    p.add_argument(
        "--lock-ttl", type=_seconds, default=30.0, help="lock length in seconds, kept alive while running (default 30)"
    )
    p.add_argument("--max-attempts", type=_count, default=None, help="dead-letter after this many claims (default never)")
    p.add_argument("--poll", type=_seconds, default=1.0, help="longest long-poll wait when idle (default 1)")
    p.add_argument("--grace", type=_seconds, default=30.0, help="seconds running jobs get to finish on SIGTERM (default 30)")
    p.add_argument(
        "--timeout", type=_seconds, default=300.0, help="seconds a handler may run before it fails (default 300; 0 = no limit)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default info")


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
