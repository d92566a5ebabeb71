"""The `delayq` commands that look into queues and steer them: show, pause, resume, queues; and the
parser of these and of the serving commands, web and exporter (which live in ``_cli_serve``)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

import redis

from ._cli_base import CliError, connect, emit, iso, max_attempts_of, payload_fields
from ._cli_serve import EXPORTER_PORT, cmd_exporter, cmd_web
from ._discover import find_queues, queues_from_keys
from ._errors import DelayqError, ScriptError
from ._sync import Queue

__all__ = ["COMMANDS", "add_commands", "run_command"]


def shown(text: str) -> str:
    """Text for a terminal: control characters (escape sequences, bells, carriage returns,
    bidi overrides) written as ``\\xNN`` / ``\\uNNNN``, so a job's id, payload or error cannot
    move the cursor, recolour, retitle or clear the operator's terminal."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _glob(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def shard_counts(client: Any, prefix: str, name: str) -> list[int]:
    """The shard counts a queue ``name`` has keys under (1 = the plain queue), by SCAN.

    Cost: two SCAN walks of the keyspace (every primary of a cluster), MATCHing this name only.
    """
    keys: list[bytes] = []
    for pattern in (f"{_glob(prefix)}:{{{_glob(name)}}}:*", f"{_glob(prefix)}:{{{_glob(name)}:*}}:shard-*"):
        keys += client.scan_iter(match=pattern, count=1000)
    return sorted({ref.shards for ref in queues_from_keys(keys, prefix) if ref.name == name})


def open_named(args: argparse.Namespace) -> Queue:
    """The queue the command names; without --shards, the shard count its keys show.

    Raises:
        CliError: Without --shards, when the name has keys as a plain and a sharded queue,
            or as sharded queues of several counts (exit 2).
    """
    client = connect(args)
    shards = args.shards
    if shards is None:
        counts = shard_counts(client, args.prefix, args.queue)
        if len(counts) > 1:
            held = ", ".join("plain" if n == 1 else f"{n} shards" for n in counts)
            raise CliError(f"queue '{shown(args.queue)}' has jobs as more than one queue ({held}): pass --shards N", 2)
        shards = counts[0] if counts else 1
        args.shards = shards
    return Queue(client, args.queue, prefix=args.prefix, max_attempts=max_attempts_of(args), shards=shards)


def _named(args: argparse.Namespace) -> str:
    name = shown(args.queue)
    return name if args.shards in (None, 1) else f"{name} ({args.shards} shards)"


SHOWN_PAYLOAD_BYTES = 4096
"""How much of a payload `delayq show` prints (--json gives all of it)."""


def _whole_utf8(data: bytes) -> int:
    """How many bytes of ``data`` end on a character boundary (cut at most 3 bytes short)."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            data[:cut].decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.reason != "unexpected end of data":
                return len(data)
            continue
        return cut
    return len(data)


def cmd_show(args: argparse.Namespace) -> int:
    job = open_named(args).get(args.id, preview=None if args.json else SHOWN_PAYLOAD_BYTES)
    if job is None:
        emit(args, {"id": args.id, "found": False}, f"no job '{shown(args.id)}' in queue '{_named(args)}'")
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
    # a cut can split a character: the whole characters before it still read as text
    head = job.payload[: _whole_utf8(job.payload)] if job.truncated else job.payload
    payload = payload_fields(head).get("payload", f"(base64) {data.get('payload_base64')}")
    lines = [f"{'id':<14}{shown(job.id)}", f"{'state':<14}{job.state}", f"{when:<14}{iso(job.at_ms)}"]
    lines += [f"{'attempts':<14}{job.attempts}", f"{'error':<14}{shown(job.error or '-')}"]
    cut = f" ... ({job.payload_size} bytes; --json shows all)" if job.truncated else ""
    lines += [f"{'payload':<14}{shown(str(payload))}{cut}"]
    emit(args, data, "\n".join(lines))
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    changed = open_named(args).pause()
    emit(
        args,
        {"queue": args.queue, "shards": args.shards, "paused": True, "changed": changed},
        f"{_named(args)}: paused" + ("" if changed else " (already)"),
    )
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    changed = open_named(args).resume()
    emit(
        args,
        {"queue": args.queue, "shards": args.shards, "paused": False, "changed": changed},
        f"{_named(args)}: resumed" + ("" if changed else " (was not paused)"),
    )
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    client = connect(args)
    rows: list[dict[str, Any]] = []
    for ref in find_queues(client, prefix=args.prefix):
        try:
            s = Queue(client, ref.name, prefix=args.prefix, shards=ref.shards).stats()
        except ScriptError as exc:  # a key of this name holds something else: the other queues still show
            rows.append({"queue": ref.name, "shards": ref.shards, "error": str(exc)})
            continue
        rows.append({"queue": ref.name, "shards": ref.shards, **_stats(s)})
    if not rows:
        emit(args, [], "(no queues)")
        return 0
    header = f"{'queue':<30} {'shards':>6} {'ready':>9} {'delayed':>9} {'in_flight':>9} {'dead':>9} {'oldest_ready':>12}  paused"
    lines = [header]
    for r in rows:
        head = f"{shown(r['queue']):<30} {r['shards']:>6} "
        if "error" in r:
            lines.append(head + f"error: {shown(r['error'])}")
            continue
        lines.append(
            head + f"{r['ready']:>9} {r['delayed']:>9} {r['in_flight']:>9} {r['dead']:>9} "
            f"{r['oldest_ready_age']:>11.3f}s  {'yes' if r['paused'] else 'no'}"
        )
    emit(args, rows, "\n".join(lines))
    return 1 if any("error" in r for r in rows) else 0


def _stats(s: Any) -> dict[str, Any]:
    return {
        "ready": s.ready,
        "delayed": s.delayed,
        "in_flight": s.in_flight,
        "dead": s.dead,
        "oldest_ready_age": s.oldest_ready_age,
        "paused": s.paused,
    }


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
    named.add_argument("--shards", type=int, default=None, help="the queue's shard count (default: as its keys show, by a SCAN)")

    p = commands.add_parser("show", parents=[named], help="look up one job: state, time, attempts, error, payload")
    p.add_argument("id", help="the job's id")
    commands.add_parser("pause", parents=[named], help="stop workers from claiming (enqueues go on)")
    commands.add_parser("resume", parents=[named], help="let workers claim again")
    commands.add_parser("queues", parents=[common], help="list the queues on the server (every node of a cluster)")
    only = (
        "show only this queue (NAME, or NAME/SHARDS for a sharded one; NAME/1 for a plain queue whose name ends in "
        "/digits); repeatable; default every queue found"
    )
    p = commands.add_parser("web", parents=[server], help="serve the dashboard (needs the web extra)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    p.add_argument("--read-only", action="store_true", help="no actions: look only")
    p.add_argument("--no-auth", action="store_true", help="allow actions without credentials on a non-loopback --host")
    p.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="a Host name the dashboard answers to besides loopback and --host (e.g. ops.example.com, *.internal); "
        "repeatable; default $DELAYQ_WEB_ALLOWED_HOSTS",
    )
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
