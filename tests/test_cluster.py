"""Redis Cluster: one slot per script (as Redis sees it), scripts loaded where the call lands,
and what a failover keeps and loses."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.cluster
import redis.exceptions
from redis.crc import key_slot

import delayq
from delayq._scripts import SCRIPTS
from delayq._server import RedisCluster, ServerUnavailable
from delayq._steps import Call, Step
from delayq.periodic import PeriodicJob, Scheduler, every
from tests.helpers import no_server, unique_name

T = TypeVar("T")


def every_operation(q: delayq.Queue) -> None:
    """Run each public operation once (every script), checking that each did its job."""
    assert q.enqueue(b"x", id="a") == "a"
    assert q.enqueue_many([b"y", b"z"], ids=["b", "c"]) == ["b", "c"]
    assert q.reschedule("c", delay=0)
    assert {p.id for p in q.peek()} == {"a", "b", "c"}
    jobs = q.dequeue(2, 30)
    assert len(jobs) == 2
    assert q.extend(jobs[0], 30)
    assert q.nack(jobs[1], error="e")
    assert q.ack(jobs[0])
    (back,) = q.dequeue(1, 30)
    assert q.release(back)
    acked, more = q.ack_and_dequeue([], 5)
    assert acked == 0 and len(more) == 2
    assert q.ack_many(more) == 2
    assert q.enqueue(b"w", id="d") == "d"
    assert q.cancel("d")
    assert q.dead_letters() == []
    assert q.redrive() == 0
    assert q.stats().total == 0
    assert q.purge() == 0
    # looking and steering
    assert q.enqueue(b"v", id="e") == "e"
    info = q.get("e")
    assert info is not None and info.state == "ready"
    assert [j.id for j in q.list_jobs("ready").jobs] == ["e"]
    assert q.pause() and q.dequeue() == [] and q.resume()
    assert q.cancel("e")
    scheduler = Scheduler(q, [PeriodicJob("beat", every(3600), b"p", missed="run_once")])
    assert len(scheduler.run_pending()) == 1
    assert scheduler.state()[0].last_ms is not None
    assert q.purge() == 1


def recorded_calls(q: delayq.Queue) -> list[Call]:
    calls: list[Call] = []
    execute = q._execute

    def record(step: Step) -> Any:
        if isinstance(step, Call):
            calls.append(step)
        return execute(step)

    q._execute = record  # type: ignore[method-assign]
    every_operation(q)
    return calls


@pytest.fixture
def cluster_client(cluster_url: str) -> Iterator[redis.cluster.RedisCluster]:
    client = redis.cluster.RedisCluster.from_url(cluster_url)
    yield client
    client.close()


@pytest.mark.parametrize("shards", [1, 3])
def test_every_script_call_touches_one_slot_as_redis_sees_it(cluster_client: redis.cluster.RedisCluster, shards: int) -> None:
    name = unique_name("slots")
    q = delayq.Queue(cluster_client, name, shards=shards)
    calls = recorded_calls(q)
    assert {c.script.name for c in calls} == set(SCRIPTS)
    node = cluster_client.get_random_node()
    direct = redis.Redis(host=node.host, port=node.port)
    tags = set()
    for call in calls:
        seen = direct.command_getkeys("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        slots = {key_slot(k if isinstance(k, bytes) else k.encode()) for k in seen}
        assert len(slots) == 1, (call.script.name, seen)
        tags.add(slots.pop())
    assert len(tags) == shards
    direct.close()


@pytest.mark.parametrize("shards", [1, 3])
def test_scripts_touch_no_key_outside_their_tag_on_the_cluster(
    cluster_client: redis.cluster.RedisCluster, cluster_url: str, shards: int
) -> None:
    """Redis checks every key a script touches against the ACL, on the node that runs it: a
    user allowed only the queue's {tag} keys runs every operation on every node."""
    from tests.test_scripts import ACL_COMMANDS  # noqa: PLC0415

    name = unique_name("acl")
    core = delayq.Queue(cluster_client, name, shards=shards)._core
    tags = [c.tag for c in getattr(core, "shards", [core])]
    user, password = f"u-{name}", f"pw-{name}"
    patterns = [f"~delayq:{{{tag}}}:*" for tag in tags]
    nodes = cluster_client.get_nodes()
    for node in nodes:
        direct = redis.Redis(host=node.host, port=node.port)
        direct.execute_command(
            "ACL",
            "SETUSER",
            user,
            "on",
            f">{password}",
            "resetkeys",
            *patterns,
            "-@all",
            "+cluster|slots",
            "+cluster|shards",
            "+command",
            *ACL_COMMANDS.split(),
        )
        direct.close()
    try:
        limited = redis.cluster.RedisCluster.from_url(cluster_url, username=user, password=password)
        every_operation(delayq.Queue(limited, name, shards=shards))
        with pytest.raises(delayq.ScriptError, match=r"(?i)no permissions|NOPERM"):
            delayq.Queue(limited, name + "-other").enqueue(b"x")
        limited.close()
    finally:
        for node in nodes:
            direct = redis.Redis(host=node.host, port=node.port)
            direct.acl_deluser(user)
            direct.close()


def test_noscript_on_the_serving_node_is_recovered(cluster_client: redis.cluster.RedisCluster) -> None:
    name = unique_name("noscript")
    q = delayq.Queue(cluster_client, name)
    q.enqueue_many([b"a", b"b"])
    key = q._core.keys["due"]  # type: ignore[union-attr]
    node = cluster_client.get_node_from_key(key)
    sha = delayq._scripts.SCRIPTS["dequeue"].sha
    direct = redis.Redis(host=node.host, port=node.port)
    direct.script_load(delayq._scripts.SCRIPTS["dequeue"].source)
    direct.script_flush()  # this node only: the others keep their scripts
    assert direct.script_exists(sha) == [False]
    jobs = q.dequeue(5)
    assert len(jobs) == 2
    assert direct.script_exists(sha) == [True]
    direct.close()
    assert q.ack_many(jobs) == 2


# ---------------------------------------------------------------- failover


@pytest.fixture
def own_cluster() -> Iterator[RedisCluster]:
    """A cluster of its own for a test that kills nodes."""
    if os.environ.get("DELAYQ_CLUSTER_URL"):
        pytest.skip("kills nodes: runs only on a local cluster it starts itself, not on $DELAYQ_CLUSTER_URL")
    try:
        cluster = RedisCluster(masters=3, replicas=1, node_timeout_ms=1000).start()
    except ServerUnavailable as exc:
        no_server(str(exc))
    yield cluster
    cluster.stop()


def retrying(action: Callable[[], T], seconds: float = 30) -> T:
    """What a client that retries does: try until the cluster has failed over."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, redis.exceptions.ClusterError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"the queue did not come back within {seconds}s: {exc!r}") from exc
            time.sleep(0.2)


def master_and_replica(cluster: RedisCluster, client: redis.cluster.RedisCluster, key: str) -> tuple[Any, Any]:
    """The RedisServer processes of the master serving ``key`` and of its replica."""
    port = client.get_node_from_key(key).port
    by_port = {n.port: n for n in cluster.nodes}
    master = by_port[port]
    raw = redis.Redis(port=port)
    replica_port = int(raw.info("replication")["slave0"]["port"])
    raw.close()
    return master, by_port[replica_port]


def test_failover_keeps_replicated_jobs_and_loses_an_unreplicated_enqueue(own_cluster: RedisCluster) -> None:
    client = redis.cluster.RedisCluster.from_url(own_cluster.url)
    q = delayq.Queue(client, unique_name("failover"))
    ids = q.enqueue_many([f"job-{i}".encode() for i in range(200)])
    master, replica = master_and_replica(own_cluster, client, q._core.keys["due"])  # type: ignore[union-attr]
    direct = redis.Redis(port=master.port)
    assert direct.execute_command("WAIT", 1, 5000) == 1

    # an enqueue the master acknowledges while its replica is cut off: never replicated
    assert replica.proc is not None and master.proc is not None
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        # a partition: the master drops its replica's link, and the stopped replica cannot reconnect
        direct.execute_command("CLIENT", "KILL", "TYPE", "replica")
        # written through one connection to the master, so that WAIT on it speaks of this write
        assert delayq.Queue(direct, q.name).enqueue(b"unreplicated", id="lost") == "lost"
        assert direct.execute_command("WAIT", 1, 200) == 0, "no replica has it"
        master.proc.kill()
        master.proc.wait()
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
    direct.close()

    stats = retrying(q.stats)  # the replica takes over; the client follows the new topology
    assert stats.ready == 200, "every replicated job survived"
    assert retrying(lambda: q.cancel("lost")) is False, "the unreplicated enqueue is gone"
    got = retrying(lambda: q.dequeue(1000))  # the new master has not seen the scripts: NOSCRIPT, reload
    assert sorted(j.id for j in got) == sorted(i for i in ids if i)
    assert q.ack_many(got) == 200
    assert q.stats().total == 0
    client.close()
