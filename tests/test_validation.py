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
from delayq._scripts import SCRIPTS
from delayq._validate import SENTINEL
from tests.helpers import Env
from tests.snapshots import snapshot

NAN = float("nan")
INF = float("inf")
TOKEN = "1:0123456789abcdef"
"""A well-formed claim token, "<attempts>:<16 hex digits>", that no claim holds."""
STALE = Job("x", b"", 1, TOKEN, 0, 0)

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
    ("ack_many", ([Job(str(i), b"", 1, TOKEN, 0, 0) for i in range(1001)],), {}, InvalidArgument, "1001"),
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


# Hand-built jobs: the reserved sentinel member with the empty token it has in `meta` used to pass
# the token check (extend said True, ack removed the sentinel, and a later ack deleted the whole
# lease set with another job in it). Refused before anything is sent, whatever the field types.
HAND_BUILT: list[tuple[Job, type[DelayqError], str]] = [
    (Job(SENTINEL, b"", 1, "", 0, 0), InvalidArgument, "reserved"),
    (Job(SENTINEL, b"", 1, TOKEN, 0, 0), InvalidArgument, "reserved"),
    (Job("a", b"", 1, "", 0, 0), InvalidArgument, "token ''"),
    (Job("a", b"", 1, "tok", 0, 0), InvalidArgument, "'tok'"),
    (Job("a", b"", 1, "1:0123456789ABCDEF", 0, 0), InvalidArgument, "ABCDEF"),
    (Job("a", b"", 1, "0:0123456789abcdef", 0, 0), InvalidArgument, "'0:0123456789abcdef'"),
    (Job("a", b"", 1, " 1:0123456789abcdef", 0, 0), InvalidArgument, "' 1:0123456789abcdef'"),
    (Job("", b"", 1, TOKEN, 0, 0), InvalidArgument, "empty"),
    (Job("\udcff", b"", 1, TOKEN, 0, 0), InvalidArgument, "job id"),
    (Job(None, b"", 1, TOKEN, 0, 0), InvalidType, "None"),  # type: ignore[arg-type]
    (Job(b"a", b"", 1, TOKEN, 0, 0), InvalidType, "b'a'"),  # type: ignore[arg-type]
    (Job("a", b"", 1, None, 0, 0), InvalidType, "None"),  # type: ignore[arg-type]
    (Job("a", b"", 1, b"1:0123456789abcdef", 0, 0), InvalidType, "bytes"),  # type: ignore[arg-type]
    (Job("a", b"", "1", TOKEN, 0, 0), InvalidType, "'1'"),  # type: ignore[arg-type]
    (Job("a", b"", True, TOKEN, 0, 0), InvalidType, "True"),
    (Job("a", None, 1, TOKEN, 0, 0), InvalidType, "None"),  # type: ignore[arg-type]
    (Job("a", b"", 1, TOKEN, None, 0), InvalidType, "None"),  # type: ignore[arg-type]
    (Job("a", b"", 1, TOKEN, 0, 1.5), InvalidType, "1.5"),  # type: ignore[arg-type]
]
SETTLE: dict[str, Any] = {
    "ack": lambda q, job: q.ack(job),
    "ack_many": lambda q, job: q.ack_many([STALE, job]),
    "ack_and_dequeue": lambda q, job: q.ack_and_dequeue([job], 5),
    "nack": lambda q, job: q.nack(job),
    "extend": lambda q, job: q.extend(job, 30),
}


@pytest.mark.parametrize("shards", [1, 2])
@pytest.mark.parametrize(("job", "error", "text"), HAND_BUILT, ids=[f"job-{i}" for i in range(len(HAND_BUILT))])
def test_hand_built_jobs_are_refused_before_anything_is_sent(
    env: Env, shards: int, job: Job, error: type[DelayqError], text: str
) -> None:
    q = env.queue(max_attempts=3, shards=shards)
    q.enqueue_many([b"a", b"b", b"c"], ids=["a", "b", "c"])
    held = q.dequeue(2)
    before = snapshot(env.raw, q)
    for method, settle in SETTLE.items():
        with pytest.raises(error) as info:
            settle(q, job)
        assert text in str(info.value), method
        assert snapshot(env.raw, q) == before, method
    assert q.ack_many(held) == 2
    assert q.stats() == delayq.QueueStats(ready=1, delayed=0, in_flight=0, dead=0)


def test_scripts_never_touch_the_reserved_member_whatever_a_client_sends(env: Env) -> None:
    """Below the Python checks: each script that takes ids, called directly with the sentinel
    (and the empty token it has in `meta`), acks, removes, moves and stores nothing."""
    q = env.queue(max_attempts=1)
    q.enqueue_many([b"a", b"b"], ids=["a", "b"])
    q.enqueue(b"c", id="c", delay=60)
    held = q.dequeue(2)  # lease and meta now hold the sentinel besides a and b
    core = q._core

    def run(name: str, *args: bytes | str | int) -> Any:
        call = core._call(name, *args)  # now ("": the server's clock) goes first
        return env.raw.eval(SCRIPTS[name].source, len(call.keys), *call.keys, *call.args)

    before = snapshot(env.raw, q)
    # ack answers with the positions it refused: the sentinel's (1), and a's with a wrong token (2)
    assert run("ack", SENTINEL, "") == [1]
    assert run("ack", SENTINEL, "", held[0].id, "") == [1, 2]
    assert int(run("extend", SENTINEL, "", 30_000)) == 0
    assert run("nack", SENTINEL, "", 0, 0, "") == 0
    assert run("nack", SENTINEL, "", 0, 1, "e") == 0
    assert run("cancel", SENTINEL) == 0
    assert run("reschedule", SENTINEL, "rel", 0) == 0
    assert run("reschedule", SENTINEL, "abs", 0) == 0
    assert run("redrive", 1000, SENTINEL) == 0
    reply = run("dequeue", 5, 30_000, "0123456789abcdef", 1, 1, SENTINEL, "")
    assert reply[2:] == [[1], 0]  # the ack refused, nothing claimed (c is not due yet)
    assert snapshot(env.raw, q) == before
    assert run("enqueue", "rel", 0, SENTINEL, b"payload", "d", b"d") == [0, 1]
    assert [p.id for p in q.peek()] == ["d", "c"]
    # the job in flight beside the sentinel is still there, held, and acked once
    assert q.ack(held[0]) is True
    assert q.stats() == delayq.QueueStats(ready=1, delayed=1, in_flight=1, dead=0)
    assert q.ack(held[1]) is True
    assert q.cancel("c") and q.cancel("d")
    assert snapshot(env.raw, q) == {}
