"""What the tests share besides fixtures: queue names, the skip for a missing server, and the
sync-over-async adapter that lets one behaviour test cover both APIs (fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
import redis

import delayq
import delayq.aio

__all__ = ["REQUIRE", "Env", "SyncOverAsync", "no_server", "unique_name"]

REQUIRE = os.environ.get("DELAYQ_REQUIRE_REDIS") == "1"


def no_server(reason: str) -> None:
    """Skip for lack of a server, or fail when the environment requires one."""
    if REQUIRE:
        pytest.fail(f"DELAYQ_REQUIRE_REDIS=1 but {reason}")
    pytest.skip(f"{reason}; install redis-server (apt-get install redis-server) or set DELAYQ_REDIS_URL")


_names = itertools.count()


def unique_name(prefix: str = "t") -> str:
    """A queue name no other test in this run uses (no FLUSHALL between tests)."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


class SyncOverAsync:
    """Presents a delayq.aio.Queue with the sync Queue's calling convention, so one suite covers both."""

    def __init__(self, queue: delayq.aio.Queue, loop: asyncio.AbstractEventLoop) -> None:
        self._queue = queue
        self._loop = loop

    @property
    def _core(self) -> Any:
        return self._queue._core

    def __getattr__(self, attr: str) -> Any:
        method = getattr(self._queue, attr)
        if not inspect.iscoroutinefunction(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(method(*args, **kwargs))

        return call


class Env:
    """One backend and one API flavour: makes queues, and gives a raw sync client to inspect Redis."""

    def __init__(self, backend: str, api: str, raw: redis.Redis, make_async_client: Callable[[], Any]) -> None:
        self.backend = backend
        self.api = api
        self.raw = raw
        self._make_async_client = make_async_client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_clients: list[Any] = []

    def queue(self, name: str | None = None, **kwargs: Any) -> Any:
        """A queue (sync API either way) on this backend; a fresh name unless one is given."""
        name = name or unique_name()
        if self.api == "sync":
            return delayq.Queue(self.raw, name, **kwargs)
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        client = self._make_async_client()
        self._async_clients.append(client)
        return SyncOverAsync(delayq.aio.Queue(client, name, **kwargs), self._loop)

    def close(self) -> None:
        if self._loop is not None:
            for client in self._async_clients:
                self._loop.run_until_complete(client.aclose())
            self._loop.close()
