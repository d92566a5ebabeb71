"""Schedules: when a periodic job's runs (its *slots*) are, as instants in ms since the epoch.

A cron expression is evaluated on the wall clock of its time zone, then each matching wall
time is mapped to the instants at which it happens, by Debian cron's rules at DST changes:

- A *fixed-time* expression (5 fields, neither minute nor hour starting with ``*``, e.g.
  ``30 2 * * *``) runs once per matching wall time: a wall time that occurs twice (clocks go
  back) runs at its first pass, and one that does not exist that day (clocks jump over it) runs
  at the first instant after the jump, once however many of its times were skipped.
- Any other expression (``*/15 * * * *``, ``30 * * * *``, 6 fields) follows real time: it runs
  at every instant whose wall time matches, so in both passes of a repeated hour, and not at
  all in a skipped one.

This is done here rather than by cronsim's own DST handling, which steps hours by 3600 real
seconds and so misses or doubles slots in zones whose clocks move by 30 minutes
(Australia/Lord_Howe) or at odd minutes (Pacific/Chatham, 02:45). ``next_after`` and
``latest_at_or_before`` are computed from the same set of slots, so they always agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .._errors import InvalidArgument, InvalidType
from .._validate import Duration, to_ms

if TYPE_CHECKING:
    from cronsim import CronSim

__all__ = ["NICKNAMES", "Cron", "Every", "Schedule", "cron", "every", "make_schedule", "slot_text"]

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The cron nicknames accepted besides 5- and 6-field expressions."""

NEAR = (-3 * 3600, 0, 3 * 3600)
"""Where, in seconds around an instant, UTC offsets are sampled to bound how far wall-clock order
and real order can differ there (DST moves clocks by 30 minutes to 2 hours)."""


def _cronsim() -> type[CronSim]:
    try:
        from cronsim import CronSim  # noqa: PLC0415 (an optional extra: imported when first used)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InvalidArgument('cron expressions need cronsim: pip install "delayq[cron]"') from exc
    return CronSim


def _zone(tz: object) -> ZoneInfo:
    if not isinstance(tz, str):
        raise InvalidType(f"tz must be an IANA time zone name (str), got {tz!r} ({type(tz).__name__})")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidArgument(f"unknown time zone {tz!r} (give an IANA name such as 'Europe/Paris' or 'UTC')") from exc


@dataclass(frozen=True)
class Cron:
    """A cron schedule in a time zone; make it with :func:`cron`.

    Raises:
        InvalidType, InvalidArgument: A bad expression or time zone, or one that never fires.
    """

    expression: str
    tz: str = "UTC"
    _fields: str = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _fixed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise InvalidType(f"a cron expression must be a str, got {self.expression!r}")
        text = " ".join(self.expression.split())
        fields = NICKNAMES.get(text.lower(), text)
        object.__setattr__(self, "_zone", _zone(self.tz))
        try:
            _cronsim()(fields, datetime(2000, 1, 1))
        except Exception as exc:  # cronsim raises CronSimError (and, for some input, others)
            raise InvalidArgument(f"bad cron expression {self.expression!r}: {exc}") from exc
        parts = fields.split()
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_fixed", len(parts) == 5 and not parts[0].startswith("*") and not parts[1].startswith("*"))
        if self.next_after(0) is None:
            raise InvalidArgument(f"cron expression {self.expression!r} never fires")

    @property
    def fingerprint(self) -> str:
        """What identifies the schedule in its marker (no spaces)."""
        return f"cron:{self._fields.replace(' ', '_')}@{self.tz}"

    def __str__(self) -> str:
        return f"cron {self.expression!r} in {self.tz}"

    # -- wall clock to instants

    def _wall(self, seconds: int) -> datetime:
        """The zone's wall time (naive) at an instant, in whole seconds since the epoch."""
        return datetime.fromtimestamp(seconds, tz=self._zone).replace(tzinfo=None)

    def _offset(self, seconds: int) -> timedelta:
        return datetime.fromtimestamp(seconds, tz=self._zone).utcoffset() or timedelta(0)

    def _spread(self, seconds: int) -> timedelta:
        """How far wall-clock order and real order can differ around an instant: zero unless the
        clocks go back (by D) less than D from it, where a later instant can have an earlier wall
        time. Clocks that jump forward never reorder. Conservative (the range of the offsets
        near it) where two changes fall within hours of each other."""
        before, here, after = (self._offset(seconds + shift) for shift in NEAR)
        if before <= here <= after:
            return timedelta(0)  # no change near, or clocks jumping forward only
        if not before >= here >= after:
            return max(before, here, after) - min(before, here, after)
        low, high = seconds + NEAR[0], seconds + NEAR[-1]  # one change back: find its instant
        while high - low > 1:
            middle = (low + high) // 2
            if self._offset(middle) == after:
                high = middle
            else:
                low = middle
        back = before - after
        return back if abs(high - seconds) <= back.total_seconds() else timedelta(0)

    def _instants(self, wall: datetime) -> list[int]:
        """The instants (whole seconds, ascending) at which a matching wall time runs."""
        passes = []
        for fold in (0, 1):
            seconds = int(wall.replace(tzinfo=self._zone, fold=fold).timestamp())
            if self._wall(seconds) == wall and seconds not in passes:
                passes.append(seconds)
        if passes:
            passes.sort()
            return passes[:1] if self._fixed else passes
        if not self._fixed:
            return []  # a wall time the clocks jumped over: real time never matched it
        # the first instant after the jump: the two folds map the skipped time to either side of it
        low, high = sorted(int(wall.replace(tzinfo=self._zone, fold=fold).timestamp()) for fold in (0, 1))
        after = datetime.fromtimestamp(high, tz=self._zone).utcoffset()
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, tz=self._zone).utcoffset() == after:
                high = middle
            else:
                low = middle
        return [high]

    def _walls(self, start: datetime, *, reverse: bool) -> Iterator[datetime]:
        """Matching wall times strictly after (or, reversed, before) ``start``, in wall-clock order."""
        try:
            yield from _cronsim()(self._fields, start, reverse=reverse)
        except StopIteration:  # pragma: no cover - cronsim ends its own iteration after 50 years
            return

    def next_after(self, ms: int) -> int | None:
        """The first slot strictly after ``ms`` (ms since the epoch), or None if there is none."""
        now = ms // 1000
        best: int | None = None
        stop: datetime | None = None
        for wall in self._walls(self._wall(now) - self._spread(now), reverse=False):
            if stop is not None and wall > stop:
                break
            for seconds in self._instants(wall):
                if seconds * 1000 > ms and (best is None or seconds < best):
                    best = seconds
                    stop = self._wall(best) + self._spread(best)
        return None if best is None else best * 1000

    def latest_at_or_before(self, ms: int) -> int | None:
        """The last slot at or before ``ms``, or None."""
        now = ms // 1000
        best: int | None = None
        stop: datetime | None = None
        start = self._wall(now) + self._spread(now) + timedelta(seconds=1)
        for wall in self._walls(start, reverse=True):
            if stop is not None and wall < stop:
                break
            for seconds in self._instants(wall):
                if seconds * 1000 <= ms and (best is None or seconds > best):
                    best = seconds
                    stop = self._wall(best) - self._spread(best)
        return None if best is None else best * 1000


@dataclass(frozen=True)
class Every:
    """A fixed interval, in whole seconds, aligned to the Unix epoch; make it with :func:`every`."""

    seconds: int

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int) or self.seconds < 1:
            raise InvalidArgument(f"an interval must be a whole number of seconds >= 1, got {self.seconds!r}")

    @property
    def fingerprint(self) -> str:
        """What identifies the schedule in its marker (no spaces)."""
        return f"every:{self.seconds}s"

    def __str__(self) -> str:
        return f"every {self.seconds}s"

    def next_after(self, ms: int) -> int | None:
        """The first slot strictly after ``ms``."""
        step = self.seconds * 1000
        return (ms // step + 1) * step

    def latest_at_or_before(self, ms: int) -> int | None:
        """The last slot at or before ``ms``."""
        step = self.seconds * 1000
        return (ms // step) * step


Schedule = Union[Cron, Every]


def cron(expression: str, tz: str = "UTC") -> Cron:
    """A cron schedule: 5 fields (minute hour day month weekday), 6 with seconds first, or a
    nickname (@hourly, @daily, @weekly, @monthly, @yearly), evaluated in time zone ``tz``.

    Raises:
        InvalidType, InvalidArgument: A bad expression (named), or an unknown time zone.
    """
    return Cron(expression, tz)


def every(interval: Duration) -> Every:
    """An interval schedule: slots at whole multiples of ``interval`` since the Unix epoch (so
    ``every(3600)`` runs on the hour, UTC), the same for every scheduler.

    Raises:
        InvalidType, InvalidArgument: Not a whole number of seconds from 1 s to 10 years.
    """
    ms = to_ms(interval, "interval", minimum_ms=1000, maximum_s=10 * 365 * 24 * 3600)
    if ms % 1000:
        raise InvalidArgument(f"an interval must be a whole number of seconds, got {interval!r}")
    return Every(ms // 1000)


def make_schedule(value: object, tz: str | None = None) -> Schedule:
    """A schedule from a cron string, an interval (seconds or timedelta), or a Cron/Every.

    Raises:
        InvalidType, InvalidArgument: A bad value, or ``tz`` with something other than a cron string.
    """
    if isinstance(value, (Cron, Every)):
        if tz is not None:
            raise InvalidArgument("give tz to cron(...) itself, not with a ready-made schedule")
        return value
    if isinstance(value, str):
        return cron(value, "UTC" if tz is None else tz)
    if tz is not None:
        raise InvalidArgument(f"tz applies to cron expressions, not to the interval {value!r}")
    if isinstance(value, (int, float, timedelta)) and not isinstance(value, bool):
        return every(value)
    raise InvalidType(f"a schedule must be a cron expression, seconds, a timedelta, cron(...) or every(...), got {value!r}")


def slot_text(ms: int) -> str:
    """A slot as the UTC time in a run's id: ``2025-01-06T08:00:00Z``."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
