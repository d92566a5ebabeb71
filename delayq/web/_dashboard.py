"""The dashboard's state: its Redis clients, the queues it has opened, the queues it found, its templates."""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jinja2
import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.exceptions import RedisClusterException
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse

from .. import aio
from .._discover import afind_queues
from .._errors import DelayqError
from .._heartbeats import WorkerInfo, live_workers, workers_key
from .._inspect import STATES, QueueRef
from .._types import QueueStats
from . import _format
from ._params import link
from ._security import CSRF_COOKIE, csrf_nonce, csrf_token
from ._settings import WebSettings

__all__ = ["MAX_CONCURRENT_CALLS", "MAX_OPEN_QUEUES", "REDIS_FAILURES", "Dashboard", "QueueRow"]

HERE = Path(__file__).resolve().parent

MAX_OPEN_QUEUES = 256
"""Queue objects kept per client, least recently used dropped first: a URL can name any
queue, and a page per made-up name must not grow the process without end."""

REDIS_FAILURES: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException, OSError)
"""What a Redis that is down, unreachable or refusing raises (OSError covers ConnectionError)."""

QueueRow = tuple[QueueRef, "QueueStats | str"]
"""A queue and its stats, or the reason they could not be read."""


MAX_CONCURRENT_CALLS = 8
"""Calls one page sends at once: a list of 1000 queues must not open 100 connections per refresh."""


class _Connection:
    """One client, the queues opened on it (a queue belongs to its client), and its loop's locks."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.queues: OrderedDict[QueueRef, aio.Queue] = OrderedDict()
        self.calls = asyncio.Semaphore(MAX_CONCURRENT_CALLS)
        self.discovering = asyncio.Lock()  # one SCAN walk at a time, however many pages wait for it


class Dashboard:
    """The app's state: clients, queues, the list of queues found, the templates.

    Args:
        settings: The checked settings.
    """

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.given = None if isinstance(settings.client, str) else _Connection(settings.client)
        self.made: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Connection] = weakref.WeakKeyDictionary()
        self.found: tuple[float, list[QueueRef]] = (-math.inf, [])
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every value is text: a payload like <script> is shown, never run
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(iso=_format.iso, duration=_format.duration, age=_format.age, preview=_format.preview)
        self.templates.globals.update(
            relative=_format.relative, since=_format.since, payload_view=_format.payload_view, STATES=STATES
        )

    # -- Redis

    def connection(self) -> _Connection:
        """The client for the running event loop (a redis.asyncio client belongs to one loop)."""
        if self.given is not None:
            return self.given
        loop = asyncio.get_running_loop()
        made = self.made.get(loop)
        if made is None:
            url, timeout = self.settings.client, self.settings.timeout
            # a Redis that stops answering becomes a 503 page, not a page (and a refresh) that hangs
            if self.settings.cluster:
                client: Any = redis.asyncio.cluster.RedisCluster.from_url(
                    url, socket_timeout=timeout, socket_connect_timeout=timeout
                )
            else:
                client = redis.asyncio.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            made = _Connection(client)
            self.made[loop] = made
        return made

    def client(self) -> Any:
        """The Redis client for the running event loop."""
        return self.connection().client

    def queue(self, ref: QueueRef) -> aio.Queue:
        """The queue object for a ref (kept: a sharded queue's tags take a moment to compute).

        Raises:
            InvalidArgument: A bad name or shard count.
        """
        connection = self.connection()
        queue = connection.queues.get(ref)
        if queue is None:
            queue = aio.Queue(connection.client, ref.name, prefix=self.settings.prefix, shards=ref.shards)
            connection.queues[ref] = queue
            if len(connection.queues) > MAX_OPEN_QUEUES:
                connection.queues.popitem(last=False)
        else:
            connection.queues.move_to_end(ref)
        return queue

    async def aclose(self) -> None:
        """Close the clients this app made from a URL (a client given to it is the caller's to close)."""
        made, self.made = list(self.made.values()), weakref.WeakKeyDictionary()
        if self.given is not None:
            self.given.queues.clear()
        for connection in made:
            await connection.client.aclose()

    async def refs(self) -> list[QueueRef]:
        """The queues to show: those configured, else those found by SCAN (kept ``discover_every`` s)."""
        if self.settings.refs is not None:
            return list(self.settings.refs)
        connection = self.connection()
        async with connection.discovering:
            found_at, found = self.found
            if time.monotonic() - found_at >= self.settings.discover_every:
                found = await afind_queues(connection.client, prefix=self.settings.prefix)
                self.found = (time.monotonic(), found)
        return found

    async def known(self, ref: QueueRef) -> QueueRef:
        """The ref, when a sharded one is a queue this dashboard shows (configured or found).

        Opening a queue of N shards computes N hash tags (70 ms of CPU for 256), so a URL
        may not make one up: a sharded queue is found by SCAN once it holds anything.

        Raises:
            HTTPException: 404 for a sharded queue not configured nor found.
        """
        if ref.shards > 1 and ref not in await self.refs():
            raise HTTPException(404, f"no queue {ref.name!r} of {ref.shards} shards here (one is listed once it holds a job)")
        return ref

    async def all_stats(self, refs: list[QueueRef]) -> list[QueueRow]:
        """Each queue's stats (one script call per queue, per shard, concurrently), or why not.

        One queue whose keys hold something else (WRONGTYPE) shows its error in its own row;
        when every queue fails, Redis itself is down or refusing, and that is raised.

        Raises:
            redis.RedisError, RedisClusterException, OSError, ScriptError: No queue could be read.
        """

        calls = self.connection().calls

        async def one(ref: QueueRef) -> QueueStats:
            async with calls:
                return await self.queue(ref).stats()

        results = await asyncio.gather(*(one(ref) for ref in refs), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, (*REDIS_FAILURES, DelayqError)):
                raise failure  # a bug, or a cancellation: never shown as a row
        if failures and len(failures) == len(results):
            raise failures[0]
        return [
            (ref, f"{type(r).__name__}: {r}"[:300] if isinstance(r, BaseException) else r)
            for ref, r in zip(refs, results, strict=True)
        ]

    async def workers(self, ref: QueueRef) -> list[WorkerInfo]:
        """The live workers of a queue, from its heartbeat hash (see delayq._heartbeats)."""
        connection = self.connection()
        async with connection.calls:
            raw = await connection.client.hgetall(workers_key(self.settings.prefix, ref.name, ref.shards))
        return live_workers(raw, time.time())

    # -- responses

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A page (or a fragment), with what every template needs; sets the CSRF cookie when new."""
        nonce, new = csrf_nonce(request)
        root = request.scope.get("root_path", "").rstrip("/")
        settings = self.settings
        html = self.templates.get_template(template).render(
            root=root,
            link=lambda path, **params: link(root, path, **params),
            csrf=csrf_token(settings.secret or b"", nonce),
            can_act=not settings.read_only,
            read_only=settings.read_only,
            signed_in=settings.auth.enabled and settings.auth.allows(request),
            auth_enabled=settings.auth.enabled,
            refresh=settings.refresh,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if new:
            response.set_cookie(
                CSRF_COOKIE,
                nonce,
                path=root or "/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    def challenge(self, request: Request) -> HTMLResponse:
        """401 with a basic-auth challenge: the browser asks for the credentials."""
        response = self.render(request, "error.html", 401, title="Sign in", problem="Sign in to see this page or to act.")
        response.headers["www-authenticate"] = 'Basic realm="delayq", charset="UTF-8"'
        return response

    def can_read(self, request: Request) -> bool:
        """Whether the request may see pages (anyone, with public_read or no credentials set)."""
        return bool(self.settings.public_read) or self.settings.auth.allows(request)
