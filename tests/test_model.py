"""Model check: random sequences of every operation, with a clock the test controls, against a
pure-Python model of the queue; every reply, the stats, peek and the dead letters must agree
after every step. Runs on fakeredis and on the real server."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

import delayq
from delayq import DeadJob, Job, PendingJob, QueueStats
from tests.helpers import unique_name

IDS = st.sampled_from(["a", "b", "c", "d", "e"])
# weighted toward what makes things happen: jobs due now, locks that expire, clocks that cross them
DELAY_MS = st.sampled_from([0, 0, 0, 0, 0, 1, 7, 50, 400, 2007])
TTL_MS = st.sampled_from([1, 10, 100, 1000, 3000]) | st.integers(1, 3000)
MAX_ATTEMPTS = 2
SLOW = os.environ.get("DELAYQ_SLOW") == "1"


@dataclass
class M:
    """A job as the model sees it."""

    payload: bytes
    state: str  # "due", "lease" or "dead"
    score: int  # due time, lock expiry, or time of death (ms)
    attempts: int = 0
    token: str | None = None
    error: str | None = None


class QueueModel(RuleBasedStateMachine):
    """The queue, twice: the real one (through delayq) and the model; both must agree."""

    make_client: Any = None  # set per backend

    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_800_000_000_000
        self.client = type(self).make_client()
        self.q = delayq.Queue(self.client, unique_name("model"), max_attempts=MAX_ATTEMPTS)
        self.q._core.clock = lambda: self.now
        self.model: dict[str, M] = {}
        self.serial = 0

    def teardown(self) -> None:
        self.q.purge()
        self.client.close()

    # -- helpers

    def holds(self, job: Job) -> bool:
        m = self.model.get(job.id)
        return m is not None and m.state == "lease" and m.token == job.token and m.score > self.now

    def payload(self) -> bytes:
        self.serial += 1
        return f"p{self.serial}".encode()

    # -- rules

    @initialize(job_ids=st.lists(IDS, min_size=2, max_size=5, unique=True))
    def some_jobs_due_now(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            payload = self.payload()
            assert self.q.enqueue(payload, id=job_id) == job_id
            self.model[job_id] = M(payload, "due", self.now)

    @rule(job_id=IDS, delay=DELAY_MS)
    def enqueue(self, job_id: str, delay: int) -> None:
        payload = self.payload()
        got = self.q.enqueue(payload, id=job_id, delay=delay / 1000)
        if job_id in self.model:
            assert got is None
        else:
            assert got == job_id
            self.model[job_id] = M(payload, "due", self.now + delay)

    @rule(job_ids=st.lists(IDS, min_size=1, max_size=4), delay=DELAY_MS)
    def enqueue_many(self, job_ids: list[str], delay: int) -> None:
        payloads = [self.payload() for _ in job_ids]
        got = self.q.enqueue_many(payloads, ids=job_ids, delay=delay / 1000)
        expected: list[str | None] = []
        for job_id, payload in zip(job_ids, payloads, strict=True):
            if job_id in self.model:
                expected.append(None)
            else:
                self.model[job_id] = M(payload, "due", self.now + delay)
                expected.append(job_id)
        assert got == expected

    @rule(target=jobs, batch=st.integers(1, 4), ttl=TTL_MS)
    def dequeue(self, batch: int, ttl: int) -> Any:
        got = self.q.dequeue(batch, lock_ttl=ttl / 1000)
        # the sweep: lapsed leases in expiry order until `batch` are due again (at the time their
        # lock expired); those claimed MAX_ATTEMPTS times die on the way, taking no place
        expired = sorted((m.score, i) for i, m in self.model.items() if m.state == "lease" and m.score <= self.now)
        moved = 0
        for _, i in expired:
            if moved == batch:
                break
            m = self.model[i]
            if m.attempts >= MAX_ATTEMPTS:
                m.state, m.score, m.token = "dead", self.now, None
            else:
                m.state = "due"
                moved += 1
        # the claim: due jobs in order until the batch is full, dying ones passed over
        ready = sorted((m.score, i) for i, m in self.model.items() if m.state == "due" and m.score <= self.now)
        expected: list[tuple[str, bytes, int, int]] = []
        for score, i in ready:
            if len(expected) == batch:
                break
            m = self.model[i]
            if m.attempts >= MAX_ATTEMPTS:
                m.state, m.score, m.token = "dead", self.now, None
            else:
                m.attempts += 1
                m.state, m.score = "lease", self.now + ttl
                expected.append((i, m.payload, m.attempts, score))
        assert [(j.id, j.payload, j.attempts, j.due_ms) for j in got] == expected
        for job in got:
            assert job.lock_expires_ms == self.now + ttl
            self.model[job.id].token = job.token
        return multiple(*got)

    @rule(job=jobs)
    def ack(self, job: Job) -> None:
        expected = self.holds(job)
        assert self.q.ack(job) is expected
        if expected:
            del self.model[job.id]

    @rule(job=jobs, delay=DELAY_MS, error=st.none() | st.sampled_from(["boom", "bad input"]))
    def nack(self, job: Job, delay: int, error: str | None) -> None:
        expected = self.holds(job)
        assert self.q.nack(job, delay / 1000, error=error) is expected
        if expected:
            m = self.model[job.id]
            m.error = error or m.error
            if m.attempts >= MAX_ATTEMPTS:
                m.state, m.score = "dead", self.now
            else:
                m.state, m.score = "due", self.now + delay

    @rule(job=jobs)
    def release(self, job: Job) -> None:
        expected = self.holds(job)
        assert self.q.release(job) is expected
        if expected:
            m = self.model[job.id]
            m.state, m.score, m.token, m.attempts = "due", self.now, None, m.attempts - 1

    @rule(job=jobs, ttl=TTL_MS)
    def extend(self, job: Job, ttl: int) -> None:
        expected = self.holds(job)
        assert self.q.extend(job, ttl / 1000) is expected
        if expected:
            self.model[job.id].score = self.now + ttl

    @rule(job=consumes(jobs))
    def ack_many_with_duplicates(self, job: Job) -> None:
        expected = 1 if self.holds(job) else 0
        assert self.q.ack_many([job, job]) == expected
        if expected:
            del self.model[job.id]

    @rule(job_id=IDS)
    def cancel(self, job_id: str) -> None:
        assert self.q.cancel(job_id) is (job_id in self.model)
        self.model.pop(job_id, None)

    @rule(job_id=IDS, delay=DELAY_MS)
    def reschedule(self, job_id: str, delay: int) -> None:
        m = self.model.get(job_id)
        expected = m is not None and (m.state == "due" or (m.state == "lease" and m.score <= self.now))
        assert self.q.reschedule(job_id, delay=delay / 1000) is expected
        if expected and m is not None:
            m.state, m.score = "due", self.now + delay

    @precondition(lambda self: any(m.state == "dead" for m in self.model.values()))
    @rule()
    def redrive(self) -> None:
        dead = [m for m in self.model.values() if m.state == "dead"]
        assert self.q.redrive() == len(dead)
        for m in dead:
            m.state, m.score, m.attempts, m.error = "due", self.now, 0, None

    @precondition(lambda self: len(self.model) >= 5)
    @rule()
    def purge(self) -> None:
        assert self.q.purge() == len(self.model)
        self.model.clear()

    @rule(ms=st.sampled_from([0, 1, 9, 50, 400, 1000, 3001]) | st.integers(0, 2000))
    def advance_clock(self, ms: int) -> None:
        self.now += ms

    # -- after every step

    @invariant()
    def stats_agree(self) -> None:
        by = [(m.state, m.score <= self.now) for m in self.model.values()]
        expected = QueueStats(
            ready=by.count(("due", True)) + by.count(("lease", True)),
            delayed=by.count(("due", False)),
            in_flight=by.count(("lease", False)),
            dead=sum(1 for s, _ in by if s == "dead"),
        )
        assert self.q.stats() == expected

    @invariant()
    def peek_agrees(self) -> None:
        limit = 10
        due = sorted((m.score, i) for i, m in self.model.items() if m.state == "due")[:limit]
        lapsed = sorted((m.score, i) for i, m in self.model.items() if m.state == "lease" and m.score <= self.now)[:limit]
        merged: list[tuple[int, str]] = []
        a = b = 0
        while len(merged) < limit and (a < len(due) or b < len(lapsed)):
            if b >= len(lapsed) or (a < len(due) and due[a] < lapsed[b]):  # (due time, id): ties by id
                merged.append(due[a])
                a += 1
            else:
                merged.append(lapsed[b])
                b += 1
        expected = [PendingJob(i, self.model[i].payload, self.model[i].attempts, score) for score, i in merged]
        assert self.q.peek(limit) == expected

    @invariant()
    def dead_letters_agree(self) -> None:
        dead = sorted((m.score, i) for i, m in self.model.items() if m.state == "dead")
        expected = [DeadJob(i, self.model[i].payload, self.model[i].attempts, score, self.model[i].error) for score, i in dead]
        assert self.q.dead_letters() == expected


@pytest.mark.parametrize("backend", ["fake", "real"])
def test_the_queue_behaves_like_its_model(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "fake":
        server = fakeredis.FakeServer()
        factory: Any = lambda: fakeredis.FakeRedis(server=server)  # noqa: E731
    else:
        url = request.getfixturevalue("redis_url")
        factory = lambda: redis.Redis.from_url(url)  # noqa: E731

    class Machine(QueueModel):
        make_client = staticmethod(factory)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=1000 if SLOW else 200,
            stateful_step_count=60 if SLOW else 40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
