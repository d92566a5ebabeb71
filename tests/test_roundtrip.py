"""The round-trip baseline does the same job as the Lua queue: the shared behaviours run on both,
so the benchmark compares two correct implementations."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

import delayq
from delayq.bench._roundtrip import RoundTripQueue
from tests.helpers import unique_name


@pytest.fixture(params=["lua", "roundtrip"])
def make(request: pytest.FixtureRequest, raw_client: redis.Redis) -> Any:
    def make_queue() -> Any:
        if request.param == "lua":
            return delayq.Queue(raw_client, unique_name())
        return RoundTripQueue(raw_client, unique_name())

    return make_queue


def test_due_order_and_batch_cap(make: Any) -> None:
    q = make()
    ids = [q.enqueue(f"p{i}".encode(), delay=0.2 if i % 2 else 0) for i in range(8)]
    first = q.dequeue(3)
    assert len(first) == 3  # the Go original returned batch + 1
    assert {j.id for j in first + q.dequeue(10)} == set(ids[0::2])
    time.sleep(0.25)
    assert {j.id for j in q.dequeue(10)} == set(ids[1::2])


def test_lock_ttl_hides_then_redelivers(make: Any) -> None:
    q = make()
    q.enqueue(b"x", id="j")
    (job,) = q.dequeue(1, lock_ttl=0.2)
    assert q.dequeue(5, lock_ttl=0.2) == []
    time.sleep(0.25)  # the Go original never used its ttl
    (again,) = q.dequeue(1, lock_ttl=30)
    assert (again.id, again.payload, again.attempts) == ("j", b"x", 2)
    assert q.ack(job) is False  # stale token
    assert q.ack(again) is True
    assert q.dequeue(5) == []


def test_ack_many_and_duplicate_ids(make: Any) -> None:
    q = make()
    assert q.enqueue(b"a", id="same") == "same"
    assert q.enqueue(b"b", id="same") is None
    q.enqueue_many([b"c", b"d"])
    jobs = q.dequeue(10)
    assert sorted(j.payload for j in jobs) == [b"a", b"c", b"d"]
    assert q.ack_many(jobs) == 3
    assert q.dequeue(10) == []


def test_roundtrip_validates_like_the_queue(raw_client: redis.Redis) -> None:
    q = RoundTripQueue(raw_client, unique_name())
    with pytest.raises(delayq.InvalidArgument, match="1001"):
        q.dequeue(1001)
    with pytest.raises(delayq.InvalidType):
        q.enqueue(5)  # type: ignore[arg-type]
    with pytest.raises(delayq.InvalidArgument, match="nan"):
        q.enqueue(b"x", delay=float("nan"))
    with pytest.raises(delayq.InvalidArgument):
        RoundTripQueue(raw_client, "a{b")
