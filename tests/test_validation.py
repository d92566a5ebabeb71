"""Bad input: a typed error naming the value, raised before anything is sent, the queue unchanged."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import fakeredis
import pytest
import redis

import delayq
import delayq.aio
from delayq import DelayqError, InvalidArgument, InvalidType, Job
from tests.conftest import Env
from tests.snapshots import snapshot

NAN = float("nan")
INF = float("inf")
STALE = Job("x", b"", 1, "tok", 0, 0)

# (method, args, kwargs, error class, text the message must contain)
BAD_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any], type[DelayqError], str]] = [
    ("enqueue", (123,), {}, InvalidType, "123"),
    ("enqueue", (None,), {}, InvalidType, "None"),
    ("enqueue", ("\ud800",), {}, InvalidArgument, "payload"),
    ("enqueue", (b"x",), {"delay": -1}, InvalidArgument, "-1"),
    ("enqueue", (b"x",), {"delay": NAN}, InvalidArgument, "nan"),
    ("enqueue", (b"x",), {"delay": INF}, InvalidArgument, "inf"),
    ("enqueue", (b"x",), {"delay": 10**12}, InvalidArgument, "1000000000000"),
    ("enqueue", (b"x",), {"delay": "5"}, InvalidType, "'5'"),
    ("enqueue", (b"x",), {"delay": True}, InvalidType, "True"),
    ("enqueue", (b"x",), {"delay": timedelta(seconds=-1)}, InvalidArgument, "timedelta"),
    ("enqueue", (b"x",), {"at": datetime(2030, 1, 1)}, InvalidArgument, "timezone"),
    ("enqueue", (b"x",), {"at": "2030-01-01"}, InvalidType, "2030-01-01"),
    ("enqueue", (b"x",), {"at": datetime(2030, 1, 1, tzinfo=timezone.utc), "delay": 5}, InvalidArgument, "delay=5"),
    ("enqueue", (b"x",), {"id": 42}, InvalidType, "42"),
    ("enqueue", (b"x",), {"id": ""}, InvalidArgument, "empty"),
    ("enqueue", (b"x",), {"id": "i" * 1025}, InvalidArgument, "1024"),
    ("enqueue", (b"x",), {"id": "\udcff"}, InvalidArgument, "job id"),
    ("enqueue_many", ([b"ok", 7],), {}, InvalidType, "7"),
    ("enqueue_many", (b"abc",), {}, InvalidType, "single"),
    ("enqueue_many", (5,), {}, InvalidType, "int"),
    ("enqueue_many", ([b"a", b"b"],), {"ids": ["only-one"]}, InvalidArgument, "ids has 1"),
    ("enqueue_many", ([b"a"],), {"ids": "a"}, InvalidType, "'a'"),
    ("enqueue_many", ([b"a", b"b"],), {"ids": ["a", None]}, InvalidType, "None"),
    ("dequeue", (0,), {}, InvalidArgument, "0"),
    ("dequeue", (1001,), {}, InvalidArgument, "1001"),
    ("dequeue", (1.5,), {}, InvalidType, "1.5"),
    ("dequeue", (True,), {}, InvalidType, "True"),
    ("dequeue", (1, 0), {}, InvalidArgument, "lock_ttl"),
    ("dequeue", (1, -3), {}, InvalidArgument, "-3"),
    ("dequeue", (1, NAN), {}, InvalidArgument, "nan"),
    ("dequeue", (1, 86400 * 2), {}, InvalidArgument, "172800"),
    ("dequeue", (1, None), {}, InvalidType, "None"),
    ("ack_and_dequeue", ([STALE, "job"], 1), {}, InvalidType, "'job'"),
    ("ack_and_dequeue", (STALE, 1), {}, InvalidType, "iterable"),
    ("ack", ("job-id",), {}, InvalidType, "job-id"),
    ("ack_many", ([STALE, 3],), {}, InvalidType, "3"),
    ("ack_many", ([Job(str(i), b"", 1, "t", 0, 0) for i in range(1001)],), {}, InvalidArgument, "1001"),
    ("nack", (STALE, -1), {}, InvalidArgument, "-1"),
    ("nack", (STALE,), {"error": 5}, InvalidType, "5"),
    ("nack", ({"id": "x"},), {}, InvalidType, "dict"),
    ("extend", (STALE, 0), {}, InvalidArgument, "lock_ttl"),
    ("release", ("job-id",), {}, InvalidType, "job-id"),
    ("release", ([STALE],), {}, InvalidType, "list"),
    ("extend", (STALE, INF), {}, InvalidArgument, "inf"),
    ("cancel", (None,), {}, InvalidType, "None"),
    ("cancel", ("",), {}, InvalidArgument, "empty"),
    ("reschedule", ("x",), {"delay": -0.5}, InvalidArgument, "-0.5"),
    ("reschedule", (7,), {}, InvalidType, "7"),
    ("peek", (0,), {}, InvalidArgument, "0"),
    ("peek", ("10",), {}, InvalidType, "'10'"),
    ("dead_letters", (5000,), {}, InvalidArgument, "5000"),
    ("redrive", ("abc",), {}, InvalidType, "'abc'"),
    ("redrive", ([1],), {}, InvalidType, "1"),
]


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "error", "text"), BAD_CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_CALLS)]
)
def test_bad_input_is_refused_and_changes_nothing(
    env: Env, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[DelayqError], text: str
) -> None:
    q = env.queue(max_attempts=3)
    q.enqueue_many([b"a", b"b"], ids=["a", "b"])
    q.enqueue(b"c", id="c", delay=60)
    (held,) = q.dequeue()
    before = snapshot(env.raw, q)
    with pytest.raises(error) as info:
        getattr(q, method)(*args, **kwargs)
    assert text in str(info.value)
    assert isinstance(info.value, ValueError if error is InvalidArgument else TypeError)
    assert snapshot(env.raw, q) == before
    assert q.ack(held)


BAD_QUEUES: list[tuple[dict[str, Any], type[DelayqError], str]] = [
    ({"name": ""}, InvalidArgument, "empty"),
    ({"name": "a{b"}, InvalidArgument, "a{b"),
    ({"name": "a}b"}, InvalidArgument, "a}b"),
    ({"name": "n" * 201}, InvalidArgument, "200"),
    ({"name": 5}, InvalidType, "5"),
    ({"name": b"bytes"}, InvalidType, "bytes"),
    ({"name": "ok", "prefix": ""}, InvalidArgument, "prefix"),
    ({"name": "ok", "prefix": "{x}"}, InvalidArgument, "{x}"),
    ({"name": "ok", "max_attempts": 0}, InvalidArgument, "max_attempts"),
    ({"name": "ok", "max_attempts": "3"}, InvalidType, "'3'"),
]


@pytest.mark.parametrize(("kwargs", "error", "text"), BAD_QUEUES)
@pytest.mark.parametrize("cls", [delayq.Queue, delayq.aio.Queue])
def test_bad_queue_arguments(cls: Any, kwargs: dict[str, Any], error: type[DelayqError], text: str) -> None:
    with pytest.raises(error) as info:
        cls(fakeredis.FakeRedis(), **kwargs)
    assert text in str(info.value)


def test_decoding_client_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="decode_responses"):
        delayq.Queue(fakeredis.FakeRedis(decode_responses=True), "q")
    with pytest.raises(InvalidType, match="redis-py client"):
        delayq.Queue("redis://localhost", "q")  # type: ignore[arg-type]


def test_limits_are_exported() -> None:
    assert delayq.MAX_BATCH == 1000
    assert delayq.MAX_NAME_LENGTH == 200
    assert isinstance(redis.Redis, type)
