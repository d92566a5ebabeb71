"""What the thread and the asyncio worker share besides their loops: checking the settings, the
counters, the heartbeat entry, and stop requests. The loops are in _worker.py and _aio_worker.py,
the decisions they share in _worker_core.py."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from ._errors import InvalidType
from ._heartbeats import heartbeat_entry
from ._hooks import PolicyFn
from ._types import Job
from ._worker_core import DEFAULT_TIMEOUT_S, WorkerCore
from ._worker_types import Backoff, WorkerEvent, WorkerStats

__all__ = ["WorkerBase"]

QueueT = TypeVar("QueueT")


class WorkerBase(Generic[QueueT]):
    """What the thread and the asyncio worker share besides their loops: checking the settings,
    the counters, the heartbeat entry, and stop requests (graceful first, hard the second time)."""

    queue_type: ClassVar[type] = object
    """The queue class this worker drives (set by each worker)."""
    twin: ClassVar[str] = ""
    """The other worker, named in the error for a queue of the other kind."""

    def __init__(
        self,
        queue: QueueT,
        handler: Callable[[Job], Any],
        *,
        concurrency: int = 8,
        prefetch: int | None = None,
        lock_ttl: float = 30,
        poll: float = 1.0,
        backoff: Backoff | None = None,
        extend_every: float | None = None,
        grace: float = 30,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        heartbeat: bool = True,
        on_event: Callable[[WorkerEvent], None] | None = None,
        logger: logging.Logger | None = None,
        policy: PolicyFn | None = None,
    ) -> None:
        if not isinstance(queue, self.queue_type):
            kind = f"{self.queue_type.__module__}.{self.queue_type.__qualname__}"
            raise InvalidType(f"queue must be a {kind} (use {self.twin} for the other kind), got {queue!r}")
        if not callable(handler):
            raise InvalidType(f"handler must be callable, got {handler!r}")
        if not isinstance(heartbeat, bool):
            raise InvalidType(f"heartbeat must be a bool, got {heartbeat!r}")
        self.queue: QueueT = queue
        self.handler: Callable[[Job], Any] = handler
        if policy is None:
            policy = tasks_policy(handler)
        self.core = WorkerCore.make(
            concurrency=concurrency,
            prefetch=prefetch,
            lock_ttl=lock_ttl,
            poll=poll,
            backoff=backoff,
            extend_every=extend_every,
            grace=grace,
            timeout=timeout,
            on_event=on_event,
            logger=logger,
            policy=policy,
            queue_max_attempts=getattr(getattr(queue, "_core", None), "max_attempts", None),
        )
        self.heartbeat = heartbeat
        self.id = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        """This worker's id in the queue's heartbeat hash (host:pid:random)."""
        self.started = time.time()
        self._stop = threading.Event()
        self._hard = threading.Event()
        self._setup()

    @property
    def policy(self) -> PolicyFn | None:
        """The per-job policy the worker asks as each job starts (given, or its Tasks'), or None."""
        return self.core.policy

    def _setup(self) -> None:
        """Each worker's own state (overridden)."""

    @property
    def stats(self) -> WorkerStats:
        """The worker's counters: processed, failed, retried, dead_lettered, lock_lost, returned."""
        return self.core.stats

    def heartbeat_entry(self) -> str:
        """This worker's entry in the queue's heartbeat hash, as of now (see delayq._heartbeats)."""
        return heartbeat_entry(self.core.concurrency, vars(self.core.stats), self.started, time.time())

    def stop(self, *, hard: bool = False) -> None:
        """Ask the worker to stop: gracefully the first time, at once with ``hard`` or a second time."""
        if self._stop.is_set() or hard:
            self._hard.set()
        self._stop.set()

    def _signalled(self, name: str) -> None:
        if self._stop.is_set():
            self.core.log.warning("%s again: stopping now, running jobs go back to the queue", name)
        else:
            self.core.log.warning(
                "%s: stopping; running jobs get %.0fs to finish (send it again to stop now)", name, self.core.grace
            )
        self.stop()


def tasks_policy(handler: object) -> PolicyFn | None:
    """The policy that comes with a handler: a ``delayq.tasks.Tasks``'s ``run`` or ``arun`` brings
    the registry's ``policy`` (each task's own attempts, backoff, timeout and lock ttl); None else."""
    from .tasks import Tasks  # noqa: PLC0415  (the tasks layer imports delayq.aio, whose worker imports this)

    owner, function = getattr(handler, "__self__", None), getattr(handler, "__func__", None)
    if isinstance(owner, Tasks) and function in (Tasks.run, Tasks.arun):
        return owner.policy
    return None
