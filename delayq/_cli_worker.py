"""The `delayq` commands about workers: ``worker`` (run one, or ``--check`` that one could run)
and ``workers`` (list the live ones from their heartbeats).

Exit status as for every command: 0 success, 1 a runtime failure (Redis unreachable, the queue
not usable), 2 bad usage (a handler that does not import, a bad setting).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster

from . import aio
from ._cli_base import CliError, emit, iso, max_attempts_of, open_queue, resolve_url
from ._heartbeats import HEARTBEAT_TTL_S, heartbeat_entry
from ._sync import Queue
from ._validate import DEFAULT_MAX_ATTEMPTS
from ._worker import Worker
from .periodic import AsyncScheduler, Scheduler
from .tasks import Tasks

__all__ = ["add_commands", "cmd_worker", "cmd_workers", "import_user_module", "load_handler", "load_target", "worker_metrics"]


def cmd_worker(args: argparse.Namespace) -> int:
    target = load_target(args.handler)
    if args.check:
        return check(args)
    tasks: Tasks | None = None
    handler: Callable[..., Any]
    if isinstance(target, Tasks):
        tasks, handler = target, (target.arun if target.has_async else target.run)
    else:
        handler = target
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings: dict[str, Any] = {
        "concurrency": args.concurrency,
        "prefetch": args.prefetch,
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


def check(args: argparse.Namespace) -> int:
    """``worker --check``: the handler imports (done by the caller), Redis answers, and the queue can
    be read (its scripts run) and written (a heartbeat entry is written and removed). For a
    container's health probe, as arq and saq have.

    Raises:
        CliError: What is wrong, in one line (exit 1).
    """
    queue = open_queue(args)  # a malformed URL or no answer: CliError
    probe = f"check:{uuid.uuid4().hex[:12]}"
    try:
        stats = queue.stats()
        queue.heartbeat(probe, heartbeat_entry(0, {}, time.time(), time.time(), ttl=1.0), HEARTBEAT_TTL_S)
        queue.remove_heartbeat(probe)
        live = queue.workers()
    except redis.ReadOnlyError as exc:
        raise CliError(f"queue {args.queue!r} is not usable: the server is a read-only replica ({exc})") from exc
    except redis.RedisError as exc:
        raise CliError(f"queue {args.queue!r} is not usable: {type(exc).__name__}: {exc}") from exc
    data = {"ok": True, "queue": args.queue, "ready": stats.ready, "in_flight": stats.in_flight, "workers": len(live)}
    emit(
        args,
        data,
        f"ok: queue {args.queue!r} is usable ({stats.ready} ready, {stats.in_flight} in flight, {len(live)} live workers)",
    )
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    queue: Queue = open_queue(args)
    now = time.time()
    workers = queue.workers()
    data = [
        {
            "id": w.id,
            "host": w.host,
            "pid": w.pid,
            "concurrency": w.concurrency,
            "started": iso(int(w.started * 1000)),
            "last_seen_s_ago": round(max(0.0, now - w.last_seen), 1),
            "counters": w.counters,
        }
        for w in workers
    ]
    lines = [
        f"{w.id}  host={w.host}  pid={w.pid}  concurrency={w.concurrency}  started={iso(int(w.started * 1000))}  "
        f"seen {max(0.0, now - w.last_seen):.0f}s ago  "
        + " ".join(f"{k}={v}" for k, v in w.counters.items() if v or k == "processed")
        for w in workers
    ]
    emit(args, data, "\n".join(lines) or f"(no live workers on queue {args.queue!r})")
    return 0


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


def load_handler(spec: str) -> Callable[..., Any]:
    """Import ``module:function`` (the current directory is importable, as for python -m).

    Raises:
        CliError: The spec is malformed, the module does not import, or the name is not callable.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CliError(f"the handler must be given as module:function, got {spec!r}", 2)
    handler = getattr(import_user_module(module_name), attr, None)
    if not callable(handler):
        raise CliError(f"{spec!r} is not a callable in {module_name!r}", 2)
    return handler  # type: ignore[no-any-return]


def import_user_module(module_name: str) -> Any:
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
    module = import_user_module(module_name)
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


def add_commands(
    commands: Any,
    common: argparse.ArgumentParser,
    named: argparse.ArgumentParser,
    count: Callable[[str], int],
    seconds: Callable[[str], float],
) -> None:
    """Add ``worker`` and ``workers`` to the `delayq` parser's subcommands (``common``: the
    connection options; ``named``: those and the queue's name; ``count``, ``seconds``: the
    argument types)."""
    p = commands.add_parser("worker", parents=[common], help="run a worker: call module:function, or the tasks, for every job")
    p.add_argument(
        "handler",
        help="module:function, called with each Job (async def runs on asyncio); or a module holding a "
        "delayq.tasks.Tasks (or module:NAME of one), whose tasks it runs and whose periodic jobs it schedules",
    )
    p.add_argument("queue", help="the queue's name")
    p.add_argument(
        "--check",
        action="store_true",
        help="do not run: import the handler, check that Redis answers and the queue can be read and written, "
        "and exit (0 usable, 1 not, 2 bad usage): a health probe",
    )
    p.add_argument("--concurrency", type=count, default=8, help="handlers at once (default 8)")
    p.add_argument(
        "--prefetch",
        type=count,
        default=None,
        help="most claimed jobs waiting for a handler (0-1000; default: about 50 ms of work, up to 1000)",
    )
    p.add_argument("--lock-ttl", type=seconds, default=30.0, help="lock length in seconds, kept alive while running (default 30)")
    p.add_argument(
        "--max-attempts",
        type=count,
        default=DEFAULT_MAX_ATTEMPTS,
        help=f"dead-letter after this many claims (default {DEFAULT_MAX_ATTEMPTS}; 0 = never)",
    )
    p.add_argument("--no-scheduler", action="store_true", help="do not enqueue the tasks' periodic jobs from this process")
    p.add_argument("--poll", type=seconds, default=1.0, help="longest long-poll wait when idle (default 1)")
    p.add_argument("--grace", type=seconds, default=30.0, help="seconds running jobs get to finish on SIGTERM (default 30)")
    p.add_argument(
        "--timeout", type=seconds, default=300.0, help="seconds a handler may run before it fails (default 300; 0 = no limit)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default info")
    p.add_argument(
        "--metrics",
        action="store_true",
        help="count job outcomes in Prometheus metrics (the prometheus extra; several processes: PROMETHEUS_MULTIPROC_DIR)",
    )
    commands.add_parser(
        "workers",
        parents=[named],
        help="list a queue's live workers (host, pid, concurrency, counters) from their heartbeats",
        description=f"List a queue's live workers from their heartbeats; a worker that died is gone from the "
        f"list within {HEARTBEAT_TTL_S:.0f} s.",
    )
