"""A clock for a test to move: queues under :func:`frozen_clock` take "now" from it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from .._errors import InvalidArgument, InvalidType
from .._validate import Duration, to_ms

__all__ = ["Clock", "core_of", "frozen_clock"]


class Clock:
    """A clock for queues, frozen until you move it. Times are ms since the epoch, as the server's.

    Made by :func:`frozen_clock`.
    """

    def __init__(self, start_ms: int) -> None:
        self._ms = start_ms

    def __call__(self) -> int:
        return self._ms

    @property
    def now_ms(self) -> int:
        """The clock's time, ms since the epoch."""
        return self._ms

    def now(self) -> datetime:
        """The clock's time as an aware UTC datetime."""
        return datetime.fromtimestamp(self._ms / 1000, tz=timezone.utc)

    def advance(self, by: Duration) -> int:
        """Move the clock forward by seconds (int/float) or a timedelta; returns the new time in ms.

        Raises:
            InvalidType, InvalidArgument: A negative or bad duration.
        """
        self._ms += to_ms(by, "advance", minimum_ms=0, maximum_s=100 * 365 * 24 * 3600)
        return self._ms

    def set(self, when: datetime) -> int:
        """Move the clock to an aware datetime (forward or back); returns the new time in ms.

        Raises:
            InvalidType, InvalidArgument: Not an aware datetime.
        """
        if not isinstance(when, datetime):
            raise InvalidType(f"when must be a datetime, got {when!r}")
        if when.tzinfo is None or when.utcoffset() is None:
            raise InvalidArgument(f"when must be timezone-aware, got {when!r}")
        self._ms = round(when.timestamp() * 1000)
        return self._ms

    def __repr__(self) -> str:
        return f"<delayq test Clock {self.now().isoformat(timespec='milliseconds')}>"


def core_of(queue: object) -> Any:
    core = getattr(queue, "_core", None)
    if core is None or not hasattr(core, "clock"):
        raise InvalidType(f"expected a delayq queue (Queue, aio.Queue), got {queue!r:.80}")
    return core


_frozen: dict[int, tuple[Any, Any, list[Clock]]] = {}
"""Per queue core frozen now: (the core, its clock before the first freeze, the active test clocks)."""


@contextlib.contextmanager
def frozen_clock(*queues: object, start: datetime | None = None) -> Iterator[Clock]:
    """Give queues a clock that stands still until the test moves it; restore the server's clock after.

    Freezes may nest or overlap (two fixtures, say): a queue follows the latest one still
    active, and gets its own clock back when the last one ends, in whatever order they end.

    Args:
        *queues: ``delayq.Queue`` or ``delayq.aio.Queue`` objects (sharded or not) that share the clock.
        start: An aware datetime to start from; default now (so jobs enqueued before stay in time).

    Yields:
        The :class:`Clock`.

    Raises:
        InvalidType, InvalidArgument: Something that is not a queue, or a naive ``start``.
    """
    cores = [core_of(q) for q in queues]
    if not cores:
        raise InvalidArgument("frozen_clock needs at least one queue")
    clock = Clock(int(time.time() * 1000))
    if start is not None:
        clock.set(start)
    for core in cores:
        _frozen.setdefault(id(core), (core, core.clock, []))[2].append(clock)
        core.clock = clock
    try:
        yield clock
    finally:
        for core in cores:
            _, before, active = _frozen[id(core)]
            active.remove(clock)
            if active:
                core.clock = active[-1]
            else:
                core.clock = before
                del _frozen[id(core)]
