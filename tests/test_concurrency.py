"""Several consumer processes on one queue of a real redis-server: every job acked exactly
once, and no job ever held by two consumers at once (checked by the server's clock)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import defaultdict

import redis

import delayq
from tests.helpers import unique_name

CONSUMER = r"""
import json, sys, time, zlib
import redis, delayq
url, name, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
q = delayq.Queue(redis.Redis.from_url(url), name)
out = []
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    jobs = q.dequeue(20, lock_ttl=ttl)
    if not jobs:
        if q.stats().total == 0:
            break
        time.sleep(0.01)
        continue
    for job in jobs:
        # about one job in 40 is slow on its first delivery: its lock expires mid-batch
        if job.attempts == 1 and zlib.crc32(job.id.encode()) % 40 == 0:
            time.sleep(ttl * 1.2)
        ok = q.ack(job)
        out.append([job.id, job.token, job.lock_expires_ms - int(ttl * 1000), job.lock_expires_ms, ok])
json.dump(out, sys.stdout)
"""


def test_consumers_in_parallel_ack_each_job_exactly_once(redis_url: str) -> None:
    name, jobs, consumers, ttl = unique_name("conc"), 3000, 4, 0.3
    client = redis.Redis.from_url(redis_url)
    q = delayq.Queue(client, name)
    ids = {i for i in q.enqueue_many([f"payload-{i}".encode() for i in range(jobs)]) if i}
    procs = [
        subprocess.Popen([sys.executable, "-c", CONSUMER, redis_url, name, str(ttl)], stdout=subprocess.PIPE)
        for _ in range(consumers)
    ]
    records = []
    started = time.monotonic()
    for proc in procs:
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0
        records += json.loads(out)
    assert time.monotonic() - started < 90

    acked = [r[0] for r in records if r[4]]
    assert sorted(acked) == sorted(ids), "every job acked exactly once"
    deliveries: dict[str, list[tuple[int, int, bool]]] = defaultdict(list)
    for job_id, _token, claimed, expires, ok in records:
        deliveries[job_id].append((claimed, expires, ok))
    redelivered = 0
    for claims in deliveries.values():
        claims.sort()
        for before, after in itertools.pairwise(claims):
            assert after[0] >= before[1], "a job was claimed again before the previous lock expired"
            assert not before[2], "a job was delivered again after a successful ack"
            redelivered += 1
    assert redelivered > 0, "the slow jobs must have forced redeliveries"
    assert len({(r[0], r[1]) for r in records}) == len(records), "(id, token) is unique per claim"
    assert q.stats().total == 0
    client.close()
