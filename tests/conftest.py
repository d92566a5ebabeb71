"""Fixtures: the backends of the behaviour suite, fakeredis[lua] and a real redis-server, sync and async.

A real server is the one at $DELAYQ_REDIS_URL, or a private redis-server started
on a free loopback port. Without one, real-server tests are skipped, or fail when
DELAYQ_REQUIRE_REDIS=1 (as in CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from delayq._server import RedisCluster, RedisServer, ServerUnavailable
from tests.helpers import Env, no_server


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


def given_url(variable: str) -> str | None:
    """The server named in the environment, for this process: under pytest-xdist only the first
    worker uses it and the others start private ones, since tests flush scripts and set server-wide
    configuration that would disturb another worker's tests on a shared server."""
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
        return None
    return os.environ.get(variable) or None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a real Redis: $DELAYQ_REDIS_URL, or a private redis-server for the session."""
    url = given_url("DELAYQ_REDIS_URL")
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
    url = given_url("DELAYQ_CLUSTER_URL")
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
