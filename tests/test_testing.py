"""delayq.testing, as users use it: a clock they control, the inline runner, the README's example,
and the retry defaults it makes visible."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fakeredis
import pytest

import delayq
import delayq.aio
import delayq.testing
from delayq import Backoff, InvalidArgument, InvalidType, Job, JobPolicy, QueueStats
from delayq._cli_base import max_attempts_of
from delayq.testing import Clock, frozen_clock
from tests.helpers import Env, unique_name
from tests.helpers_tasks import drain, real_queue

ROOT = Path(__file__).resolve().parent.parent


def readme_files(section: str) -> dict[str, str]:
    """The code blocks of a README section that open with a ``# name.py`` line, by file name."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end > 0 else len(text)]
    files = {}
    for block in re.findall(r"```python\n(.*?)```", body, flags=re.S):
        first = block.splitlines()[0]
        if re.fullmatch(r"# \w+\.py", first):
            files[first[2:]] = block
    return files


@pytest.mark.parametrize("backend", ["fake", "real"])
def test_the_readme_testing_example_runs_as_a_test(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """The two files of the README's "Testing your code", taken from README.md and run by pytest:
    as written (fakeredis), and with its queue on the real server, as its comment suggests."""
    files = readme_files("Testing your code")
    assert sorted(files) == ["signup.py", "test_signup.py"]
    if backend == "real":
        url = request.getfixturevalue("redis_url")
        written = 'Queue(fakeredis.FakeRedis(), "emails")'
        assert files["test_signup.py"].count(written) == 1, "the README's queue line changed: update this test"
        on_server = f"Queue(redis.Redis.from_url({url!r}), {unique_name('readme')!r})"
        files["test_signup.py"] = "import redis\n" + files["test_signup.py"].replace(written, on_server)
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_signup.py"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}"),
        capture_output=True,
        timeout=120,
        check=False,
    )
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, out
    assert re.search(r"\b2 passed\b", out), out


@pytest.mark.parametrize("shards", [1, 3])
def test_a_job_for_an_hour_from_now_is_due_when_the_clock_says_so(env: Env, shards: int) -> None:
    q = env.queue(shards=shards)
    start = datetime(2031, 5, 1, 12, tzinfo=timezone.utc)
    with frozen_clock(real_queue(env, q), start=start) as clock:
        q.enqueue(b"later", delay=3600, id="later")
        assert q.dequeue() == []
        clock.advance(timedelta(minutes=59, seconds=59.999))
        assert q.stats() == QueueStats(ready=0, delayed=1, in_flight=0, dead=0)
        clock.advance(0.001)
        (job,) = q.dequeue(lock_ttl=60)
        assert job.due_ms == clock.now_ms == int(start.timestamp() * 1000) + 3_600_000
        assert clock.now() == start + timedelta(hours=1)
        # a lock expires by the clock too: the job comes back once it is moved past the lock
        clock.advance(59)
        assert q.dequeue() == []
        clock.advance(1)
        assert [(j.id, j.attempts) for j in q.dequeue()] == [("later", 2)]
    assert real_queue(env, q)._core.clock is None  # the server's clock again


def test_retries_wait_for_the_clock_and_the_default_is_twenty_attempts(env: Env) -> None:
    q = env.queue()  # the default max_attempts
    tries: list[int] = []

    def handler(job: Job) -> None:
        tries.append(job.attempts)
        raise RuntimeError("still broken")

    with frozen_clock(real_queue(env, q)) as clock:
        q.enqueue(b"x", id="x")
        (first,) = drain(env, q, handler, backoff=Backoff(base=10, factor=2, cap=60, jitter=0))
        assert (first.kind, first.delay, first.error) == ("retried", 10, "RuntimeError: still broken")
        assert drain(env, q, handler) == []  # the retry waits for the clock
        outcomes = []
        for _ in range(30):
            clock.advance(300)  # past the default backoff's cap
            outcomes += drain(env, q, handler)
    assert tries == list(range(1, 21))
    assert [o.kind for o in outcomes][-2:] == ["retried", "dead_lettered"]
    (dead,) = q.dead_letters()
    assert (dead.attempts, dead.error) == (delayq.DEFAULT_MAX_ATTEMPTS, "RuntimeError: still broken")


def test_none_still_means_retry_forever() -> None:
    q = delayq.Queue(fakeredis.FakeRedis(), "forever", max_attempts=None)
    assert "max_attempts=None" in repr(q) and "max_attempts=20" in repr(delayq.Queue(fakeredis.FakeRedis(), "d"))
    with frozen_clock(q) as clock:
        q.enqueue(b"x")
        for _ in range(25):
            assert [o.kind for o in delayq.testing.run_due(q, lambda job: 1 / 0)] == ["retried"]
            clock.advance(300)
    assert q.dead_letters() == []
    assert max_attempts_of(argparse.Namespace(max_attempts=0)) is None
    assert max_attempts_of(argparse.Namespace(max_attempts=5)) == 5
    assert max_attempts_of(argparse.Namespace()) == 20


def test_async_handlers_and_timeouts(env: Env) -> None:
    q = env.queue()
    runs: list[str] = []

    async def handler(job: Job) -> str:
        runs.append(job.id)
        if job.id == "slow":
            await asyncio.sleep(5)
        return job.id.upper()

    def policy(job: Job) -> JobPolicy:
        return JobPolicy(max_attempts=1, timeout=0.05)

    q.enqueue_many([b"", b""], ids=["fast", "slow"])
    outcomes = {o.id: o for o in drain(env, q, handler, policy=policy)}
    assert outcomes["fast"].kind == "processed" and outcomes["fast"].result == "FAST"
    assert outcomes["slow"].kind == "dead_lettered"
    assert outcomes["slow"].error == "TimeoutError: the handler ran longer than its timeout of 0.05s"
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=1)


def test_a_cancelled_job_is_reported_as_lock_lost(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"", id="gone")
    other = delayq.Queue(env.raw, q.name)  # another client cancels it while it runs
    (outcome,) = drain(env, q, lambda job: other.cancel(job.id))
    assert outcome.kind == "lock_lost"


def test_bad_arguments() -> None:
    q = delayq.Queue(fakeredis.FakeRedis(), "bad")
    with pytest.raises(InvalidArgument, match="at least one queue"), frozen_clock():
        pass
    with pytest.raises(InvalidType, match="delayq queue"), frozen_clock(object()):
        pass
    with pytest.raises(InvalidArgument, match="timezone-aware"), frozen_clock(q, start=datetime(2030, 1, 1)):
        pass
    clock = Clock(0)
    with pytest.raises(InvalidArgument, match="advance"):
        clock.advance(-1)
    with pytest.raises(InvalidType, match="handler must be callable"):
        delayq.testing.run_due(q, "handler")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="limit"):
        delayq.testing.run_due(q, print, limit=0)
    with pytest.raises(InvalidType, match="arun_due"):
        delayq.testing.run_due("queue", print)  # type: ignore[arg-type]
    assert q._core.clock is None


def test_one_clock_for_several_queues() -> None:
    server = fakeredis.FakeServer()
    a = delayq.Queue(fakeredis.FakeRedis(server=server), "a")
    b: Any = delayq.aio.Queue(fakeredis.FakeAsyncRedis(server=server), "b", shards=2)
    with frozen_clock(a, b) as clock:
        assert a._core.clock is clock and b._core.clock is clock
        assert all(shard.clock is clock for shard in b._core.shards)
    assert a._core.clock is None and b._core.clock is None
