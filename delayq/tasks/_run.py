"""How a task runs: under its timeout, and a plain function on a daemon thread for the asyncio worker."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._task import Task

__all__ = ["in_thread", "limited"]

T = TypeVar("T")


async def limited(awaitable: Awaitable[T], task: Task[Any, Any]) -> T:
    """Await, cancelling at the task's timeout (None: no limit)."""
    limit = task.policy.timeout
    if limit is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, limit)
    except asyncio.TimeoutError:  # not yet the builtin TimeoutError in Python 3.10
        raise TimeoutError(f"task {task.name!r} ran longer than its timeout of {limit:g}s") from None


def in_thread(
    context: contextvars.Context, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> asyncio.Future[Any]:
    """Run ``fn`` on a daemon thread. asyncio.to_thread's pool is joined when the loop closes,
    so a worker's hard stop would still wait for the function (the asyncio worker does the same)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if not future.done():
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    def target() -> None:
        try:
            value, error = context.run(fn, *args, **kwargs), None
        except BaseException as exc:  # handed to the awaiting task
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop may be closed after a hard stop
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name=f"delayq-task-{getattr(fn, '__name__', 'task')[:24]}", daemon=True).start()
    return future
