"""Periodic jobs under attack: DST changes in zones whose clocks move by 30 minutes or at odd
minutes, names that would break a run's id, and schedulers that tick across a DST change."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from delayq import InvalidArgument, InvalidType
from delayq.periodic import PeriodicJob, _scheduler, cron, every
from delayq.tasks import Tasks
from delayq.testing import frozen_clock
from tests.helpers import Env
from tests.helpers_tasks import real_queue, run, scheduler, tick

UTC = timezone.utc

ZONES = [
    "Australia/Lord_Howe",  # clocks move by 30 minutes, at 02:00
    "Pacific/Chatham",  # +12:45/+13:45, at 02:45 and 03:45
    "Antarctica/Troll",  # moves by 2 hours
    "America/Santiago",  # at midnight: the day starts at 01:00
    "America/Havana",  # at 00:00 and 01:00
    "Europe/Paris",
    "America/New_York",
]
EXPRESSIONS = [
    "30 2 * * *",
    "0 2 * * *",
    "15 2 * * *",
    "45 2 * * *",
    "45 3 * * *",
    "30 1 * * *",
    "59 1 * * *",
    "0 0 * * *",
    "30 23 * * *",
    "15,45 2 * * *",
    "0 1-3 * * *",
    "0 0,1 * * *",
    "*/15 * * * *",
    "0,30 * * * *",
    "30 * * * *",
    "45 * * * *",
    "0 */2 * * *",
    "*/30 1-3 * * *",
]


def transitions(zone: ZoneInfo, year: int) -> list[tuple[int, timedelta, timedelta]]:
    """(instant in s, offset before, offset after) of each UTC offset change in a year."""
    found = []
    t = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    before = datetime.fromtimestamp(t, zone).utcoffset()
    while t < end:
        after = datetime.fromtimestamp(t + 3600, zone).utcoffset()
        if after != before:
            low, high = t, t + 3600
            while high - low > 1:
                middle = (low + high) // 2
                if datetime.fromtimestamp(middle, zone).utcoffset() == before:
                    low = middle
                else:
                    high = middle
            assert before is not None and after is not None
            found.append((high, before, after))
            before = after
        t += 3600
    return found


def matches(spec: Any, wall: datetime) -> bool:
    weekday = wall.isoweekday() % 7
    day = (
        (wall.day in spec.days and weekday in spec.weekdays)
        if spec.day_and
        else (wall.day in spec.days or weekday in spec.weekdays)
    )
    return wall.minute in spec.minutes and wall.hour in spec.hours and wall.month in spec.months and day


def reference_slots(expression: str, zone: ZoneInfo, start: int, end: int) -> list[int]:
    """Debian cron's rules, minute by minute of real time: a fixed-time expression runs at the first
    pass of each matching wall time, and once at the end of a jump over any of its times; any
    other expression runs whenever the wall clock matches."""
    minute, hour = expression.split()[:2]
    fixed = not minute.startswith("*") and not hour.startswith("*")
    spec = CronSim(expression, datetime(2000, 1, 1))
    slots, seen = set(), set()
    for t in range(start - start % 60, end, 60):
        wall = datetime.fromtimestamp(t, zone).replace(tzinfo=None)
        if matches(spec, wall) and not (fixed and wall in seen):
            slots.add(t)
        seen.add(wall)
    if fixed:
        for instant, before, after in transitions(zone, datetime.fromtimestamp(start, UTC).year):
            if after > before and start <= instant < end:
                gap = datetime.fromtimestamp(instant - 1, zone).replace(tzinfo=None) + timedelta(seconds=1)
                skipped = [gap + timedelta(minutes=m) for m in range(int((after - before).total_seconds()) // 60)]
                if any(matches(spec, wall) for wall in skipped):
                    slots.add(instant)
    return sorted(slots)


@pytest.mark.parametrize("zone_name", ZONES)
def test_no_slot_is_doubled_or_missed_at_a_dst_change(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    changes = transitions(zone, 2025)
    assert changes, f"{zone_name} has no DST change in 2025"
    for instant, _, _ in changes:
        start, end = instant - 30 * 3600, instant + 30 * 3600
        for expression in EXPRESSIONS:
            schedule = cron(expression, tz=zone_name)
            got, t = [], start * 1000 - 1
            while (t := schedule.next_after(t) or end * 1000) < end * 1000:
                got.append(t // 1000)
            want = reference_slots(expression, zone, start, end)
            shown = [datetime.fromtimestamp(s, zone).strftime("%d %H:%M%z") for s in sorted(set(got) ^ set(want))]
            assert got == want, f"{expression!r} in {zone_name} around {datetime.fromtimestamp(instant, zone)}: {shown}"
            for before, after in itertools.pairwise(got):  # the last slot at or before any time is the one next_after passed
                for probe in (before, before + 1, (before + after) // 2, after - 1):
                    assert schedule.latest_at_or_before(probe * 1000) == before * 1000, (expression, zone_name, probe)


def test_the_lord_howe_half_hour_shift_in_detail() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")

    def walls(expression: str, start: datetime, count: int) -> list[str]:
        schedule, t, out = cron(expression, tz="Australia/Lord_Howe"), int(start.timestamp() * 1000), []
        for _ in range(count):
            t = schedule.next_after(t) or 0
            out.append(datetime.fromtimestamp(t / 1000, lord_howe).strftime("%d %H:%M%z"))
        return out

    # 2025-10-05 02:00 +10:30 -> 02:30 +11:00: 02:30 still exists, every :30 job runs at it
    spring = datetime(2025, 10, 5, 0, 45, tzinfo=lord_howe)
    assert walls("30 * * * *", spring, 3) == ["05 01:30+1030", "05 02:30+1100", "05 03:30+1100"]
    assert walls("15 2 * * *", spring, 2) == ["05 02:30+1100", "06 02:15+1100"]  # skipped: runs as the clocks land
    # 2025-04-06 02:00 +11:00 -> 01:30 +10:30: 01:30-02:00 happens twice
    autumn = datetime(2025, 4, 6, 0, 45, tzinfo=lord_howe)
    assert walls("30 * * * *", autumn, 3) == ["06 01:30+1100", "06 01:30+1030", "06 02:30+1030"]  # real time: both passes
    assert walls("45 1 * * *", autumn, 2) == ["06 01:45+1100", "07 01:45+1030"]  # a fixed time: its first pass only


def test_a_scheduler_ticking_across_a_half_hour_dst_change_enqueues_each_slot_once(env: Env) -> None:
    """Markers and catch-up across the Lord Howe change: with run_once, a catch-up computed from
    inside the repeated half hour must not bring back a slot already run."""
    q = env.queue()
    jobs = [
        PeriodicJob("half", cron("30 * * * *", tz="Australia/Lord_Howe"), b"h", missed="run_once"),
        PeriodicJob("fixed", cron("45 1 * * *", tz="Australia/Lord_Howe"), b"f", missed="run_once"),
    ]
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    start = datetime(2025, 4, 5, 22, tzinfo=lord_howe)
    end = start + timedelta(hours=7)
    with frozen_clock(real_queue(env, q), start=start) as clock:
        sched = scheduler(env, q, jobs)
        stored: list[str] = []
        while clock.now() < end:
            stored += tick(env, sched)
            clock.advance(timedelta(minutes=7))
    assert len(stored) == len(set(stored)), sorted(stored)
    half = sorted(i for i in stored if i.startswith("half@"))
    want = [
        f"half@{datetime.fromtimestamp(s, UTC):%Y-%m-%dT%H:%M:%SZ}"
        for s in reference_slots("30 * * * *", lord_howe, int(start.timestamp()), int(end.timestamp()) + 3600)
    ]
    assert half == want[: len(half)] and len(half) >= 7
    # 01:45 +11:00 once (not again at 01:45 +10:30), then the next day's, one slot ahead
    assert [i for i in stored if i.startswith("fixed@")] == ["fixed@2025-04-05T14:45:00Z", "fixed@2025-04-06T15:15:00Z"]


@pytest.mark.parametrize(
    ("name", "error", "text"),
    [
        ("report@eu", InvalidArgument, "without '@'"),
        ("two\nlines", InvalidArgument, "printable"),
        ("caf\udce9", InvalidArgument, "printable"),
        (" padded", InvalidArgument, "not padded"),
        ("", InvalidArgument, "1-200"),
        ("x" * 201, InvalidArgument, "1-200"),
        (5, InvalidType, "must be a str"),
    ],
)
def test_a_periodic_name_that_would_break_its_run_ids_is_refused(name: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error) as info:
        PeriodicJob(name, every(60), b"x")
    assert text in str(info.value)
    tasks = Tasks()
    with pytest.raises(error):

        @tasks.periodic(60, name=name)
        def sweep() -> None: ...

    assert len(tasks) == 0 and tasks.periodic_jobs == []


@pytest.mark.parametrize(
    ("schedule", "error", "text"),
    [
        (0, InvalidArgument, "at least 1000 ms"),
        (-60, InvalidArgument, "interval"),
        (timedelta(0), InvalidArgument, "at least 1000 ms"),
        (timedelta(seconds=-1), InvalidArgument, "interval"),
        (float("nan"), InvalidArgument, "finite"),
        (True, InvalidType, "a schedule must be"),
        (cron("0 * * * *"), InvalidArgument, "give tz to cron(...) itself"),
    ],
)
def test_a_bad_interval_or_a_schedule_given_twice_is_refused(schedule: Any, error: type[Exception], text: str) -> None:
    tasks = Tasks()
    with pytest.raises(error) as info:
        tasks.periodic(schedule, tz="UTC" if not isinstance(schedule, (int, float, timedelta)) else None)
    assert text in str(info.value)
    with pytest.raises(InvalidArgument, match="tz applies to cron expressions"):
        tasks.periodic(60, tz="Europe/Paris")  # an interval with a time zone: a cron was meant, or not
    assert len(tasks) == 0


class SkewedTime:
    """The time module as a machine whose clock is off by ``skew`` seconds sees it."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def time(self) -> float:
        return time.time() + self.skew

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.mark.parametrize("skew_s", [3600, -3600, 90])
def test_a_scheduler_whose_clock_is_off_enqueues_the_slot_the_server_says_is_next(
    env: Env, monkeypatch: pytest.MonkeyPatch, skew_s: float
) -> None:
    """The server's clock decides (DESIGN rule 1). A scheduler an hour ahead used to enqueue the
    slot an hour away and move the marker there: every scheduler then refused the 59 slots before it."""
    q = env.queue()
    job = PeriodicJob("minutely", every(60), b"m", missed="run_once")
    honest = scheduler(env, q, [job])
    monkeypatch.setattr(_scheduler, "time", SkewedTime(skew_s))
    skewed = scheduler(env, q, [job])
    server_before = server_ms(env)
    stored = tick(env, skewed)
    server_after = server_ms(env)
    monkeypatch.undo()
    assert stored, "the skewed scheduler enqueued nothing at all"
    slots = sorted(
        int(datetime.strptime(i.split("@")[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() * 1000) for i in stored
    )
    assert slots[-1] - 60_000 <= server_after and slots[-1] > server_before  # the next slot by the server's clock
    assert all(slot <= server_after for slot in slots[:-1])  # and, for run_once, none from the future
    assert tick(env, honest) == []  # what an honest scheduler would enqueue is there already
    [state] = run(env, honest.state())
    assert state.last_ms == slots[-1]


def server_ms(env: Env) -> int:
    seconds, micros = env.raw.time()
    return int(seconds) * 1000 + int(micros) // 1000
