"""Peers for the worker phase: saq, arq and huey draining no-op jobs with their own workers.

Each is optional (the ``peers`` extra): a peer whose package does not import is reported as not
installed. Each drain fills a fresh queue of its own on the same server (not timed), then times
its worker with its default settings from start until every job has run: saq ``Worker``
(concurrency 10) and arq ``Worker`` (max_jobs 10) in burst mode, huey's thread consumer (one
worker by default; here 8 threads, delayq's default concurrency, since one would be no contest).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PEERS", "Peer"]

FILL_AT_ONCE = 50
"""Enqueue calls in flight while filling a peer's queue (each may take a connection of its own)."""


async def noop(ctx: Any) -> None:
    """The job saq and arq run: a module-level function, as both register functions by name."""


@dataclass(frozen=True)
class Peer:
    """A peer queue: the module it needs, and its drain (url, n jobs) -> seconds."""

    module: str
    run: Callable[[str, int], float]

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


def drain_saq(url: str, n: int) -> float:
    """saq: enqueue n no-op jobs, then time a default Worker in burst mode until it stops."""
    from saq import Queue, Worker  # noqa: PLC0415 (optional)

    async def main() -> float:
        queue = Queue.from_url(url, name=f"bench-saq-{uuid.uuid4().hex[:8]}")
        await queue.connect()
        for start in range(0, n, FILL_AT_ONCE):
            await asyncio.gather(*(queue.enqueue("noop") for _ in range(min(FILL_AT_ONCE, n - start))))
        worker = Worker(queue, functions=[noop], burst=True, dequeue_timeout=0.1)
        worker.SIGNALS = []
        began = time.perf_counter()
        await worker.start()
        elapsed = time.perf_counter() - began
        left = await queue.count("queued")
        await queue.disconnect()
        if left:
            raise RuntimeError(f"saq left {left} of {n} jobs")
        return elapsed

    return asyncio.run(main())


def drain_arq(url: str, n: int) -> float:
    """arq: enqueue n no-op jobs, then time a default Worker in burst mode until it returns."""
    from arq import create_pool  # noqa: PLC0415 (optional)
    from arq.connections import RedisSettings  # noqa: PLC0415
    from arq.worker import Worker  # noqa: PLC0415

    async def main() -> float:
        name = f"bench-arq-{uuid.uuid4().hex[:8]}"
        settings = RedisSettings.from_dsn(url)
        pool = await create_pool(settings, default_queue_name=name)
        for start in range(0, n, FILL_AT_ONCE):
            await asyncio.gather(*(pool.enqueue_job("noop", _queue_name=name) for _ in range(min(FILL_AT_ONCE, n - start))))
        worker = Worker(
            functions=[noop], redis_settings=settings, queue_name=name, burst=True, handle_signals=False, keep_result=0
        )
        began = time.perf_counter()
        await worker.main()
        elapsed = time.perf_counter() - began
        await worker.close()
        left = await pool.zcard(name)
        await pool.aclose()
        if left:
            raise RuntimeError(f"arq left {left} of {n} jobs")
        return elapsed

    return asyncio.run(main())


def drain_huey(url: str, n: int) -> float:
    """huey: enqueue n no-op tasks, then time a thread consumer with 8 workers until all ran."""
    from huey import RedisHuey  # noqa: PLC0415 (optional)

    huey = RedisHuey(f"bench-huey-{uuid.uuid4().hex[:8]}", url=url, results=False)
    ran = [0]
    lock = threading.Lock()

    @huey.task()  # type: ignore[untyped-decorator]
    def noop() -> None:
        with lock:
            ran[0] += 1

    for _ in range(n):
        noop()
    consumer = huey.create_consumer(workers=8, periodic=False, initial_delay=0.001, max_delay=0.1)
    consumer._set_signal_handlers = lambda: None  # not the main thread's to take
    began = time.perf_counter()
    consumer.start()
    while ran[0] < n:
        time.sleep(0.002)
    elapsed = time.perf_counter() - began
    consumer.stop(graceful=True)
    huey.storage.flush_all()
    return elapsed


PEERS: dict[str, Peer] = {
    "saq": Peer("saq", drain_saq),
    "arq": Peer("arq", drain_arq),
    "huey": Peer("huey", drain_huey),
}
