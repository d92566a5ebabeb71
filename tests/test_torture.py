"""Torture: worker processes SIGKILLed at random and restarted while they work through thousands
of jobs with random delays. Every claim, lock extension and ack is logged (flushed line by line)
and checked at the end against what the queue promises:

- every job acked exactly once (and the queue empty, nothing dead);
- no job claimed before its due time, by the server's clock;
- no job claimed while an earlier claim's lock (as extended) was still live, unless that claim
  had been acked... which cannot be, since an acked job is gone: so never two live locks.

The second torture runs real delayq.Worker and delayq.aio.Worker threads (1 to 4 at a time)
through jobs that succeed, run past their first lock, fail until their last attempt, always
fail, or hang past the handler timeout, while workers are stopped gracefully and hard and
replaced, the server's scripts are flushed, and running jobs are cancelled and enqueued again
under their id. At the end: every job ran to its end at least once or is dead-lettered with the
reason it failed; none is dead without failing on its last attempt; nothing is left locked or
waiting; no two claims ran one job at once unless the first was given up (a stop, a timeout) or
cancelled; no lock was lost by a job nobody cancelled; and the workers' counts of processed and
dead-lettered jobs are what happened.

The short forms run in CI; ``--slow`` (or DELAYQ_SLOW=1) runs the long forms.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

import delayq
import delayq.aio
from delayq._validate import SENTINEL
from tests.helpers import unique_name

WORKER = r"""
import json, os, random, sys, threading, time
import redis, delayq
url, name, log_path, ttl = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
pid = os.getpid()
out = open(log_path, "a", buffering=1)
lock = threading.Lock()
def log(*record):
    with lock:
        out.write(json.dumps([pid, *record]) + "\n")
q = delayq.Queue(redis.Redis.from_url(url), name)
def extend(job, lock_ttl=30):
    expiry = q._drive(q._core.extend(job, lock_ttl))
    if expiry is not None:
        log("extend", job.id, job.token, expiry)
    return expiry is not None
q.extend = extend
# an ack is logged after the call that made it returned: the jobs it says it acked (the worker's
# two ack paths report which of the batch were refused or not tried)
plain_ack_and_claim, plain_ack_claims = q.ack_and_claim, q.ack_claims
def log_acked(done, result):
    left = {(j.id, j.token) for j in result.refused + result.unapplied}
    acked = [j.id for j in done if (j.id, j.token) not in left]
    if acked:
        log("acked", acked, len(acked))
def ack_and_claim(done, batch, lock_ttl, wait):
    done = list(done)
    result = plain_ack_and_claim(done, batch, lock_ttl, wait=wait)
    log_acked(done, result)
    return result
def ack_claims(done):
    done = list(done)
    result = plain_ack_claims(done)
    log_acked(done, result)
    return result
q.ack_and_claim, q.ack_claims = ack_and_claim, ack_claims
rng = random.Random(pid)
def handler(job):
    log("claim", job.id, job.token, job.lock_expires_ms - int(ttl * 1000), job.lock_expires_ms, job.due_ms)
    # most are quick; one in fifty outlives a third of the ttl, so its lock gets extended
    time.sleep(ttl * 0.7 if rng.random() < 0.02 else rng.choice([0, 0, 0.001, 0.005, 0.02]))
w = delayq.Worker(q, handler, concurrency=8, lock_ttl=ttl, poll=0.2)
w.run()
"""


def torture(redis_url: str, tmp_path: Path, jobs: int, max_delay: float, workers: int, kill_for: float) -> dict[str, Any]:
    name = unique_name("torture")
    log_path = tmp_path / "deliveries.jsonl"
    client = redis.Redis.from_url(redis_url)
    q = delayq.Queue(client, name)
    rng = random.Random(42)
    ids: list[str] = []
    for start in range(0, jobs, 1000):
        n = min(1000, jobs - start)
        delay = rng.uniform(0, max_delay)  # one delay per 1000-job call, spread across calls
        ids += [i for i in q.enqueue_many([b"x"] * n, delay=delay) if i]
    due_key = q._core.keys["due"]  # type: ignore[union-attr]
    scores = client.zmscore(due_key, ids)
    assert None not in scores
    original_due = {i: int(s or 0) for i, s in zip(ids, scores, strict=True)}
    ttl = 1.0

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, name, str(log_path), str(ttl)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    procs = [spawn() for _ in range(workers)]
    killed: set[int] = set()
    kills = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < kill_for:
            time.sleep(rng.uniform(0.2, 0.8))
            victim = rng.randrange(len(procs))
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            killed.add(procs[victim].pid)
            kills += 1
            procs[victim] = spawn()
        deadline = time.monotonic() + 120 + max_delay
        while q.stats().total and time.monotonic() < deadline:
            time.sleep(0.2)
        stats = q.stats()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert stats.total == 0, f"jobs left in the queue: {stats}"

    claims: dict[str, list[list[Any]]] = defaultdict(list)
    extends: dict[tuple[str, str], int] = {}
    acks: dict[str, int] = defaultdict(int)  # batches surely acked whole
    maybe_acked: set[str] = set()  # in a batch of which only some were acked
    for line in log_path.read_text().splitlines():
        try:
            pid, kind, *rest = json.loads(line)
        except ValueError:
            continue  # a line cut by a SIGKILL
        if kind == "claim":
            job_id, token, claimed, expires, due = rest
            claims[job_id].append([claimed, expires, token, due, pid])
        elif kind == "extend":
            job_id, token, expiry = rest
            extends[(job_id, token)] = max(expiry, extends.get((job_id, token), 0))
        else:
            batch, acked = rest
            for job_id in batch:
                if acked == len(batch):
                    acks[job_id] += 1
                else:
                    maybe_acked.add(job_id)

    early = [i for i, cs in claims.items() for c in cs if c[0] < original_due[i]]
    assert early == [], "claimed before the due time"
    overlaps = 0
    duplicates = 0
    unrecorded_acks = 0
    for job_id in ids:
        cs = sorted(claims[job_id])
        assert cs, f"job {job_id} was never claimed"
        assert acks[job_id] <= 1, f"job {job_id} acked {acks[job_id]} times"
        if not acks[job_id] and job_id not in maybe_acked:
            # it left the queue, so it was acked: by a process killed before it could log that
            assert cs[-1][4] in killed, f"job {job_id} left the queue without an ack"
            unrecorded_acks += 1
        for before, after in itertools.pairwise(cs):
            held_until = max(before[1], extends.get((job_id, before[2]), 0))
            if after[0] < held_until:
                overlaps += 1
        duplicates += len(cs) - 1
    assert overlaps == 0, "a job was claimed while another claim's lock was live"
    return {
        "jobs": len(ids),
        "kills": kills,
        "workers": workers,
        "deliveries": sum(len(c) for c in claims.values()),
        "duplicates": duplicates,
        "extends": len(extends),
        "acks_lost_with_their_process_log": unrecorded_acks,
        "seconds": round(time.monotonic() - started, 1),
        "lost": 0,
    }


def report(result: dict[str, Any]) -> None:
    print("\ntorture:", json.dumps(result))


def test_torture_short(redis_url: str, tmp_path: Path) -> None:
    report(torture(redis_url, tmp_path, jobs=5000, max_delay=3, workers=3, kill_for=6))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_torture_long(redis_url: str, tmp_path: Path) -> None:
    report(torture(redis_url, tmp_path, jobs=50_000, max_delay=20, workers=4, kill_for=60))


# ---------------------------------------------------------------- real workers, stopped every way

LOCK_TTL_S = 2.0
"""Workers extend every third of it: an extend must be 1.3 s late for a healthy job to lose its lock."""
HANDLER_TIMEOUT_S = 3.0
SLOW_S = 2.4
"""A slow job outlives its first lock: only extends keep it (and the ones enqueued again under a
running job's id are all slow, so a worker that stops extending the new claim shows)."""
MAX_ATTEMPTS = 3
SENTINEL_BYTES = SENTINEL.encode()
KINDS = {"ok": 0.75, "slow": 0.05, "flaky": 0.14, "bad": 0.05, "hang": 0.01}
"""ok: returns at once; slow: returns after SLOW_S; flaky: fails until its last attempt, which
returns after 0.3 s (a stop then must not dead-letter it); bad: always raises; hang: never returns
within the timeout (a thread handler sleeps past it, an async one is cancelled at it)."""


class Chaos:
    """What the handlers, the hooks and the chaos thread saw, shared by every worker of one run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}  # claim -> id, payload, worker, start, end, ok
        self.events: list[tuple[int, str, tuple[str, bytes], str, str | None]] = []  # worker, kind, (id, payload), token, error
        self.running: dict[str, str] = {}  # id -> token of a run in progress

    def started(self, job: delayq.Job, worker: int) -> str:
        with self.lock:
            self.runs[(job.id, job.token)] = {
                "id": job.id,
                "payload": job.payload,
                "worker": worker,
                "start": time.monotonic(),
                "end": None,
                "ok": False,
            }
            self.running[job.id] = job.token
        return job.payload.decode().split(":")[0]

    def ended(self, job: delayq.Job, ok: bool) -> None:
        with self.lock:
            run = self.runs[(job.id, job.token)]
            run["end"], run["ok"] = time.monotonic(), ok
            if self.running.get(job.id) == job.token:
                del self.running[job.id]

    def hook(self, worker: int) -> Any:
        def on_event(event: delayq.WorkerEvent) -> None:
            with self.lock:
                self.events.append((worker, event.kind, (event.job.id, event.job.payload), event.job.token, event.error))

        return on_event


def sync_handler(chaos: Chaos, worker: int) -> Any:
    def handler(job: delayq.Job) -> None:
        kind = chaos.started(job, worker)
        ok = False
        try:
            if kind == "slow":
                time.sleep(SLOW_S)
            elif kind == "flaky":
                if job.attempts < MAX_ATTEMPTS:
                    raise RuntimeError("flaky: fails before its last attempt")
                time.sleep(0.3)
            elif kind == "bad":
                raise RuntimeError("bad: always fails")
            elif kind == "hang":
                time.sleep(HANDLER_TIMEOUT_S + 1.5)  # abandoned at the timeout; bounded, so the thread ends
                raise RuntimeError("hang: returned after its timeout")
            ok = True
        finally:
            chaos.ended(job, ok)

    return handler


def async_handler(chaos: Chaos, worker: int) -> Any:
    async def handler(job: delayq.Job) -> None:
        kind = chaos.started(job, worker)
        ok = False
        try:
            if kind == "slow":
                await asyncio.sleep(SLOW_S)
            elif kind == "flaky":
                if job.attempts < MAX_ATTEMPTS:
                    raise RuntimeError("flaky: fails before its last attempt")
                await asyncio.sleep(0.3)
            elif kind == "bad":
                raise RuntimeError("bad: always fails")
            elif kind == "hang":
                await asyncio.sleep(600)  # cancelled at the timeout
            ok = True
        finally:
            chaos.ended(job, ok)

    return handler


class Running:
    """One worker of either kind, in a thread of its own (an asyncio one runs its own loop there)."""

    def __init__(self, redis_url: str, name: str, number: int, flavour: str, chaos: Chaos) -> None:
        self.number, self.flavour = number, flavour
        self.stats: delayq.WorkerStats | None = None
        self.worker: Any = None
        self.ready = threading.Event()
        settings: dict[str, Any] = {
            "concurrency": 8,
            "lock_ttl": LOCK_TTL_S,
            "poll": 0.1,
            "grace": 1.0,
            "timeout": HANDLER_TIMEOUT_S,
            "backoff": delayq.Backoff(base=0.05, factor=2, cap=0.2),
            "on_event": chaos.hook(number),
        }

        def run_sync() -> None:
            client = redis.Redis.from_url(redis_url)
            q = delayq.Queue(client, name, max_attempts=MAX_ATTEMPTS)
            self.worker = delayq.Worker(q, sync_handler(chaos, number), **settings)
            self.ready.set()
            self.stats = self.worker.run(install_signals=False)
            client.close()

        async def run_async() -> None:
            client = redis.asyncio.Redis.from_url(redis_url)
            q = delayq.aio.Queue(client, name, max_attempts=MAX_ATTEMPTS)
            self.worker = delayq.aio.Worker(q, async_handler(chaos, number), **settings)
            self.ready.set()
            self.stats = await self.worker.run(install_signals=False)
            await client.aclose()

        target = run_sync if flavour == "sync" else lambda: asyncio.run(run_async())
        self.thread = threading.Thread(target=target, name=f"torture-worker-{number}", daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def stop(self, hard: bool = False) -> None:
        self.worker.stop(hard=hard)

    def join(self) -> delayq.WorkerStats:
        self.thread.join(30)
        assert not self.thread.is_alive(), f"worker {self.number} ({self.flavour}) did not stop"
        assert self.stats is not None
        return self.stats


def torture_workers(redis_url: str, jobs: int, workers: int, chaos_for: float, seed: int) -> dict[str, Any]:
    """Real delayq.Worker and delayq.aio.Worker threads work through ``jobs`` jobs of every kind while,
    for ``chaos_for`` seconds, workers are stopped gracefully and hard (and replaced), the server's
    scripts are flushed, and running jobs are cancelled and enqueued again under their id. Then
    the workers drain the queue and stop, and what happened is checked against what delayq
    promises (see the assertions)."""
    rng = random.Random(seed)
    name = unique_name("torture-w")
    client = redis.Redis.from_url(redis_url)
    q = delayq.Queue(client, name, max_attempts=MAX_ATTEMPTS)
    chaos = Chaos()
    kinds = list(KINDS)
    generations: dict[tuple[str, bytes], str] = {}  # (id, payload) -> kind
    latest: dict[str, bytes] = {}  # id -> the payload it was last enqueued with
    cancelled: set[tuple[str, bytes]] = set()
    serial = itertools.count()

    def enqueue(job_id: str, kind: str, delay: float) -> None:
        payload = f"{kind}:{next(serial)}".encode()
        assert q.enqueue(payload, id=job_id, delay=delay) == job_id
        generations[(job_id, payload)] = kind
        latest[job_id] = payload

    for i in range(jobs):
        # spread over the chaos, so that a worker alone has free slots (see below)
        enqueue(f"job-{i}", rng.choices(kinds, weights=list(KINDS.values()))[0], rng.uniform(0, chaos_for))
    numbers = itertools.count()
    pool = [Running(redis_url, name, next(numbers), rng.choice(["sync", "async"]), chaos) for _ in range(workers)]
    finished: list[Running] = []
    actions: dict[str, int] = defaultdict(int)
    started = time.monotonic()
    try:
        while time.monotonic() - started < chaos_for:
            time.sleep(rng.uniform(0.1, 0.4))
            # in the second and the last quarter one worker works alone: a running job's id
            # enqueued again is then claimed by the worker that still runs the old job
            cap = 1 if int(4 * (time.monotonic() - started) / chaos_for) % 2 else workers
            action = rng.choices(["stop", "hard", "start", "flush", "again"], weights=[2, 2, 3, 2, 5 if cap > 1 else 10])[0]
            if action in ("stop", "hard") or len(pool) > cap:
                victim = pool.pop(rng.randrange(len(pool)))
                victim.stop(hard=action == "hard")
                finished.append(victim)
                if not pool:
                    pool.append(Running(redis_url, name, next(numbers), rng.choice(["sync", "async"]), chaos))
            elif action == "start":
                if len(pool) < cap:
                    pool.append(Running(redis_url, name, next(numbers), rng.choice(["sync", "async"]), chaos))
            elif action == "flush":
                client.script_flush()
            else:
                with chaos.lock:
                    live = list(chaos.running)
                if not live:
                    continue
                job_id = rng.choice(live)
                if q.cancel(job_id):
                    cancelled.add((job_id, latest[job_id]))
                enqueue(job_id, "slow", 0)
            actions[action] += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s = q.stats()
            if s.ready == s.delayed == s.in_flight == 0:
                break
            time.sleep(0.1)
    finally:
        for running in pool:
            running.stop()
        stats = [r.join() for r in [*finished, *pool]]
    end = q.stats()
    dead = {(d.id, d.payload): d for d in q.dead_letters(1000)}

    # nothing left locked or waiting: every job left the queue or is dead
    assert (end.ready, end.delayed, end.in_flight) == (0, 0, 0), f"left in the queue: {end}"
    lease = [m for m in client.zrange(q._core.keys["lease"], 0, -1) if m != SENTINEL_BYTES]  # type: ignore[union-attr]
    assert lease == [], f"left locked: {lease}"
    # dead only by a failure: kinds that fail on every attempt, each with its reason
    wrongly_dead = {g: (kind, dead[g].error) for g, kind in generations.items() if g in dead and kind not in ("bad", "hang")}
    assert wrongly_dead == {}, f"dead-lettered without failing on their last attempt: {wrongly_dead}"
    for g, d in dead.items():
        assert d.error and (d.error.startswith("TimeoutError") if generations[g] == "hang" else "bad" in d.error), d
    # every job that is neither dead nor cancelled ran to its end at least once
    ran = {(r["id"], r["payload"]) for r in chaos.runs.values() if r["ok"]}
    acked = [g for g in generations if g not in dead and g not in cancelled]
    never = [g for g in acked if g not in ran]
    assert never == [], f"jobs that left the queue without running to the end: {never[:10]}"
    assert all(generations[g] not in ("bad", "hang") for g in acked), "a job that always fails was acked"
    # what the workers counted is what happened
    assert sum(s.processed for s in stats) == len(acked), "processed counts every ack applied, once"
    assert sum(s.dead_lettered for s in stats) == len(dead)
    # never two holders at once: a run overlapping a later claim's run of the same job was given
    # up on (a stop gave it back, its timeout failed it) or its job was cancelled
    given_up = {
        (g[0], t) for _, kind, g, t, e in chaos.events if kind == "returned" or (kind == "failed" and "Timeout" in (e or ""))
    }
    by_job: dict[tuple[str, bytes], list[tuple[float, float, tuple[str, str]]]] = defaultdict(list)
    for claim, r in chaos.runs.items():
        by_job[(r["id"], r["payload"])].append((r["start"], r["end"] or math.inf, claim))
    overlaps = []
    for g, runs in by_job.items():
        runs.sort()
        for before, after in itertools.pairwise(runs):
            if after[0] < before[1] and before[2] not in given_up and g not in cancelled:
                overlaps.append((g, before, after))
    assert overlaps == [], f"run by two holders at once: {overlaps[:5]}"
    # a lock is lost only by a job cancelled while it was held (or, rarely, an extend late by more
    # than LOCK_TTL_S * 2/3 on a machine that stalls): never by a healthy worker with a healthy job
    lost = [(w, g, t) for w, kind, g, t, _ in chaos.events if kind == "lock_lost" and g not in cancelled]
    assert lost == [], f"locks lost by jobs nobody cancelled: {lost[:10]}"
    client.delete(*[key for key in q._core.keys.values()])  # type: ignore[union-attr]
    client.close()
    return {
        "jobs": len(generations),
        "workers_started": next(numbers),
        "actions": dict(actions),
        "runs": len(chaos.runs),
        "dead": len(dead),
        "cancelled": len(cancelled),
        "returned": sum(s.returned for s in stats),
        "lock_lost": sum(s.lock_lost for s in stats),
        "seconds": round(time.monotonic() - started, 1),
    }


def test_workers_torture_short(redis_url: str) -> None:
    """Short form: 200 jobs, 1 to 4 workers at a time (of 8 slots each), 8 s of stops, hard stops,
    script flushes and re-enqueues of running ids, then the drain (about 20 s)."""
    report(torture_workers(redis_url, jobs=200, workers=4, chaos_for=8, seed=1))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_workers_torture_long(redis_url: str) -> None:
    """Long form: 3000 jobs, 1 to 6 workers at a time, 120 s of chaos."""
    report(torture_workers(redis_url, jobs=3000, workers=6, chaos_for=120, seed=2))
