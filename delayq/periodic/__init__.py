"""Periodic jobs: cron expressions (in a time zone) and intervals, enqueued once per slot however
many schedulers run.

    from delayq.periodic import PeriodicJob, Scheduler, cron, every

    jobs = [
        PeriodicJob("report", cron("0 9 * * MON-FRI", tz="Europe/Paris"), b"report"),
        PeriodicJob("sweep", every(600), b"sweep", missed="run_once"),
    ]
    Scheduler(queue, jobs).start()      # in every worker process: safe

(``delayq.tasks.Tasks.periodic`` makes them from tasks.)

How exactly-once works: each run's job id carries its slot (``report@2025-01-06T08:00:00Z``),
and ``lua/schedule.lua`` enqueues a slot only when it is newer than the job's marker, a hash
field that records the latest slot enqueued and that nothing but that script touches: the
check and the enqueue are one atomic script, and the marker outlives the run's ack, so a
finished run is never enqueued again. A run is enqueued one slot ahead, as a delayed job due
at its slot, so it starts on time (to the queue's own precision) however coarse the
schedulers' ticks are. A slot that passes while no scheduler runs at all is *missed*:
``missed="skip"`` (default) leaves it, ``missed="run_once"`` runs the latest missed slot once,
at once, whatever the number missed.

Cron expressions are evaluated with cronsim (``pip install "delayq[cron]"``) on the wall clock
of the given time zone, with Debian cron's rules at DST changes (see ``_schedules``): a
fixed-time expression runs once per day's time (at the first pass of a repeated time, at the
end of the jump for a skipped one); an expression with ``*`` in the minute or hour field
follows real time.

The modules: ``_schedules`` (cron and intervals), ``_jobs`` (PeriodicJob), ``_scheduler`` (the
schedulers). Import from ``delayq.periodic``.
"""

from ._jobs import Missed, PeriodicJob, PeriodicState
from ._scheduler import MAX_SLEEP_S as MAX_SLEEP_S
from ._scheduler import OUTAGE_PAUSES_S as OUTAGE_PAUSES_S
from ._scheduler import AsyncScheduler, Scheduler, SchedulerCore
from ._schedules import NICKNAMES as NICKNAMES
from ._schedules import Cron, Every, Schedule, cron, every, make_schedule
from ._schedules import slot_text as slot_text

__all__ = [
    "AsyncScheduler",
    "Cron",
    "Every",
    "Missed",
    "PeriodicJob",
    "PeriodicState",
    "Schedule",
    "Scheduler",
    "SchedulerCore",
    "cron",
    "every",
    "make_schedule",
]

for _public in (AsyncScheduler, Cron, Every, PeriodicJob, PeriodicState, Scheduler, SchedulerCore, cron, every, make_schedule):
    _public.__module__ = __name__  # reprs and docs show the public path
del _public
