"""Run the tasks, periodic and testing helpers in an Env's flavour (sync, or asyncio on the env's loop)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from delayq.periodic import AsyncScheduler, PeriodicJob, Scheduler
from delayq.tasks import Task, Tasks
from delayq.testing import Outcome, arun_due, run_due
from tests.helpers import Env


def real_queue(env: Env, q: Any) -> Any:
    """The delayq queue behind an env queue (the async flavour wraps a delayq.aio.Queue)."""
    return q if env.api == "sync" else q._queue


def run(env: Env, awaitable_or_value: Any) -> Any:
    """The value, awaiting it on the env's loop in the async flavour."""
    if env.api == "sync":
        return awaitable_or_value
    assert env._loop is not None
    return env._loop.run_until_complete(awaitable_or_value)


def bind(env: Env, tasks: Tasks, q: Any) -> None:
    tasks.bind(real_queue(env, q))


def enqueue(env: Env, task: Task[Any, Any], *args: Any, **kwargs: Any) -> str | None:
    if env.api == "sync":
        return task.enqueue(*args, **kwargs)
    return run(env, task.aenqueue(*args, **kwargs))  # type: ignore[no-any-return]


def enqueue_many(env: Env, task: Task[Any, Any], calls: Any, **kwargs: Any) -> list[str | None]:
    if env.api == "sync":
        return task.enqueue_many(calls, **kwargs)
    return run(env, task.aenqueue_many(calls, **kwargs))  # type: ignore[no-any-return]


def drain(env: Env, q: Any, handler: Any, **kwargs: Any) -> list[Outcome]:
    """run_due (sync) or arun_due (async) on the env's queue."""
    if env.api == "sync":
        return run_due(q, handler, **kwargs)
    return run(env, arun_due(q._queue, handler, **kwargs))  # type: ignore[no-any-return]


def scheduler(env: Env, q: Any, jobs: Iterable[PeriodicJob]) -> Any:
    """A Scheduler or an AsyncScheduler for the env's queue."""
    if env.api == "sync":
        return Scheduler(q, jobs)
    return AsyncScheduler(q._queue, jobs)


def tick(env: Env, sched: Any) -> list[str]:
    return run(env, sched.run_pending())  # type: ignore[no-any-return]
