"""Run the tasks, periodic and testing helpers in an Env's flavour (sync, or asyncio on the env's loop)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import delayq
import delayq.aio
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


def run_worker(
    env: Env, q: Any, tasks: Tasks | Callable[..., Any], until: Callable[[], bool], *, linger: float = 0.0, timeout: float = 15
) -> Any:
    """Run the env's kind of worker on the tasks (or a handler) until ``until()``, ``linger`` seconds more, then stop it."""
    if env.api == "sync":
        worker = delayq.Worker(q, tasks.run if isinstance(tasks, Tasks) else tasks, poll=0.1, concurrency=4)
        thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
        thread.start()
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(linger)
        worker.stop()
        thread.join(15)
        assert not thread.is_alive()
        return worker.stats
    aworker = delayq.aio.Worker(q._queue, tasks.arun if isinstance(tasks, Tasks) else tasks, poll=0.1, concurrency=4)

    async def main() -> Any:
        job = asyncio.create_task(aworker.run(install_signals=False))
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(linger)
        aworker.stop()
        return await asyncio.wait_for(job, 15)

    return run(env, main())
