"""How a task runs: under its timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from ._task import Task

__all__ = ["limited"]

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
