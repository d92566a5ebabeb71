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
    assert json.loads(run(capsys, "pause", queue.name, "--json")[1]) == {"queue": queue.name, "paused": True, "changed": False}
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
