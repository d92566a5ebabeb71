"""A function run on a daemon thread, its result awaited on the running event loop.

``asyncio.to_thread``'s executor is joined when the loop closes, so a worker's hard stop would
still wait for a running function; a daemon thread ends with the process instead. Used by the
asyncio worker for plain handlers and by tasks for plain task functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["in_daemon_thread"]


def in_daemon_thread(
    name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> tuple[asyncio.Future[Any], threading.Thread]:
    """Start ``fn(*args, **kwargs)`` on a daemon thread named ``name``.

    Args:
        name: The thread's name.
        fn: The function; what it returns or raises settles the future.
        *args: Its positional arguments.
        **kwargs: Its keyword arguments (``name`` and ``fn`` among them: the two above are positional-only).

    Returns:
        A future of the running loop that the thread settles (unless the loop has closed),
        and the thread.
    """
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
            value, error = fn(*args, **kwargs), None
        except BaseException as exc:  # handed to the awaiting task
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop may be closed after a hard stop
            loop.call_soon_threadsafe(settle, value, error)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return future, thread
