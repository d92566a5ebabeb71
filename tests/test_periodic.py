"""Periodic jobs: cron and interval slots (time zones, DST), each slot enqueued once however many
schedulers run (in one process or two), markers that outlive the run, and the missed-run policy."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from fakeredis import TcpFakeServer

import delayq
from delayq import InvalidArgument, InvalidType
from delayq.periodic import PeriodicJob, Scheduler, cron, every, make_schedule, slot_text
from delayq.tasks import Tasks
from delayq.testing import frozen_clock
from tests.helpers import Env, unique_name
from tests.helpers_tasks import drain, real_queue, scheduler, tick

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
ROOT = Path(__file__).resolve().parent.parent


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def slots(schedule: Any, start: datetime, count: int) -> list[datetime]:
    out, t = [], ms(start)
    for _ in range(count):
        t = schedule.next_after(t)
        out.append(datetime.fromtimestamp(t / 1000, tz=PARIS))
    return out


def test_cron_slots_follow_the_time_zone_across_dst() -> None:
    nightly = cron("30 2 * * *", tz="Europe/Paris")
    # spring forward (02:00 -> 03:00): 02:30 does not exist that night and runs at 03:00
    spring = slots(nightly, datetime(2025, 3, 29, 12, tzinfo=PARIS), 3)
    assert [s.strftime("%d %H:%M %Z") for s in spring] == ["30 03:00 CEST", "31 02:30 CEST", "01 02:30 CEST"]
    # fall back (03:00 -> 02:00): 02:30 happens twice and runs once
    fall = slots(nightly, datetime(2025, 10, 25, 12, tzinfo=PARIS), 3)
    assert [s.strftime("%d %H:%M %Z") for s in fall] == ["26 02:30 CEST", "27 02:30 CET", "28 02:30 CET"]
    # a schedule by elapsed time runs through both passes of the repeated hour
    half_hourly = slots(cron("*/30 * * * *", tz="Europe/Paris"), datetime(2025, 10, 26, 1, 50, tzinfo=PARIS), 5)
    assert [s.strftime("%H:%M %Z") for s in half_hourly] == ["02:00 CEST", "02:30 CEST", "02:00 CET", "02:30 CET", "03:00 CET"]
    # the latest slot from inside the repeated hour's second pass is its first pass's run
    inside = ms(datetime(2025, 10, 26, 2, 10, fold=1, tzinfo=PARIS))
    assert slot_text(nightly.latest_at_or_before(inside) or 0) == "2025-10-26T00:30:00Z"
    assert nightly.next_after(inside) == ms(datetime(2025, 10, 27, 2, 30, tzinfo=PARIS))
    # weekdays at 9 in New York: Friday after 9 -> Monday 9 (EST after the November change)
    ny = ZoneInfo("America/New_York")
    weekdays = cron("0 9 * * MON-FRI", tz="America/New_York")
    friday = ms(datetime(2025, 10, 31, 10, tzinfo=ny))
    assert weekdays.next_after(friday) == ms(datetime(2025, 11, 3, 9, tzinfo=ny))
    assert slot_text(weekdays.next_after(friday) or 0) == "2025-11-03T14:00:00Z"
    assert cron("@daily", tz="Asia/Tokyo").next_after(0) == ms(datetime(1970, 1, 2, tzinfo=ZoneInfo("Asia/Tokyo")))
    assert cron("*/10 * * * * *").next_after(5_000) == 10_000  # six fields: seconds first


def test_intervals_align_to_the_epoch() -> None:
    ten = every(timedelta(minutes=10))
    assert ten.next_after(ms(datetime(2025, 1, 1, 8, 3, tzinfo=UTC))) == ms(datetime(2025, 1, 1, 8, 10, tzinfo=UTC))
    assert ten.next_after(ms(datetime(2025, 1, 1, 8, 10, tzinfo=UTC))) == ms(datetime(2025, 1, 1, 8, 20, tzinfo=UTC))
    assert ten.latest_at_or_before(ms(datetime(2025, 1, 1, 8, 10, tzinfo=UTC))) == ms(datetime(2025, 1, 1, 8, 10, tzinfo=UTC))
    assert make_schedule(3600) == every(3600) and make_schedule("@hourly").fingerprint == cron("0 * * * *").fingerprint
    assert every(60).fingerprint == "every:60s" and cron("0 9 * * *", "Europe/Paris").fingerprint == "cron:0_9_*_*_*@Europe/Paris"


@pytest.mark.parametrize(
    ("make", "error", "text"),
    [
        (lambda: cron("61 * * * *"), InvalidArgument, "bad cron expression '61 * * * *': Bad minute"),
        (lambda: cron("* * *"), InvalidArgument, "Wrong number of fields"),
        (lambda: cron("0 0 30 2 *"), InvalidArgument, "Bad day-of-month"),
        (lambda: cron(5), InvalidType, "cron expression must be a str"),  # type: ignore[arg-type]
        (lambda: cron("* * * * *", tz="Mars/Olympus"), InvalidArgument, "unknown time zone 'Mars/Olympus'"),
        (lambda: cron("* * * * *", tz="../../etc/passwd"), InvalidArgument, "unknown time zone"),
        (lambda: cron("* * * * *", tz=None), InvalidType, "IANA"),  # type: ignore[arg-type]
        (lambda: every(0.5), InvalidArgument, "at least 1000 ms"),
        (lambda: every(1.5), InvalidArgument, "whole number of seconds"),
        (lambda: every("1h"), InvalidType, "interval"),  # type: ignore[arg-type]
        (lambda: make_schedule(60, tz="Europe/Paris"), InvalidArgument, "tz applies to cron"),
        (lambda: make_schedule(None), InvalidType, "a schedule must be"),
        (lambda: PeriodicJob("", every(60), b"x"), InvalidArgument, "name"),
        (lambda: PeriodicJob("x", every(60), 5), InvalidType, "payload"),  # type: ignore[arg-type]
        (lambda: PeriodicJob("x", every(60), b"x", missed="always"), InvalidArgument, "missed"),  # type: ignore[arg-type]
        (lambda: PeriodicJob("x", "* * * * *", b"x"), InvalidType, "schedule"),  # type: ignore[arg-type]
    ],
)
def test_bad_schedules_are_refused(make: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error) as info:
        make()
    assert text in str(info.value)


def test_a_refused_periodic_task_is_not_registered() -> None:
    tasks = Tasks()
    with pytest.raises(InvalidArgument, match="unknown time zone"):

        @tasks.periodic("0 9 * * *", tz="Europe/Pariss")
        def report() -> None: ...

    with pytest.raises(InvalidType, match="cannot be sent as JSON"):

        @tasks.periodic(60, args=(object(),))
        def sweep(thing: Any) -> None: ...

    assert len(tasks) == 0 and tasks.periodic_jobs == []
    with pytest.raises(InvalidArgument, match="two periodic jobs"):
        Scheduler(delayq.Queue(redis.Redis(), "q"), [PeriodicJob("a", every(1), b""), PeriodicJob("a", every(2), b"")])


def start_of_minute() -> datetime:
    return datetime(2030, 1, 7, 8, 59, 30, tzinfo=UTC)  # 30 s before a minute's slot


def test_each_slot_is_enqueued_once_however_many_schedulers(env: Env) -> None:
    q = env.queue()
    minutely = PeriodicJob("minutely", every(60), b"tick", missed="run_once")
    ran: list[str] = []
    with frozen_clock(real_queue(env, q), start=start_of_minute()) as clock:
        a, b = scheduler(env, q, [minutely]), scheduler(env, q, [minutely])
        assert tick(env, a) == ["minutely@2030-01-07T09:00:00Z"]  # the next slot, due at its time
        assert tick(env, b) == [] and tick(env, a) == []
        assert [(p.id, p.due_ms) for p in q.peek()] == [
            ("minutely@2030-01-07T09:00:00Z", ms(datetime(2030, 1, 7, 9, tzinfo=UTC)))
        ]
        assert drain(env, q, lambda job: ran.append(job.id)) == []  # not due yet
        clock.advance(30)
        assert [o.kind for o in drain(env, q, lambda job: ran.append(job.id))] == ["processed"]
        # the run is acked and gone; its marker is not: no scheduler enqueues that slot again,
        # not even one whose catch-up would take it for missed
        assert tick(env, b) == ["minutely@2030-01-07T09:01:00Z"]
        assert tick(env, a) == []
        clock.advance(60)
        drain(env, q, lambda job: ran.append(job.id))
        assert q.purge() == 0  # nothing left to purge; markers are not jobs
        assert tick(env, a) == ["minutely@2030-01-07T09:02:00Z"] and tick(env, b) == []
        states = run_state(env, a)
        assert [(s.job.name, s.last_ms, s.next_ms) for s in states] == [
            ("minutely", ms(datetime(2030, 1, 7, 9, 2, tzinfo=UTC)), ms(datetime(2030, 1, 7, 9, 2, tzinfo=UTC)))
        ]
    assert ran == ["minutely@2030-01-07T09:00:00Z", "minutely@2030-01-07T09:01:00Z"]


def run_state(env: Env, sched: Any) -> Any:
    result = sched.state()
    if env.api == "sync":
        return result
    assert env._loop is not None
    return env._loop.run_until_complete(result)


def test_missed_runs_are_skipped_or_run_once(env: Env) -> None:
    q = env.queue()
    skip = PeriodicJob("skip", every(60), b"s")
    once = PeriodicJob("once", every(60), b"o", missed="run_once")
    with frozen_clock(real_queue(env, q), start=start_of_minute()) as clock:
        sched = scheduler(env, q, [skip, once])
        # the first start: nothing was missed (no history), whatever the policy
        assert sorted(tick(env, sched)) == ["once@2030-01-07T09:00:00Z", "skip@2030-01-07T09:00:00Z"]
        clock.advance(timedelta(minutes=10, seconds=15))  # no scheduler ran for ten minutes
        # the runs enqueued before the outage still run (late); of the nine slots missed since,
        # "skip" runs none and "run_once" runs the latest, at once
        assert sorted(tick(env, sched)) == [
            "once@2030-01-07T09:09:00Z",
            "once@2030-01-07T09:10:00Z",
            "skip@2030-01-07T09:10:00Z",
        ]
        due = sorted(o.id for o in drain(env, q, lambda job: None))
        assert due == ["once@2030-01-07T09:00:00Z", "once@2030-01-07T09:09:00Z", "skip@2030-01-07T09:00:00Z"]
        assert tick(env, sched) == []


def test_a_changed_schedule_starts_afresh(env: Env) -> None:
    q = env.queue()
    with frozen_clock(real_queue(env, q), start=start_of_minute()):
        hourly = PeriodicJob("job", every(3600), b"x", missed="run_once")
        assert tick(env, scheduler(env, q, [hourly])) == ["job@2030-01-07T09:00:00Z"]
        assert q.cancel("job@2030-01-07T09:00:00Z")
        # the next hour's marker would hold back a more frequent schedule: a new fingerprint resets it,
        # and the history of another schedule is no history (no catch-up)
        minutely = PeriodicJob("job", every(60), b"x", missed="run_once")
        assert tick(env, scheduler(env, q, [minutely])) == ["job@2030-01-07T09:00:00Z"]
        daily = PeriodicJob("job", cron("0 9 * * *", tz="Europe/Paris"), b"x", missed="run_once")
        assert tick(env, scheduler(env, q, [daily])) == ["job@2030-01-08T08:00:00Z"]  # 09:00 in Paris, tomorrow


def test_periodic_jobs_on_a_sharded_queue(env: Env) -> None:
    q = env.queue(shards=3)
    jobs = [PeriodicJob(f"p{i}", every(60), b"x", missed="run_once") for i in range(4)]
    with frozen_clock(real_queue(env, q), start=start_of_minute()) as clock:
        a, b = scheduler(env, q, jobs), scheduler(env, q, jobs)
        assert sorted(tick(env, a)) == [f"p{i}@2030-01-07T09:00:00Z" for i in range(4)]
        assert tick(env, b) == []
        clock.advance(timedelta(minutes=5))
        assert len(drain(env, q, lambda job: None)) == 4
        stored = tick(env, a) + tick(env, b)
        assert sorted(stored) == sorted(
            [f"p{i}@2030-01-07T09:04:00Z" for i in range(4)] + [f"p{i}@2030-01-07T09:05:00Z" for i in range(4)]
        )
        assert len(drain(env, q, lambda job: None)) == 4
        assert tick(env, b) == [] and tick(env, a) == []


SCHEDULER_PROCESS = """
import asyncio, sys, time, redis, redis.asyncio
from delayq import Queue, aio
from delayq.periodic import AsyncScheduler, PeriodicJob, Scheduler, cron
url, name, seconds, flavour = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
job = PeriodicJob("beat", cron("* * * * * *", tz="Europe/Paris"), b"beat", missed="run_once")  # every second
if flavour == "sync":
    with Scheduler(Queue(redis.Redis.from_url(url), name), [job], max_sleep=0.05):
        time.sleep(seconds)
else:
    async def main():
        client = redis.asyncio.Redis.from_url(url)
        async with AsyncScheduler(aio.Queue(client, name), [job], max_sleep=0.05):
            await asyncio.sleep(seconds)
        await client.aclose()
    asyncio.run(main())
"""


@pytest.fixture(params=["fake", "real"])
def shared_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server two processes can share: fakeredis behind its TCP front end, or a real redis-server."""
    if request.param == "real":
        yield request.getfixturevalue("redis_url")
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_two_scheduler_processes_enqueue_each_cron_slot_once(shared_url: str) -> None:
    """Two processes, one with a thread scheduler and one with an asyncio scheduler, schedule a
    cron job that fires every second, with run_once: the catch-up of each would take the slot
    just run and acked for missed, but for the marker."""
    name = unique_name("sched")
    client = redis.Redis.from_url(shared_url)
    q = delayq.Queue(client, name)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCHEDULER_PROCESS, shared_url, name, "4", flavour], env=env, stderr=subprocess.PIPE
        )
        for flavour in ("sync", "async")
    ]
    claimed: list[str] = []
    deadline = time.monotonic() + 20
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        jobs = q.dequeue(10, lock_ttl=30, wait=0.2)
        claimed += [j.id for j in jobs]
        q.ack_many(jobs)  # acked at once: only the marker keeps a slot from coming back
    for p in procs:
        _, err = p.communicate(timeout=20)
        assert p.returncode == 0, err.decode()
    claimed += [j.id for j in q.dequeue(10, lock_ttl=30)]
    claimed += [p.id for p in q.peek()]
    seconds = sorted(datetime.strptime(i.split("@")[1], "%Y-%m-%dT%H:%M:%SZ") for i in claimed)
    assert len(claimed) == len(set(claimed)), f"a slot was enqueued twice: {sorted(claimed)}"
    assert len(seconds) >= 4
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(seconds)] == [1.0] * (len(seconds) - 1)
    client.close()


TASKS_MODULE = """
import json
from pathlib import Path
from delayq.tasks import Tasks, current_job

tasks = Tasks()
LOG = Path(__file__).with_name("runs.log")

@tasks.periodic(1, missed="run_once", args=("beat",))
def heartbeat(word):
    with LOG.open("a") as log:
        log.write(json.dumps([word, current_job().id]) + "\\n")

@tasks.periodic("0 9 * * MON-FRI", tz="Europe/Paris")
def report():
    pass

@tasks.task
def unscheduled():
    pass
"""


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_the_worker_command_runs_a_tasks_module_and_its_schedules(redis_url: str, tmp_path: Path, flavour: str) -> None:
    source = TASKS_MODULE if flavour == "sync" else TASKS_MODULE.replace("def unscheduled", "async def unscheduled")
    (tmp_path / "jobs.py").write_text(textwrap.dedent(source))
    name = unique_name("cliperiodic")
    env = dict(os.environ, PYTHONPATH=str(ROOT), DELAYQ_REDIS_URL=redis_url)
    listing = subprocess.run(
        [sys.executable, "-m", "delayq", "periodic", "jobs", name, "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["heartbeat"]["schedule"] == "every 1s" and rows["heartbeat"]["missed"] == "run_once"
    assert rows["report"]["schedule"] == "cron '0 9 * * MON-FRI' in Europe/Paris" and rows["report"]["last_enqueued"] is None
    assert rows["report"]["next"].endswith(("T07:00:00.000+00:00", "T08:00:00.000+00:00"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "delayq", "worker", "jobs", name, "--poll", "0.1", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    log = tmp_path / "runs.log"
    deadline = time.monotonic() + 20
    while (not log.exists() or len(log.read_text().splitlines()) < 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(runs) >= 3 and all(word == "beat" for word, _ in runs)
    ids = [job_id for _, job_id in runs]
    assert len(ids) == len(set(ids)) and all(i.startswith("heartbeat@") for i in ids)
    listing = subprocess.run(
        [sys.executable, "-m", "delayq", "periodic", "jobs", name], cwd=tmp_path, env=env, capture_output=True, check=False
    )
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.decode().splitlines()
    assert lines[0].startswith("heartbeat  every 1s  missed=run_once  last=20") and "next=20" in lines[0]
    assert lines[1].startswith("report  cron '0 9 * * MON-FRI' in Europe/Paris  missed=skip  last=20")
