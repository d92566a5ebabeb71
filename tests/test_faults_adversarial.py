"""Variations on issue 9's seven faults, found by trying to break their fixes through the public
API: each test failed before its fix (named in the test)."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
import redis
from hypothesis import given, settings

import delayq
from delayq._heartbeats import workers_key
from delayq._scripts import SCRIPTS
from delayq._validate import MAX_LOCK_TTL_S, MAX_NAME_LENGTH, SENTINEL
from tests.helpers import Env, unique_name
from tests.snapshots import snapshot
from tests.test_longpoll import LATE_MS, Plan, run_waiters
from tests.test_scripts import ACL_COMMANDS
from tests.test_sharded import neighbouring_queues, queue_keys


def test_a_lock_shortened_by_extend_wakes_a_waiter(env: Env) -> None:
    """Fault 3, the wake-up rule: a holder that extends its lock by less than it has left moves the
    time its job is claimable again earlier; a waiter that watched the old time (or waited for a
    token) must learn of the new one. Before extend.lua woke a waiter, the job was claimed up to a
    second (WAIT_SLICE_S) after the shortened lock expired."""
    name = unique_name()
    q = env.queue(name)
    q.enqueue(b"x", id="x")
    (held,) = q.dequeue(1, lock_ttl=30)
    plan = Plan(once=True)
    join = run_waiters(env, name, 1, plan)
    time.sleep(0.15)  # the waiter waits for a token, back in a second (WAIT_SLICE_S) at the latest
    assert q.extend(held, 0.1)  # then the holder dies without an ack
    join()
    (claim,) = plan.claims
    assert (claim.job.id, claim.job.attempts) == ("x", 2)
    assert claim.late_ms <= LATE_MS, f"claimed {claim.late_ms} ms after the shortened lock expired"


def test_every_waiter_learns_of_the_jobs_a_resume_makes_claimable(env: Env) -> None:
    """Fault 3 with pause: two consumers wait while the queue is paused and two jobs are ready;
    resume wakes one, and the one that claims must wake the other. Before waiters stayed
    registered while paused, the second job waited up to a second for the second consumer's
    own timer."""
    name = unique_name()
    q = env.queue(name)
    assert q.pause()
    q.enqueue_many([b"x", b"y"], ids=["x", "y"])
    plan = Plan(once=True)
    join = run_waiters(env, name, 2, plan)
    time.sleep(0.2)  # both wait, paused: each looks again a second after its last look
    seconds, micros = env.raw.time()
    resumed_ms = seconds * 1000 + micros // 1000
    assert q.resume()
    join()
    assert sorted(c.job.id for c in plan.claims) == ["x", "y"]
    late = [c.claimed_ms - resumed_ms for c in plan.claims]
    assert max(late) <= LATE_MS, f"claimed {late} ms after the resume"


def test_a_plain_and_a_sharded_queue_of_one_name_share_no_worker_list(env: Env) -> None:
    """Fault 5, for the worker heartbeats: ``Queue(r, "x")`` and ``Queue(r, "x", shards=2)`` are two
    queues and must share no key; their worker lists were one hash (``delayq:{x}:workers``), so
    each listed the other's workers."""
    name = unique_name()
    queues = [env.queue(name), env.queue(name, shards=2), env.queue(name, shards=3)]
    now = time.time()
    for i, q in enumerate(queues):
        entry = {"host": "h", "pid": i, "concurrency": 1, "counters": {}, "started": now, "last_seen": now, "ttl": 60}
        q.heartbeat(f"worker-{i}", json.dumps(entry))
    assert [[w.id for w in q.workers()] for q in queues] == [["worker-0"], ["worker-1"], ["worker-2"]]
    for i, q in enumerate(queues):
        assert q.remove_heartbeat(f"worker-{i}")
    assert [q.workers() for q in queues] == [[], [], []]
    assert isinstance(queues[0], delayq.Queue) or env.api == "async"


def test_schedule_release_and_get_never_touch_the_reserved_member_whatever_a_client_sends(env: Env) -> None:
    """Fault 4, below the Python checks, for the scripts that take an id and that
    test_validation's script-level test leaves out: schedule.lua (periodic runs) stored any id it
    was sent, the reserved member too; a claim of it then re-scored the member `lease` keeps at
    +inf and overwrote its `meta`, and no call could remove it (every one refuses the reserved
    id). release.lua and get.lua refused it already: pinned here."""
    q = env.queue()
    q.enqueue_many([b"a", b"b"], ids=["a", "b"])
    held = q.dequeue(1)  # lease and meta now hold the reserved member beside a
    core = q._core

    def run(name: str, *args: bytes | str | int) -> Any:
        call = core._call(name, *args)
        return env.raw.eval(SCRIPTS[name].source, len(call.keys), *call.keys, *call.args)

    before = snapshot(env.raw, q)
    assert run("release", SENTINEL, "") == 0  # the empty token `meta` keeps for it
    assert run("get", SENTINEL) == []
    assert snapshot(env.raw, q) == before
    assert run("schedule", "job", "spec", b"p", "", "", "0", 0, SENTINEL)[:2] == [0, 0]
    assert run("schedule", "job2", "spec", b"p", 0, SENTINEL, "1", "", "")[:2] == [0, 0]
    after = snapshot(env.raw, q)
    periodic = core.keys["periodic"].encode()
    after.pop(periodic, None)  # the marker moves on: the slot is taken, by no job
    assert after == before
    assert [j.id for j in q.dequeue(5)] == ["b"]
    assert q.ack_many([*held, *q.dequeue(5)]) == 1


@settings(max_examples=300, deadline=None)
@given(pair=neighbouring_queues())
def test_no_two_queues_share_a_key_the_worker_lists_included(pair: tuple[tuple[str, str, int], tuple[str, str, int]]) -> None:
    """Fault 5 over every key a queue writes: its roles' keys and its workers' heartbeat hash."""
    a, b = pair
    if a == b or not all(0 < len(q[1]) <= MAX_NAME_LENGTH for q in pair):
        return
    keys_a, keys_b = queue_keys(*a) | {workers_key(*a)}, queue_keys(*b) | {workers_key(*b)}
    assert not keys_a & keys_b, (a, b, sorted(keys_a & keys_b)[:3])


def test_the_new_wake_up_paths_run_as_the_least_privileged_user(redis_url: str) -> None:
    """The README's ACL names every command the scripts call: a waiter registered while the queue
    is paused and an extend that shortens a lock (the two wake-up fixes above) run under it. A
    first version of the pause fix called PTTL, which that user may not."""
    admin = redis.Redis.from_url(redis_url)
    name = unique_name("acl")
    user, password = f"u-{name}", "pw-" + name
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "resetkeys", f"~delayq:{{{name}}}:*", "-@all", *ACL_COMMANDS.split()
    )
    try:
        client = redis.Redis.from_url(redis_url, username=user, password=password)
        q = delayq.Queue(client, name)
        q.enqueue(b"x", id="x")
        assert q.pause()
        assert q.dequeue(1, wait=0.05) == []  # a waiter, registered while paused (then leaving)
        assert q.resume()
        (job,) = q.dequeue(1, lock_ttl=30)
        assert q.extend(job, 0.01)  # shorter: the wake-up path
        time.sleep(0.02)
        assert [j.id for j in q.dequeue(1)] == ["x"]
        q.purge()
        client.close()
    finally:
        admin.acl_deluser(user)
        admin.close()


@pytest.mark.parametrize("script", ["ack", "dequeue"])
def test_a_raw_ack_of_more_pairs_than_the_cap_changes_nothing(raw_client: redis.Redis, script: str) -> None:
    """Below the client's cap of 1000 acks a call: ack.lua (and dequeue.lua's acks) sent 9000 pairs,
    claims acked whole (three of 3000 jobs then; nine of 1000 now that a raw batch is capped),
    removed the claims' leases by score and then failed
    to unpack the 9000 ids for the HDELs (Lua's limit is 8000 values): 9000 payloads in no
    structure. The ids were read by ZMSCORE before d7e5069, failing before any write; now the
    pairs over the cap are refused first."""
    q = delayq.Queue(raw_client, unique_name())
    core: Any = q._core

    def run(name: str, *args: bytes | str | int) -> Any:
        call = core._call(name, *args)
        return raw_client.eval(SCRIPTS[name].source, len(call.keys), *call.keys, *call.args)

    for start in range(0, 9000, 1000):
        q.enqueue_many([b"x"] * 1000, ids=[f"j{i}" for i in range(start, start + 1000)])
    pairs: list[str] = []
    for c in range(9):  # nine claims of 1000 (a raw batch is capped too), each acked whole
        token = f"{c:03x}0123456789abc"
        reply = run("dequeue", 1000, 30_000, token, 0, 0, "", 0, 0)
        for i in range(4, len(reply), 3):
            pairs += [reply[i].decode(), "1:" + token]
    assert len(pairs) == 18_000
    before = snapshot(raw_client, q)
    for args in (pairs, pairs[:2002]):
        with pytest.raises(redis.ResponseError) as info:
            if script == "ack":
                run("ack", *args)
            else:
                run("dequeue", 1, 30_000, "fedcba9876543210", 0, len(args) // 2, *args, "", 0, 0)
        assert snapshot(raw_client, q) == before, "a failed ack changed the queue"
        assert "at most 1000 acks" in str(info.value)
    # at the cap: applied (the first claim in part, so by name)
    assert run("ack", *pairs[:2000]) == []
    assert q.stats().in_flight == 8000
    assert q.purge() == 8000


def test_a_token_with_another_claims_attempts_is_refused_by_every_call(env: Env) -> None:
    """A token names one claim of one job: "<attempts>:<call token>". Since the claims registry
    fenced by the call alone, a redelivered job ("2:<call>") was acked, nacked, extended and
    released with its call's first-claim token ("1:<call>"), the token of the call's other jobs:
    found by tests/test_model.py's forged-claim rule. Refused now, and nothing changes."""

    q = env.queue()
    q.enqueue_many([b"a", b"b"], ids=["a", "b"])
    (first,) = q.dequeue(1, lock_ttl=30)
    assert first.id == "a"
    q.nack(first)  # a's first claim is used up
    jobs = {j.id: j for j in q.dequeue(2, lock_ttl=30)}
    a, b = jobs["a"], jobs["b"]
    assert (a.attempts, b.attempts) == (2, 1) and a.token.split(":")[1] == b.token.split(":")[1]
    forged = dataclasses.replace(a, token=b.token)  # the call's own token, another claim's attempts
    before = snapshot(env.raw, q)
    assert q.ack(forged) is False
    assert q.ack_claims([forged]).refused == [forged]
    assert q.ack_and_claim([forged], 1, 30).refused == [forged]
    assert q.extend(forged, 60) is False
    assert q.nack(forged) == 0
    assert q.release(forged) is False
    after = snapshot(env.raw, q)
    assert after == before, "a refused call changes nothing"
    assert q.ack_many([a, b]) == 2  # the genuine tokens still hold
    assert q.stats().total == 0


def test_raw_claims_past_the_clients_checks_are_refused_before_anything_is_written(raw_client: redis.Redis) -> None:
    """Found by the acks adversary: a raw dequeue.lua call could claim 3000 jobs at once, take a
    token that is not 16 hex digits (one with "/" collides with an extended job's registry entry),
    or ask for an infinite lock_ttl, on which register() loops for ever (the server BUSY); extend.lua
    too. Each is an error now, and the queue is as it was."""
    q = delayq.Queue(raw_client, unique_name())
    core: Any = q._core

    def run(name: str, *args: bytes | str | int | float) -> Any:
        call = core._call(name, *args)
        return raw_client.eval(SCRIPTS[name].source, len(call.keys), *call.keys, *call.args)

    assert delayq.MAX_BATCH == 1000 and MAX_LOCK_TTL_S * 1000 == 43_200_000  # the scripts' own bounds
    q.enqueue_many([b"x"] * 1001)
    (held,) = q.dequeue(1, lock_ttl=30)
    before = snapshot(raw_client, q)
    good = (5, 30_000, "0123456789abcdef")
    cases: list[tuple[float, int | str, str]] = [
        (1001, 30_000, good[2]),
        (0, 30_000, good[2]),
        (1.5, 30_000, good[2]),
        (5, "inf", good[2]),
        (5, "nan", good[2]),
        (5, 0, good[2]),
        (5, 43_200_001, good[2]),
        (5, 30_000, "abc/j1abcdefabcd"),
        (5, 30_000, "0123456789ABCDEF"),
        (5, 30_000, "0123456789abcde"),
    ]
    for batch, ttl, token in cases:
        with pytest.raises(redis.ResponseError):
            run("dequeue", batch, ttl, token, 0, 0, "", 0, 0)
        assert snapshot(raw_client, q) == before, (batch, ttl, token)
    for ttl in ("inf", "nan", 0, 43_200_001):
        with pytest.raises(redis.ResponseError):
            run("extend", held.id, held.token, ttl)
        assert snapshot(raw_client, q) == before, ttl
    assert len(run("dequeue", *good, 0, 0, "", 0, 0)) == 4 + 3 * 5  # the good call still claims
