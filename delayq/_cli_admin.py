"""The `delayq` commands that look into queues and steer them: show, pause, resume, queues, web, exporter."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import redis

from ._cli_base import CliError, connect, emit, iso, open_queue, payload_fields, resolve_url
from ._discover import find_queues
from ._errors import DelayqError
from ._inspect import QueueRef
from ._sync import Queue

__all__ = ["COMMANDS", "add_commands", "run_command"]

EXPORTER_PORT = 9640
"""`delayq exporter`'s default port."""


def cmd_show(args: argparse.Namespace) -> int:
    job = open_queue(args).get(args.id)
    if job is None:
        emit(args, {"id": args.id, "found": False}, f"no job {args.id!r} in queue {args.queue!r}")
        return 1
    when = {"ready": "due", "delayed": "due", "in_flight": "lock_expires", "dead": "died"}[job.state]
    data = {
        "id": job.id,
        "found": True,
        "state": job.state,
        when: iso(job.at_ms),
        f"{when}_ms": job.at_ms,
        "attempts": job.attempts,
        "error": job.error,
        "payload_size": job.payload_size,
        **payload_fields(job.payload),
    }
    shown = data.get("payload", f"(base64) {data.get('payload_base64')}")
    lines = [f"{'id':<14}{job.id}", f"{'state':<14}{job.state}", f"{when:<14}{iso(job.at_ms)}"]
    lines += [f"{'attempts':<14}{job.attempts}", f"{'error':<14}{job.error or '-'}", f"{'payload':<14}{shown}"]
    emit(args, data, "\n".join(lines))
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    changed = open_queue(args).pause()
    emit(
        args,
        {"queue": args.queue, "paused": True, "changed": changed},
        f"{args.queue}: paused" + ("" if changed else " (already)"),
    )
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    changed = open_queue(args).resume()
    emit(
        args,
        {"queue": args.queue, "paused": False, "changed": changed},
        f"{args.queue}: resumed" + ("" if changed else " (was not paused)"),
    )
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    client = connect(args)
    rows = []
    for ref in find_queues(client, prefix=args.prefix):
        s = Queue(client, ref.name, prefix=args.prefix, shards=ref.shards).stats()
        rows.append({"queue": ref.name, "shards": ref.shards, **_stats(s)})
    if not rows:
        emit(args, [], "(no queues)")
        return 0
    header = f"{'queue':<30} {'shards':>6} {'ready':>9} {'delayed':>9} {'in_flight':>9} {'dead':>9} {'oldest_ready':>12}  paused"
    lines = [header] + [
        f"{r['queue']:<30} {r['shards']:>6} {r['ready']:>9} {r['delayed']:>9} {r['in_flight']:>9} {r['dead']:>9} "
        f"{r['oldest_ready_age']:>11.3f}s  {'yes' if r['paused'] else 'no'}"
        for r in rows
    ]
    emit(args, rows, "\n".join(lines))
    return 0


def _stats(s: Any) -> dict[str, Any]:
    return {
        "ready": s.ready,
        "delayed": s.delayed,
        "in_flight": s.in_flight,
        "dead": s.dead,
        "oldest_ready_age": s.oldest_ready_age,
        "paused": s.paused,
    }


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _queue_refs(specs: list[str] | None) -> list[QueueRef] | None:
    """--queue NAME or NAME/SHARDS, as QueueRefs (None when none are given)."""
    if not specs:
        return None
    refs = []
    for spec in specs:
        name, slash, shards = spec.rpartition("/")
        if slash and shards.isdigit():
            refs.append(QueueRef(name, int(shards)))
        else:
            refs.append(QueueRef(spec))
    return refs


def cmd_web(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: PLC0415  (the web extra is optional)

        from .web import create_app  # noqa: PLC0415
    except ImportError as exc:
        raise CliError(f"the dashboard needs the web extra: pip install 'delayq[web]' ({exc})", 2) from exc
    connect(args).close()  # a clear error now rather than on the first page
    anyone = not (os.environ.get("DELAYQ_WEB_USERNAME") and os.environ.get("DELAYQ_WEB_PASSWORD"))
    if anyone and not args.read_only and not _loopback(args.host) and not args.no_auth:
        raise CliError(
            f"refusing to let anyone on the network act on the queues (--host {args.host}): set DELAYQ_WEB_USERNAME "
            "and DELAYQ_WEB_PASSWORD, or pass --read-only, or --no-auth if something in front of it authenticates",
            2,
        )
    app = create_app(
        resolve_url(args.url),
        cluster=args.cluster,
        prefix=args.prefix,
        read_only=args.read_only,
        queues=_queue_refs(args.queue),
        refresh=args.refresh,
    )
    print(f"delayq web: http://{args.host}:{args.port}{args.root_path}/", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, root_path=args.root_path, log_level=args.log_level, access_log=False)
    return 0


def cmd_exporter(args: argparse.Namespace) -> int:
    try:
        from prometheus_client import start_http_server  # noqa: PLC0415  (the prometheus extra is optional)
        from prometheus_client.registry import CollectorRegistry  # noqa: PLC0415

        from .metrics import QueueCollector  # noqa: PLC0415
    except ImportError as exc:
        raise CliError(f"the exporter needs the prometheus extra: pip install 'delayq[prometheus]' ({exc})", 2) from exc
    client = connect(args)
    collector = QueueCollector(client, prefix=args.prefix, queues=_queue_refs(args.queue))
    registry = _exporter_registry(collector, CollectorRegistry)
    server, _ = start_http_server(args.port, addr=args.host, registry=registry)
    print(f"delayq exporter: http://{args.host}:{server.server_port}/metrics", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0


def _exporter_registry(collector: Any, registry_type: Callable[..., Any]) -> Any:
    """The exporter's registry: the queue gauges, and the workers' metrics from PROMETHEUS_MULTIPROC_DIR."""
    from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

    registry = registry_type(auto_describe=False)
    registry.register(collector)
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    return registry


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "show": cmd_show,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "queues": cmd_queues,
    "web": cmd_web,
    "exporter": cmd_exporter,
}


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0-65535), got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0.2 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0.2 and 3600 seconds, got {text!r}")
    return value


def add_commands(commands: Any) -> None:
    """Add these commands to the `delayq` parser's subcommands (the options match the queue commands')."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", help="Redis URL (default $DELAYQ_REDIS_URL, else $REDIS_URL, else redis://localhost:6379/0)")
    server.add_argument("--cluster", action="store_true", help="the URL is a Redis Cluster node")
    server.add_argument("--prefix", default="delayq", help="key prefix (default delayq)")
    common = argparse.ArgumentParser(add_help=False, parents=[server])
    common.add_argument("--json", action="store_true", help="machine-readable output")
    named = argparse.ArgumentParser(add_help=False, parents=[common])
    named.add_argument("queue", help="the queue's name")
    named.add_argument("--shards", type=int, default=1, help="the queue's shard count (default 1)")

    p = commands.add_parser("show", parents=[named], help="look up one job: state, time, attempts, error, payload")
    p.add_argument("id", help="the job's id")
    commands.add_parser("pause", parents=[named], help="stop workers from claiming (enqueues go on)")
    commands.add_parser("resume", parents=[named], help="let workers claim again")
    commands.add_parser("queues", parents=[common], help="list the queues on the server (every node of a cluster)")
    only = "show only this queue (NAME, or NAME/SHARDS for a sharded one); repeatable; default every queue found"
    p = commands.add_parser("web", parents=[server], help="serve the dashboard (needs the web extra)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    p.add_argument("--read-only", action="store_true", help="no actions: look only")
    p.add_argument("--no-auth", action="store_true", help="allow actions without credentials on a non-loopback --host")
    p.add_argument("--root-path", default="", help="the path it is served under behind a proxy, e.g. /delayq")
    p.add_argument("--refresh", type=_seconds, default=2.0, help="seconds between the counts' refreshes (default 2)")
    p.add_argument("--queue", action="append", help=only)
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"], help="default warning")
    p = commands.add_parser(
        "exporter", parents=[server], help="serve Prometheus metrics at /metrics (needs the prometheus extra)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=EXPORTER_PORT, help=f"port (default {EXPORTER_PORT})")
    p.add_argument("--queue", action="append", help=only)


def run_command(args: argparse.Namespace) -> int:
    """Run one of these commands, turning bad values into one-line errors.

    Raises:
        CliError: For the user to read (exit status in ``code``).
    """
    try:
        return COMMANDS[args.command](args)
    except DelayqError as exc:
        raise CliError(str(exc), 2) from exc
    except redis.RedisError as exc:
        raise CliError(f"Redis error: {exc}") from exc
