"""The `delayq` commands that look and steer: show, pause, resume, queues, and web's refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import delayq
from delayq.__main__ import main
from tests.helpers import unique_name

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def queue(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> delayq.Queue:
    """A fresh queue; the CLI finds the server through $DELAYQ_REDIS_URL."""
    monkeypatch.setenv("DELAYQ_REDIS_URL", redis_url)
    return delayq.Queue(redis.Redis.from_url(redis_url), unique_name("admin"), max_attempts=1)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_show(queue: delayq.Queue, capsys: pytest.CaptureFixture[str]) -> None:
    queue.enqueue(b"\xff\x00bin", id="bin")
    (job,) = queue.dequeue()
    queue.nack(job, error="boom")
    queue.enqueue("héllo", id="txt", delay=60)
    code, out, _ = run(capsys, "show", queue.name, "bin", "--json")
    data = json.loads(out)
    assert code == 0 and data["state"] == "dead" and data["error"] == "boom" and data["attempts"] == 1
    assert data["payload_base64"] == "/wBiaW4=" and data["payload_size"] == 5 and "died" in data
    code, out, _ = run(capsys, "show", queue.name, "txt")
    assert code == 0 and "state         delayed" in out and "payload       héllo" in out and "due " in out
    code, out, _ = run(capsys, "show", queue.name, "nope")
    assert code == 1 and "no job 'nope'" in out


def test_pause_resume_and_stats(queue: delayq.Queue, capsys: pytest.CaptureFixture[str]) -> None:
    queue.enqueue(b"x")
    assert run(capsys, "pause", queue.name)[1].strip() == f"{queue.name}: paused"
    assert json.loads(run(capsys, "pause", queue.name, "--json")[1]) == {
        "queue": queue.name,
        "shards": 1,
        "paused": True,
        "changed": False,
    }
    assert queue.dequeue() == []
    _, out, _ = run(capsys, "stats", queue.name)
    assert "paused            yes" in out
    assert run(capsys, "resume", queue.name)[1].strip() == f"{queue.name}: resumed"
    assert "was not paused" in run(capsys, "resume", queue.name)[1]
    assert len(queue.dequeue()) == 1


def test_queues_lists_what_the_server_holds(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = unique_name("cliq")
    client = redis.Redis.from_url(redis_url)
    delayq.Queue(client, "a", prefix=prefix).enqueue_many([b"x"] * 3)
    delayq.Queue(client, "b", prefix=prefix, shards=2).enqueue_many([b"y"] * 20, delay=60)
    code, out, _ = run(capsys, "queues", "--url", redis_url, "--prefix", prefix, "--json")
    rows = {r["queue"]: r for r in json.loads(out)}
    assert code == 0 and rows["a"]["ready"] == 3 and rows["b"]["shards"] == 2 and rows["b"]["delayed"] == 20
    code, out, _ = run(capsys, "queues", "--url", redis_url, "--prefix", prefix)
    assert out.splitlines()[0].startswith("queue") and len(out.splitlines()) == 3
    assert run(capsys, "queues", "--url", redis_url, "--prefix", unique_name("none"))[1].strip() == "(no queues)"
    client.hset(f"{prefix}:{{c}}:due", "not", "a zset")  # another program's hash where a queue's zset goes ...
    client.zadd(f"{prefix}:{{c}}:dead", {"x": 1})  # ... next to a key of the right type: "c" is found
    code, out, _ = run(capsys, "queues", "--url", redis_url, "--prefix", prefix)
    lines = out.splitlines()
    assert code == 1 and len(lines) == 4 and lines[3].startswith("c ") and "WRONGTYPE" in lines[3], out
    assert lines[1].startswith("a ") and lines[2].startswith("b "), "the other queues still show"
    client.close()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "delayq", *args], capture_output=True, timeout=60, check=False, env=full)


def test_web_refuses_to_open_actions_to_the_network_without_credentials(redis_url: str) -> None:
    bare = {"DELAYQ_WEB_USERNAME": "", "DELAYQ_WEB_PASSWORD": ""}
    done = cli("web", "--url", redis_url, "--host", "0.0.0.0", "--port", "1", env=bare)
    assert done.returncode == 2 and b"DELAYQ_WEB_USERNAME" in done.stderr and b"Traceback" not in done.stderr
    done = cli("web", "--url", "redis://127.0.0.1:1/0")
    assert done.returncode == 1 and b"cannot reach Redis" in done.stderr
    assert cli("web", "--refresh", "0").returncode == 2
    done = cli("show", "q", "x", "--url", redis_url, "--shards", "0")
    assert done.returncode == 2 and b"shards" in done.stderr


def test_pause_without_shards_finds_the_sharded_queue(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = unique_name("shp")
    client = redis.Redis.from_url(redis_url)
    sharded = delayq.Queue(client, "orders", prefix=prefix, shards=4)
    sharded.enqueue_many([b"x"] * 8)
    code, out, _ = run(capsys, "pause", "orders", "--url", redis_url, "--prefix", prefix)
    assert code == 0 and out.strip() == "orders (4 shards): paused"
    assert sharded.stats().paused and sharded.dequeue(10) == []
    assert delayq.find_queues(client, prefix=prefix) == [delayq.QueueRef("orders", 4)], "no plain queue made up"
    (one,) = sharded.peek(1)
    code, out, _ = run(capsys, "show", "orders", one.id, "--url", redis_url, "--prefix", prefix, "--json")
    assert code == 0 and json.loads(out)["state"] == "ready"
    assert run(capsys, "resume", "orders", "--url", redis_url, "--prefix", prefix)[0] == 0 and not sharded.stats().paused
    delayq.Queue(client, "orders", prefix=prefix).enqueue(b"plain")  # now the name is two queues
    code, _, err = run(capsys, "pause", "orders", "--url", redis_url, "--prefix", prefix)
    assert code == 2 and "plain, 4 shards" in err and "--shards" in err and not sharded.stats().paused
    assert run(capsys, "pause", "orders", "--shards", "1", "--url", redis_url, "--prefix", prefix)[0] == 0
    assert not sharded.stats().paused
    code, out, _ = run(capsys, "pause", "nothing-here", "--url", redis_url, "--prefix", prefix)
    assert code == 0 and out.strip() == "nothing-here: paused"
    client.close()


def test_control_characters_never_reach_the_terminal(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = unique_name("esc")
    client = redis.Redis.from_url(redis_url)
    name, job_id = "q\x1b]0;owned\x07", "id\x1b[2J\r"
    q = delayq.Queue(client, name, prefix=prefix, max_attempts=1)
    q.enqueue("pay\x1b[31mload\u202e", id=job_id)
    (job,) = q.dequeue()
    q.nack(job, error="boom\x1b[1A\x9b")
    for args in (("show", name, job_id), ("show", name, "nope\x1b[H"), ("queues",), ("pause", name), ("resume", name)):
        code, out, err = run(capsys, *args, "--url", redis_url, "--prefix", prefix)
        assert code in (0, 1), args
        assert not any(ch in out + err for ch in "\x1b\x07\r\x9b\u202e"), (args, out)
    code, out, _ = run(capsys, "show", name, job_id, "--url", redis_url, "--prefix", prefix)
    assert "id\\x1b[2J\\r" in out and "pay\\x1b[31mload\\u202e" in out and "boom\\x1b[1A\\x9b" in out
    code, out, _ = run(capsys, "show", name, job_id, "--url", redis_url, "--prefix", prefix, "--json")
    assert json.loads(out)["error"] == "boom\x1b[1A\x9b", "JSON keeps the exact text, escaped by JSON"
    q.purge()
    client.close()


def test_a_port_in_use_is_one_line(redis_url: str) -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for command in ("web", "exporter"):
            done = cli(command, "--url", redis_url, "--port", port)
            assert done.returncode == 1, command
            assert (
                done.stderr.decode().strip()
                == f"delayq {command}: error: cannot listen on 127.0.0.1:{port}: Address already in use"
            )


def test_web_answers_to_loopback_its_host_and_allow_host() -> None:
    from delayq._cli_serve import LOOPBACK_HOSTS, _queue_refs, allowed_hosts  # noqa: PLC0415

    assert _queue_refs(["a", "a/3", "a/3/1", "b/x"]) == [
        delayq.QueueRef("a"),
        delayq.QueueRef("a", 3),
        delayq.QueueRef("a/3"),
        delayq.QueueRef("b/x"),
    ]
    from delayq.web import _security  # noqa: PLC0415

    assert LOOPBACK_HOSTS == _security.LOOPBACK_HOSTS
    assert allowed_hosts("127.0.0.1", None) is None  # then $DELAYQ_WEB_ALLOWED_HOSTS, else loopback
    assert allowed_hosts("0.0.0.0", None) is None
    assert allowed_hosts("10.1.2.3", None) == [*LOOPBACK_HOSTS, "10.1.2.3"]
    assert allowed_hosts("0.0.0.0", ["ops.example", "*.internal"]) == [*LOOPBACK_HOSTS, "ops.example", "*.internal"]


def test_show_prints_the_start_of_a_large_payload(queue: delayq.Queue, capsys: pytest.CaptureFixture[str]) -> None:
    queue.enqueue("é" * 10_000, id="long")  # 20000 bytes; the 4096-byte cut splits no character
    code, out, _ = run(capsys, "show", queue.name, "long")
    (line,) = [x for x in out.splitlines() if x.startswith("payload")]
    assert code == 0 and line == "payload       " + "é" * 2048 + " ... (20000 bytes; --json shows all)"
    data = json.loads(run(capsys, "show", queue.name, "long", "--json")[1])
    assert data["payload"] == "é" * 10_000 and data["payload_size"] == 20_000
