"""Backends for the behaviour suite: fakeredis[lua] and a real redis-server, sync and async.

A real server is the one at $DELAYQ_REDIS_URL, or a private redis-server started
on a free loopback port. Without one, real-server tests are skipped, or fail when
DELAYQ_REQUIRE_REDIS=1 (as in CI).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

import delayq
import delayq.aio
from delayq._server import RedisCluster, RedisServer, ServerUnavailable

REQUIRE = os.environ.get("DELAYQ_REQUIRE_REDIS") == "1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="run the long forms of the slow tests")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--slow"):
        os.environ["DELAYQ_SLOW"] = "1"  # one switch for the long forms (the model check reads it)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow") or os.environ.get("DELAYQ_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long form: run with --slow or DELAYQ_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def no_server(reason: str) -> None:
    """Skip for lack of a server, or fail when the environment requires one."""
    if REQUIRE:
        pytest.fail(f"DELAYQ_REQUIRE_REDIS=1 but {reason}")
    pytest.skip(f"{reason}; install redis-server (apt-get install redis-server) or set DELAYQ_REDIS_URL")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a real Redis: $DELAYQ_REDIS_URL, or a private redis-server for the session."""
    url = os.environ.get("DELAYQ_REDIS_URL")
    if url:
        yield url
        return
    try:
        server = RedisServer().start()
    except ServerUnavailable as exc:
        no_server(str(exc))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A node of a real Redis Cluster: $DELAYQ_CLUSTER_URL, or a local 3-master, 3-replica cluster."""
    url = os.environ.get("DELAYQ_CLUSTER_URL")
    if url:
        yield url
        return
    try:
        cluster = RedisCluster().start()
    except ServerUnavailable as exc:
        no_server(str(exc))
    try:
        yield cluster.url
    finally:
        cluster.stop()


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


@pytest.fixture(params=["fake", "real", "cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def env(backend: str, api: str, request: pytest.FixtureRequest) -> Iterator[Env]:
    """The behaviour suite's fixture: every test using it runs on fakeredis and a real server, sync and async."""
    if backend == "fake":
        server = fakeredis.FakeServer()
        raw: redis.Redis = fakeredis.FakeRedis(server=server)
        e = Env(backend, api, raw, lambda: fakeredis.FakeAsyncRedis(server=server))
    elif backend == "real":
        url = request.getfixturevalue("redis_url")
        raw = redis.Redis.from_url(url)
        e = Env(backend, api, raw, lambda: redis.asyncio.Redis.from_url(url))
    else:
        url = request.getfixturevalue("cluster_url")
        raw = redis.cluster.RedisCluster.from_url(url)  # type: ignore[assignment]
        e = Env(backend, api, raw, lambda: redis.asyncio.cluster.RedisCluster.from_url(url))
    try:
        yield e
    finally:
        e.close()
        raw.close()


@pytest.fixture
def raw_client(backend: str, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A plain sync client on fakeredis or the real server, for tests of sync-only code."""
    client: redis.Redis
    if backend == "fake":
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    elif backend == "real":
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    else:
        client = redis.cluster.RedisCluster.from_url(request.getfixturevalue("cluster_url"))  # type: ignore[assignment]
    yield client
    client.close()
