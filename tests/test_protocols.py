"""The queue over every reply path redis-py has: RESP2 and RESP3, hiredis and the pure-Python parser."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio
from redis._parsers import _HiredisParser, _RESP2Parser, _RESP3Parser

import delayq
import delayq.aio
from tests.helpers import unique_name

PARSERS = {
    "resp2-python": (2, _RESP2Parser),
    "resp3-python": (3, _RESP3Parser),
    "resp2-hiredis": (2, _HiredisParser),
    "resp3-hiredis": (3, _HiredisParser),
}


def exercise(q: delayq.Queue) -> None:
    assert q.enqueue(b"\x00bin\xff", id="a") == "a"
    assert q.enqueue_many([b"b", "c"], ids=["b", "c"]) == ["b", "c"]
    assert [p.id for p in q.peek()] == ["a", "b", "c"]
    jobs = q.dequeue(2, lock_ttl=30)
    assert [(j.id, j.payload, j.attempts) for j in jobs] == [("a", b"\x00bin\xff", 1), ("b", b"b", 1)]
    assert q.extend(jobs[0], 10)
    assert q.nack(jobs[1], error="why") is True
    acked, nxt = q.ack_and_dequeue(jobs[:1], 5, lock_ttl=0.05)
    assert acked == 1 and sorted(j.id for j in nxt) == ["b", "c"]
    time.sleep(0.07)
    assert q.stats() == delayq.QueueStats(ready=2, delayed=0, in_flight=0, dead=0)
    (c,) = q.dequeue(5)  # b reached max_attempts=2 and is dead-lettered instead
    assert (c.id, c.attempts) == ("c", 2)
    assert q.nack(c) is True  # c's second claim: dead at once
    assert [(d.id, d.error) for d in q.dead_letters()] == [("b", "why"), ("c", None)]
    assert q.redrive() == 2
    assert q.purge() == 2


@pytest.mark.parametrize("kind", sorted(PARSERS))
def test_every_parser_and_protocol(redis_url: str, kind: str) -> None:
    protocol, parser = PARSERS[kind]
    client = redis.Redis.from_url(redis_url, protocol=protocol, parser_class=parser)
    try:
        exercise(delayq.Queue(client, unique_name(kind), max_attempts=2))
    finally:
        client.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_async_client_protocols(redis_url: str, protocol: int) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_url, protocol=protocol)
        q = delayq.aio.Queue(client, unique_name("aio"))
        await q.enqueue_many([b"x", b"y"], ids=["x", "y"])
        jobs = await q.dequeue(10)
        assert [(j.id, j.payload) for j in jobs] == [("x", b"x"), ("y", b"y")]
        assert await q.ack_many(jobs) == 2
        assert (await q.stats()).total == 0
        await client.aclose()

    asyncio.run(main())
