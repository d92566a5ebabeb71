"""How far a job's server time is from the floor of this data model, on this machine.

The floor is a script that only moves the data an ack + claim must move, and checks nothing:
acks ZREM the leases and HDEL the payloads by id; the claim reads the due head (ids and due
times), HMGETs the payloads, ZADDs the leases and removes the head by rank, and returns (id,
payload, due) for each job. No token fencing, no attempts, no expired-lease sweep, no dead
letters, no pause, no long-poll wake-ups: not a queue anyone could use, and the least any
Lua script over a `due` zset, a `lease` zset and a `payload` hash can cost.

Each round drains a fresh queue of ``--jobs`` due jobs at ``--batch`` (ack the previous batch,
claim the next, one call) once with the floor script and once with delayq's ``dequeue.lua``
(``Queue.ack_and_dequeue``), in alternating order, on one private redis-server; server time is
EVALSHA's ``usec`` from INFO commandstats. Prints medians and the median of the per-round
ratios delayq/floor.

    python benchmarks/server_floor.py [--rounds 20] [--jobs 10000] [--batch 100] [--url URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent

FLOOR = r"""
local due_key, lease_key, payload_key = KEYS[1], KEYS[2], KEYS[3]
local batch, expiry = tonumber(ARGV[1]), ARGV[2]
local acks = #ARGV - 2
if acks > 0 then
  local ids = {}
  for i = 1, acks do ids[i] = ARGV[2 + i] end
  redis.call('ZREM', lease_key, unpack(ids))
  redis.call('HDEL', payload_key, unpack(ids))
end
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'WITHSCORES', 'LIMIT', 0, batch)
local m = #due / 2
if m == 0 then return {} end
local ids, args, reply = {}, {}, {}
for i = 1, m do ids[i] = due[2 * i - 1] end
local payloads = redis.call('HMGET', payload_key, unpack(ids))
for i = 1, m do
  args[2 * i - 1] = expiry
  args[2 * i] = ids[i]
  reply[3 * i - 2] = ids[i]
  reply[3 * i - 1] = payloads[i]
  reply[3 * i] = due[2 * i]
end
redis.call('ZADD', lease_key, unpack(args))
redis.call('ZREMRANGEBYRANK', due_key, 0, m - 1)
return reply
"""

# as delayq keeps `lease` in its skiplist encoding (see lua/dequeue.lua), so does the floor
SENTINEL = "~floor~sentinel~" * 5


def evalsha_usec(client: redis.Redis) -> int:
    return int(client.info("commandstats")["cmdstat_evalsha"]["usec"])


def drain_floor(client: redis.Redis, sha: str, jobs: int, batch: int) -> float:
    """Server µs per job of the floor script draining a fresh queue."""
    from delayq import Queue  # noqa: PLC0415 (after sys.path is set)
    from delayq._core import QueueCore  # noqa: PLC0415

    q = Queue(client, "floor-" + uuid.uuid4().hex[:8])
    q.enqueue_many([b"x" * 100] * jobs)
    core = q._core
    assert isinstance(core, QueueCore)
    keys = [core.keys["due"], core.keys["lease"], core.keys["payload"]]
    client.zadd(keys[1], {SENTINEL: float("inf")})
    before = evalsha_usec(client)
    acks: list[bytes] = []
    while True:
        reply = client.evalsha(sha, 3, *keys, batch, "9999999999999.5", *acks)
        if not reply and not acks:
            break
        acks = reply[0::3]
    spent = evalsha_usec(client) - before
    q.purge()
    return spent / jobs


def drain_delayq(client: redis.Redis, jobs: int, batch: int) -> float:
    """Server µs per job of delayq's ack_and_dequeue draining a fresh queue."""
    from delayq import Queue  # noqa: PLC0415 (after sys.path is set)

    q = Queue(client, "dq-" + uuid.uuid4().hex[:8])
    q.enqueue_many([b"x" * 100] * jobs)
    q.stats()  # loads the scripts before the first snapshot
    _, done = q.ack_and_dequeue([], 1, 30)
    before = evalsha_usec(client)
    while True:
        _, got = q.ack_and_dequeue(done, batch, 30)
        if not got and not done:
            break
        done = got
    spent = evalsha_usec(client) - before
    if q.stats().total:
        raise SystemExit("not drained")
    q.purge()
    return spent / jobs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--url", help="a Redis to use (default: a private redis-server)")
    opts = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from delayq._server import RedisServer  # noqa: PLC0415 (this tree's, after the path is set)

    server = None if opts.url else RedisServer().start()
    url = opts.url if server is None else server.url
    floor, ours = [], []
    try:
        client = redis.Redis.from_url(url)
        sha = client.script_load(FLOOR)
        for r in range(opts.rounds):
            if r % 2 == 0:
                floor.append(drain_floor(client, sha, opts.jobs, opts.batch))
                ours.append(drain_delayq(client, opts.jobs, opts.batch))
            else:
                ours.append(drain_delayq(client, opts.jobs, opts.batch))
                floor.append(drain_floor(client, sha, opts.jobs, opts.batch))
        version = client.info("server")["redis_version"]
    finally:
        if server is not None:
            server.stop()
    ratios = [o / f for o, f in zip(ours, floor, strict=True)]
    print(
        f"server µs per job, ack + claim at batch {opts.batch}, {opts.jobs:,} jobs a drain, "
        f"{opts.rounds} paired rounds, Redis {version}\n"
        f"  floor (moves the data, checks nothing): {statistics.median(floor):.3f}\n"
        f"  delayq dequeue.lua (ack_and_dequeue):   {statistics.median(ours):.3f}\n"
        f"  delayq / floor, median of the rounds:   {statistics.median(ratios):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
