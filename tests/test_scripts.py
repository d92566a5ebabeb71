"""The Lua scripts' headers, and the keys they touch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

import delayq
from delayq._core import QueueCore
from delayq._scripts import SCRIPTS, header_keys
from delayq._validate import SENTINEL
from delayq.periodic import PeriodicJob, Scheduler, every
from tests.helpers import Env, unique_name
from tests.snapshots import snapshot

# the README's ACL line gives exactly these
ACL_COMMANDS = (
    "+evalsha +script|load +time +hget +hmget +hset +hdel +zadd +zrem +zscore +zmscore +zrange +zrangebyscore "
    "+zremrangebyscore +zremrangebyrank +zcount +zcard +hlen +exists +del +unlink +lpush +ltrim +blpop +pexpire"
)
LUA = Path(__file__).resolve().parent.parent / "lua"


def header(name: str) -> str:
    text = SCRIPTS[name].source
    assert text.startswith("--[["), f"{name}.lua must open with a --[[ header ]] block"
    return text[: text.index("]]")]


def test_every_lua_file_is_registered() -> None:
    assert sorted(p.stem for p in LUA.glob("*.lua")) == sorted(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_header_keys_are_what_python_passes(name: str) -> None:
    declared = re.findall(r"^KEYS\[(\d+)\]\s+(\w+)", header(name), flags=re.M)
    assert [int(i) for i, _ in declared] == list(range(1, len(declared) + 1))
    assert tuple(role for _, role in declared) == SCRIPTS[name].keys
    core = QueueCore("q")
    assert core._call(name).keys == tuple(core.keys[role] for _, role in declared)


def test_a_header_whose_keys_are_misnumbered_is_refused() -> None:
    with pytest.raises(ValueError, match="not numbered"):
        header_keys("x", "--[[ x\nKEYS[1] due (zset)\nKEYS[3] lease (zset)\n]]\n")
    with pytest.raises(ValueError, match="header"):
        header_keys("x", "local rcall = redis.call\n")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_header_has_argv_returns_and_cost(name: str) -> None:
    text = header(name)
    assert re.search(r"^ARGV\[1\] now\s+\(ms\)", text, flags=re.M), "every script takes now in ARGV[1]"
    assert "Returns:" in text
    assert re.search(r"^Cost: O\(", text, flags=re.M)
    body = SCRIPTS[name].source[len(text) :]
    assert "local rcall = redis.call" in body
    assert "cmsgpack" not in body and "math.random" not in body
    for line in body.splitlines():
        if "KEYS[" in line:
            assert re.fullmatch(r"local \w+_key(, \w+_key)* = KEYS\[\d+\](, KEYS\[\d+\])*", line), "keys named once"
    # Python sends now first ("" = the server's clock), whatever the script
    core = QueueCore("q")
    assert core._call(name).args[:1] == ("",)
    core.clock = lambda: 1234
    assert core._call(name).args[:1] == ("1234",)


# The shared fragments: each script is self-contained (it runs under redis-cli --eval), so a
# fragment is copied into every script that needs it, between "-- shared fragment: NAME" and
# "-- end of shared fragment"; every copy must be the same, and what a fragment does is done
# nowhere outside one (the last column: a line only a copy of that fragment may hold).
FRAGMENTS = {
    "clock": "rcall('TIME')",
    "wake": "rcall('LPUSH', wake_key",
    "wake_before": "rcall('ZRANGEBYSCORE', waiters_key, '(' ..",
    "drop_idle": "rcall('DEL', lease_key)",
    "holds": "rcall('ZMSCORE', claims_key, call,",
    "acks": "rcall('ZMSCORE', lease_key",
    "register": "rcall('ZREMRANGEBYSCORE', claims_key",
}
_FRAGMENT = re.compile(r"^-- shared fragment: (\w+)\n(.*?)^-- end of shared fragment$", flags=re.M | re.S)


def fragments(source: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, text in _FRAGMENT.findall(source):
        found.setdefault(name, []).append(text)
    return found


def test_the_shared_fragments_are_the_same_in_every_script() -> None:
    copies: dict[str, dict[str, str]] = {}
    for name, script in SCRIPTS.items():
        for fragment, texts in fragments(script.source).items():
            assert fragment in FRAGMENTS, f"{name}.lua: unknown fragment {fragment!r}"
            assert len(texts) == 1, f"{name}.lua holds {fragment!r} twice"
            copies.setdefault(fragment, {})[name] = texts[0]
        outside = _FRAGMENT.sub("", script.source)
        for fragment, line in FRAGMENTS.items():
            assert line not in outside, f"{name}.lua does what {fragment!r} does outside the shared copy"
    for fragment, by_script in copies.items():
        assert len(set(by_script.values())) == 1, f"the copies of {fragment!r} differ: {sorted(by_script)}"
    # the scripts that read the clock, push wake-ups, check tokens, drop idle keys
    assert set(copies["clock"]) == {n for n, s in SCRIPTS.items() if not re.search(r"^ARGV\[1\] now .*not read", s.source, re.M)}
    assert {"ack", "dequeue"} <= set(copies["acks"]) and {"extend", "nack", "release"} <= set(copies["holds"])
    assert {"ack", "dequeue", "nack", "release", "cancel"} <= set(copies["drop_idle"])
    assert {"enqueue", "nack", "release", "reschedule"} <= set(copies["wake_before"])


def test_the_sentinel_is_the_same_everywhere() -> None:
    for name, script in SCRIPTS.items():
        for found in re.findall(r"SENTINEL = '([^']*)'", script.source):
            assert found == SENTINEL, name
    assert "SENTINEL = '" in SCRIPTS["dequeue"].source
    with pytest.raises(delayq.InvalidArgument, match="reserved"):
        QueueCore("q").cancel(SENTINEL).send(None)


def test_every_key_of_a_queue_is_in_one_slot() -> None:
    for name in ("emails", "a:b c", "заказы", "x" * 200):
        core = QueueCore(name, prefix="app")
        slots = {key_slot(k.encode()) for k in core.keys.values()}
        assert len(slots) == 1
        assert slots == {key_slot(name.encode())}


def test_scripts_touch_only_the_queues_keys(redis_url: str) -> None:
    """Redis checks every key a script touches against the ACL: a user allowed only this
    queue's keys can run the whole API, and one allowed another queue's keys cannot."""
    admin = redis.Redis.from_url(url := redis_url)
    name, other = unique_name("acl"), unique_name("acl-other")
    user, password = f"u-{name}", "pw-" + name
    commands = ACL_COMMANDS
    acl = ["ACL", "SETUSER", user, "on", f">{password}", "resetkeys", f"~delayq:{{{name}}}:*", "-@all", *commands.split()]
    admin.execute_command(*acl)
    try:
        client = redis.Redis.from_url(url, username=user, password=password)
        q = delayq.Queue(client, name, max_attempts=1)
        q.enqueue(b"w", id="0", delay=0.15)
        (waited,) = q.dequeue(1, wait=2)  # a long-poll: registered as a waiter, blocked, woken
        q.ack(waited)
        q.enqueue(b"x", id="1")
        q.enqueue_many([b"y", b"z"], ids=["2", "3"], delay=0)
        q.reschedule("3", delay=0)
        q.peek()
        jobs = q.dequeue(2, 30)
        q.extend(jobs[0], 30)
        q.ack(jobs[0])
        q.nack(jobs[1], error="e")
        q.release(q.dequeue(1, 30)[0])
        q.dead_letters()
        q.redrive()
        q.ack_and_dequeue([], 1)
        q.ack_many([])
        q.cancel("3")
        q.stats()
        q.get("2")
        q.list_jobs("dead")
        q.pause()
        q.resume()
        q.purge()
        scheduler = Scheduler(q, [PeriodicJob("beat", every(3600), b"p", missed="run_once")])
        assert len(scheduler.run_pending()) == 1 and scheduler.state()[0].last_ms is not None
        with pytest.raises(delayq.ScriptError, match=r"(?i)no permissions|NOPERM"):
            delayq.Queue(client, other).enqueue(b"x")
        client.close()
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_a_claim_writes_only_leases_and_nothing_stays_when_idle(redis_url: str) -> None:
    """A small lease set would be a listpack (O(n) inserts); the sentinel keeps it a skiplist,
    and the worker loop never empties it. A first claim writes no `meta` (only a claim used
    up does), one registry entry a call, and an acked call's entry goes with its last job. With
    no job in flight, neither lease nor registry is left behind."""
    client = redis.Redis.from_url(redis_url)
    q = delayq.Queue(client, unique_name("enc"))
    keys = q._core.keys  # type: ignore[union-attr]
    q.enqueue_many([b"x"] * 30)
    jobs = q.dequeue(10)
    assert client.object("encoding", keys["lease"]) == b"skiplist"
    assert client.exists(keys["meta"]) == 0
    assert client.zcard(keys["claims"]) == 1
    acked, jobs = q.ack_and_dequeue(jobs, 10)
    assert acked == 10
    assert client.object("encoding", keys["lease"]) == b"skiplist"
    assert client.zcard(keys["claims"]) == 1, "the acked call's entry went, the new call's came"
    assert q.stats() == delayq.QueueStats(ready=10, delayed=0, in_flight=10, dead=0)
    q.ack_many(jobs)
    assert client.exists(keys["lease"], keys["meta"], keys["claims"]) == 0
    assert q.purge() == 10
    client.close()


def test_a_stale_token_never_holds_a_claim_made_in_the_same_millisecond(env: Env) -> None:
    """A lease's score is its expiry plus a fraction of a millisecond; the claims registry gives
    no two live claims the same score. With the clock stopped, every claim of a job has the same
    expiry, yet a token of an earlier claim (nacked, released, acked and the id enqueued again)
    never acks, nacks, extends or releases a later one; a token extended since its claim still
    holds its job, and one call's jobs are acked together."""
    q = env.queue()
    q._core.clock = lambda: 1_800_000_000_000
    q.enqueue_many([b"a", b"b"], ids=["a", "b"])
    first = q.dequeue(2, lock_ttl=30)
    assert q.extend(first[0], 30) is True
    assert q.ack_many(first) == 2, "the extended job and its unextended sibling"
    for end in ("nack", "release", "ack"):
        q.enqueue(b"c", id="c")
        (old,) = q.dequeue(1, lock_ttl=30)
        if end == "nack":
            assert q.nack(old) is True
        elif end == "release":
            assert q.release(old) is True
        else:
            assert q.ack(old) is True
            q.enqueue(b"c", id="c")
        for _ in range(20):  # claims of the same job, all expiring in the same millisecond
            (new,) = q.dequeue(1, lock_ttl=30)
            assert new.lock_expires_ms == old.lock_expires_ms
            assert q.ack(old) is False
            assert q.extend(old, 30) is False
            assert q.nack(old) is False
            assert q.release(old) is False
            assert q.release(new) is True
        (new,) = q.dequeue(1, lock_ttl=30)
        assert q.ack(new) is True
    assert q.stats().total == 0
    assert snapshot(env.raw, q) == {}
