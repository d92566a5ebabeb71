"""A periodic job (a payload on a schedule) and what the queue knows of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .._errors import InvalidArgument, InvalidType
from .._validate import MAX_NAME_LENGTH, check_payload
from ._schedules import Cron, Every, Schedule, slot_text

__all__ = ["Missed", "PeriodicJob", "PeriodicState", "check_periodic_name"]

Missed = Literal["skip", "run_once"]


def check_periodic_name(name: object) -> str:
    """A periodic job's name, checked: it starts each run's id (``"<name>@<slot>"``) and names the
    job's marker, so it is printable text without an ``@`` (the id splits at its ``@``).

    Raises:
        InvalidType: Not a str.
        InvalidArgument: Empty, too long, padded, unprintable, not valid Unicode, or with an ``@``.
    """
    if not isinstance(name, str):
        raise InvalidType(f"a periodic job's name must be a str, got {name!r}")
    if not name or len(name) > MAX_NAME_LENGTH or name != name.strip() or not name.isprintable() or "@" in name:
        raise InvalidArgument(
            f"a periodic job's name must be 1-{MAX_NAME_LENGTH} printable characters, not padded, "
            f"without '@' (it starts each run's id, '<name>@<slot>'): got {name!r}"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"a periodic job's name must be valid Unicode text, got {name!r}") from None
    return name


@dataclass(frozen=True)
class PeriodicJob:
    """A payload enqueued on a schedule. Every run is a job with id ``"<name>@<slot, UTC>"``.

    Args:
        name: 1-200 characters, unique among a queue's periodic jobs.
        schedule: ``cron(...)`` or ``every(...)``.
        payload: Each run's payload (bytes or str).
        missed: Slots missed while no scheduler ran: "skip" (default) or "run_once".

    Raises:
        InvalidType, InvalidArgument: A bad name, schedule, payload or policy.
    """

    name: str
    schedule: Schedule
    payload: bytes
    missed: Missed = "skip"

    def __post_init__(self) -> None:
        check_periodic_name(self.name)
        if not isinstance(self.schedule, (Cron, Every)):
            raise InvalidType(f"schedule must be cron(...) or every(...), got {self.schedule!r}")
        object.__setattr__(self, "payload", check_payload(self.payload))
        if self.missed not in ("skip", "run_once"):
            raise InvalidArgument(f"missed must be 'skip' or 'run_once', got {self.missed!r}")

    def run_id(self, slot_ms: int) -> str:
        """The job id of the run for a slot."""
        return f"{self.name}@{slot_text(slot_ms)}"

    def plan(self, now_ms: int) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
        """(the catch-up run, the upcoming run) to offer the queue at ``now_ms``, as (slot, id) pairs."""
        upcoming = self.schedule.next_after(now_ms)
        latest = self.schedule.latest_at_or_before(now_ms) if self.missed == "run_once" else None
        return (
            None if latest is None else (latest, self.run_id(latest)),
            None if upcoming is None else (upcoming, self.run_id(upcoming)),
        )


@dataclass(frozen=True, slots=True)
class PeriodicState:
    """A periodic job as the queue knows it (for listings).

    Attributes:
        job: The periodic job.
        last_ms: The latest slot enqueued under this schedule (ms since the epoch), or None.
        next_ms: The first slot after now, or None if the schedule has no more.
    """

    job: PeriodicJob
    last_ms: int | None
    next_ms: int | None
