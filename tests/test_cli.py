"""The `delayq` command line: every command, its JSON output, and its error paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

import delayq
from delayq.__main__ import main
from tests.helpers import unique_name


@pytest.fixture
def queue_name(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh queue name; the CLI finds the server through $DELAYQ_REDIS_URL."""
    monkeypatch.setenv("DELAYQ_REDIS_URL", redis_url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    return unique_name("cli")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "delayq", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        cwd=cwd,
        check=False,
        env=dict(os.environ),
    )


def test_enqueue_stats_peek_cancel(queue_name: str, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "enqueue", queue_name, "hello", "--id", "a")
    assert (code, out.strip()) == (0, "a")
    code, out, _ = run(capsys, "enqueue", queue_name, "again", "--id", "a", "--json")
    assert (code, json.loads(out)) == (0, {"id": "a", "stored": False})
    code, out, _ = run(capsys, "enqueue", queue_name, "later", "--delay", "60", "--json")
    later = json.loads(out)["id"]
    code, out, _ = run(capsys, "stats", queue_name, "--json")
    data = json.loads(out)
    assert 0 <= data.pop("oldest_ready_age") < 5
    assert data == {"queue": queue_name, "ready": 1, "delayed": 1, "in_flight": 0, "dead": 0, "paused": False}
    code, out, _ = run(capsys, "stats", queue_name)
    assert "ready             1" in out and "paused            no" in out
    code, out, _ = run(capsys, "peek", queue_name, "--json")
    assert [(j["id"], j["payload"]) for j in json.loads(out)] == [("a", "hello"), (later, "later")]
    code, out, _ = run(capsys, "peek", queue_name, "--limit", "1")
    assert out.startswith("a  due=") and "payload=hello" in out
    code, out, _ = run(capsys, "cancel", queue_name, later)
    assert (code, out.strip()) == (0, f"cancelled {later}")
    code, out, _ = run(capsys, "cancel", queue_name, later)
    assert code == 1 and "no job" in out
    code, out, _ = run(capsys, "enqueue", queue_name, "x", "--at", "2000-01-01T00:00:00+00:00", "--id", "past")
    assert code == 0
    assert delayq.Queue(redis.Redis.from_url(redis_url), queue_name).stats().ready == 2


def test_dead_and_redrive(queue_name: str, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    q = delayq.Queue(redis.Redis.from_url(redis_url), queue_name, max_attempts=1)
    q.enqueue(b"\xff\x00binary", id="bin")
    q.enqueue(b"text", id="txt")
    for job in q.dequeue(5):
        q.nack(job, error="boom")
    code, out, _ = run(capsys, "dead", queue_name, "--json")
    dead = {d["id"]: d for d in json.loads(out)}
    assert dead["bin"]["payload_base64"] == "/wBiaW5hcnk=" and dead["txt"]["payload"] == "text"
    assert dead["txt"]["error"] == "boom" and dead["txt"]["attempts"] == 1
    code, out, _ = run(capsys, "dead", queue_name)
    assert "error='boom'" in out
    code, out, _ = run(capsys, "redrive", queue_name, "txt")
    assert (code, out.strip()) == (0, "1 job(s) back in the queue")
    code, out, _ = run(capsys, "redrive", queue_name, "--json")
    assert json.loads(out) == {"redriven": 1}
    assert q.stats().ready == 2


def test_purge_asks_unless_yes(queue_name: str, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    q = delayq.Queue(redis.Redis.from_url(redis_url), queue_name)
    q.enqueue_many([b"a", b"b", b"c"])
    result = cli("purge", queue_name, stdin=b"y\n")  # stdin is not a terminal: it will not ask
    assert result.returncode == 2 and b"--yes" in result.stderr and b"Traceback" not in result.stderr
    assert q.stats().total == 3
    code, out, _ = run(capsys, "purge", queue_name, "--yes")
    assert (code, out.strip()) == (0, "purged 3 job(s)")
    assert q.stats().total == 0


def test_enqueue_reads_standard_input(queue_name: str, redis_url: str) -> None:
    result = cli("enqueue", queue_name, "--id", "stdin", stdin=b"\x00from stdin\xff")
    assert result.returncode == 0, result.stderr
    (job,) = delayq.Queue(redis.Redis.from_url(redis_url), queue_name).dequeue()
    assert (job.id, job.payload) == ("stdin", b"\x00from stdin\xff")


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["stats", "q", "--url", "http://x"], 2, "bad Redis URL"),
        (["stats", "q", "--url", "redis://127.0.0.1:1/0"], 1, "cannot reach Redis"),
        (["stats", "q", "--cluster"], 1, "Cluster mode is not enabled"),
        (["stats", "bad{name}"], 2, "bad{name}"),
        (["enqueue", "q", "x", "--delay", "-5"], 2, "-5"),
        (["enqueue", "q", "x", "--delay", "soon"], 2, "soon"),
        (["enqueue", "q", "x", "--at", "tomorrow"], 2, "tomorrow"),
        (["enqueue", "q", "x", "--at", "2030-01-01T00:00:00"], 2, "timezone"),
        (["peek", "q", "--limit", "0"], 2, "limit"),
        (["stats", "q", "--shards", "0"], 2, "shards"),
        (["worker", "nomodule", "q"], 2, "module:function"),
        (["worker", "no_such_module_xyz:f", "q"], 2, "cannot import"),
        (["worker", "json:nothing_here", "q"], 2, "not a callable"),
        (["nope"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_line_with_an_exit_status(queue_name: str, args: list[str], code: int, text: str) -> None:
    result = cli(*args)
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert text in err
    assert "Traceback" not in err
    # one line of error (argparse puts its usage lines before it)
    (line,) = [x for x in err.strip().splitlines() if not x.startswith(("usage:", " "))]
    assert text in line and "error:" in line


def test_url_comes_from_redis_url_too(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DELAYQ_REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    code, out, _ = run(capsys, "stats", unique_name("cli"), "--json")
    assert code == 0 and json.loads(out)["ready"] == 0


HANDLERS = """
import asyncio, time
def handle(job):
    if job.payload == b"fail":
        raise ValueError("no good")
async def ahandle(job):
    await asyncio.sleep(0)
def slow(job):
    time.sleep(0.5)
"""


@pytest.mark.parametrize("handler", ["handlers:handle", "handlers:ahandle"])
def test_worker_command_runs_and_stops_on_sigterm(redis_url: str, tmp_path: Path, handler: str) -> None:
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    name = unique_name("cliw")
    q = delayq.Queue(redis.Redis.from_url(redis_url), name, max_attempts=1)
    q.enqueue_many([b"ok"] * 10 + [b"fail"])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "delayq",
            "worker",
            handler,
            name,
            "--url",
            redis_url,
            "--max-attempts",
            "1",
            "--json",
            "--poll",
            "0.2",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while q.stats().ready + q.stats().in_flight > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    stats = json.loads(out.decode().strip().splitlines()[-1])
    expected_failures = 1 if handler.endswith(":handle") else 0
    assert stats["processed"] == 11 - expected_failures
    assert stats["dead_lettered"] == expected_failures
    assert q.stats().total == expected_failures
    assert b"worker started" in err
