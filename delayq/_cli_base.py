"""What every ``delayq`` command stands on: the queue and admin commands and the bench alike.

:class:`CliError`, the one-line error with its exit status; the checked connection
(:func:`check_url`, :func:`checked_client`); and :func:`exit_status`, which turns both
into what the user sees. A module of its own so that the CLI can import the bench and
the bench these, with no import circle.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import redis
import redis.cluster
import redis.exceptions

from ._sync import Queue
from ._validate import DEFAULT_MAX_ATTEMPTS

__all__ = [
    "DEFAULT_URL",
    "CliError",
    "check_url",
    "checked_client",
    "connect",
    "emit",
    "exit_status",
    "invocation",
    "iso",
    "max_attempts_of",
    "open_queue",
    "payload_fields",
    "preview",
    "resolve_url",
]


class CliError(Exception):
    """A one-line error for the user; ``code`` is the exit status (1 runtime, 2 usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


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


def exit_status(name: str, action: Callable[[], int]) -> int:
    """Run a command; a :class:`CliError` or Ctrl-C becomes one line on stderr, never a traceback.

    Args:
        name: How the error line names the command (``delayq stats``, ``benchmarks/scaling.py``).
        action: The command, returning its exit status.

    Returns:
        The exit status: the action's, the error's ``code``, or 130 on Ctrl-C.
    """
    try:
        return action()
    except CliError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


def invocation() -> list[str]:
    """How this process was started, as typed, without its arguments (for the bench's record).

    ``python3 -m delayq``, ``delayq`` (the console script, whose interpreter line is not
    what the user typed) or ``python3 benchmarks/scaling.py``.
    """
    interpreter = sys.orig_argv[: len(sys.orig_argv) - len(sys.argv)]  # the interpreter and its options
    if "-m" in interpreter:
        return sys.orig_argv[: len(interpreter) + 1]
    if sys.argv[0].endswith(".py"):
        return [*interpreter, sys.argv[0]]
    return [os.path.basename(sys.argv[0])]


DEFAULT_URL = "redis://localhost:6379/0"


def resolve_url(explicit: str | None) -> str:
    """--url, else $DELAYQ_REDIS_URL, else $REDIS_URL, else localhost."""
    return explicit or os.environ.get("DELAYQ_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_URL


def connect(args: argparse.Namespace) -> Any:
    """The checked client for the command's --url / --cluster (see :func:`resolve_url`)."""
    return checked_client(resolve_url(args.url), cluster=args.cluster)


def open_queue(args: argparse.Namespace) -> Queue:
    """The queue the command names, on a checked connection."""
    return Queue(connect(args), args.queue, prefix=args.prefix, max_attempts=max_attempts_of(args), shards=args.shards)


def max_attempts_of(args: argparse.Namespace) -> int | None:
    """--max-attempts, where 0 means never (None)."""
    return getattr(args, "max_attempts", DEFAULT_MAX_ATTEMPTS) or None


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
