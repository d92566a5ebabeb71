"""Phase ``worker``: what the Worker runtime keeps of the core's speed, with default settings.

On no-op jobs, in each round and on one server: the bare ``ack_and_dequeue`` loop at batch
1000 (the cap), sync and asyncio, ``Worker`` and ``aio.Worker`` with their defaults (concurrency
8), and ``aio.Worker(concurrency=1000)`` with 5 ms asyncio handlers, whose ideal is
``concurrency / 5 ms`` = 200,000 jobs/s, or the asyncio bare loop's rate where that is lower.
Each worker is compared with the bare loop on its own kind of client: redis-py's asyncio client
packs commands in Python where the sync one uses hiredis, so the asyncio loop is slower by
itself, and that is not the worker's cost (the table shows aio.Worker against the sync loop too).
The 5 ms case also shows its bound on one event loop: 1000 tasks sleeping 5 ms in turn with no
queue at all (what the handlers cost the loop by themselves), and the rate if each job cost the
asyncio bare loop's time plus that and nothing else; no asyncio worker on one thread can beat it.
Ratios are the medians of each round's ratio. With the ``peers`` extra installed (saq, arq, huey), the same
no-op drain by their own workers on the same server, and delayq's default worker as a multiple
of each (see _peers.py).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio

from .. import Queue, Worker
from .. import aio as delayq_aio
from ._harness import PAYLOAD, Cell, Phase, Progress, Result, Target, Targets, median, name_for, table
from ._peers import PEERS

__all__ = ["PHASE"]

BARE_BATCH = 1000
SLOW_HANDLER_S = 0.005
SLOW_CONCURRENCY = 1000
PEER_JOBS = 2000
"""Jobs per peer drain: some peers' default workers drain a few hundred no-op jobs a second."""
GOALS = {"sync": 0.80, "async": 0.80, "async_5ms": 0.60}


def _filled(target: Target, n: int) -> str:
    name = name_for("wrk")
    client = target.client()
    Queue(client, name).enqueue_many([PAYLOAD] * n)
    client.close()
    return name


def bare(target: Target, n: int) -> float:
    """Seconds for the bare loop to drain n jobs: ack_and_dequeue at batch 1000, sync client."""
    client = target.client()
    q = Queue(client, _filled(target, n))
    start = time.perf_counter()
    done: list[Any] = []
    while True:
        _, jobs = q.ack_and_dequeue(done, BARE_BATCH, 30)
        if not jobs:
            break
        done = jobs
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


def bare_async(target: Target, n: int) -> float:
    """Seconds for the bare loop on an asyncio client to drain n jobs."""
    name = _filled(target, n)

    async def main() -> float:
        client = _async_client(target)
        q = delayq_aio.Queue(client, name)
        start = time.perf_counter()
        done: list[Any] = []
        while True:
            _, jobs = await q.ack_and_dequeue(done, BARE_BATCH, 30)
            if not jobs:
                break
            done = jobs
        elapsed = time.perf_counter() - start
        await client.aclose()
        return elapsed

    return asyncio.run(main())


def _async_client(target: Target) -> Any:
    if target.fake:
        import fakeredis  # noqa: PLC0415 (only when no real server can be had)

        return fakeredis.FakeAsyncRedis(server=target.fake_server)
    assert target.url is not None
    return redis.asyncio.Redis.from_url(target.url)


def sync_worker(target: Target, n: int) -> float:
    """Seconds for a default ``Worker`` to process n no-op jobs (until all are acked)."""
    client = target.client()
    worker = Worker(Queue(client, _filled(target, n)), lambda job: None, heartbeat=False)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    start = time.perf_counter()
    thread.start()
    while worker.stats.processed < n:
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    worker.stop()
    thread.join(30)
    client.close()
    return elapsed


def async_worker(target: Target, n: int, handler: Callable[[Any], Any] | None = None, **settings: Any) -> float:
    """Seconds for an ``aio.Worker`` (default settings unless given) to process n jobs."""
    name = _filled(target, n)

    async def noop(job: Any) -> None:
        pass

    async def main() -> float:
        client = _async_client(target)
        worker = delayq_aio.Worker(delayq_aio.Queue(client, name), handler or noop, heartbeat=False, **settings)
        start = time.perf_counter()
        task = asyncio.create_task(worker.run(install_signals=False))
        while worker.stats.processed < n and not task.done():
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - start
        worker.stop()
        await task
        await client.aclose()
        return elapsed

    return asyncio.run(main())


async def _sleep_5ms(job: Any) -> None:
    await asyncio.sleep(SLOW_HANDLER_S)


def sleepers(n: int) -> float:
    """Seconds for SLOW_CONCURRENCY asyncio tasks to sleep 5 ms n times in all, with no queue: what
    the 5 ms handlers cost the event loop by themselves (a sleep's timer, future and task step)."""

    async def main() -> float:
        left = n

        async def slot() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await asyncio.sleep(SLOW_HANDLER_S)

        start = time.perf_counter()
        await asyncio.gather(*(slot() for _ in range(SLOW_CONCURRENCY)))
        return time.perf_counter() - start

    return asyncio.run(main())


def measure(target: Target, opts: argparse.Namespace, progress: Progress) -> Result:
    """Jobs/s of the bare loop and of the workers, interleaved in each round; the peers' too."""
    n = 100_000 if opts.full else 20_000
    if target.fake:
        n = 1000
    peer_n = min(n, PEER_JOBS)
    runs: dict[str, Callable[[], float]] = {
        "bare": lambda: bare(target, n),
        "bare_async": lambda: bare_async(target, n),
        "sync": lambda: sync_worker(target, n),
        "async": lambda: async_worker(target, n),
        "async_5ms": lambda: async_worker(target, n, _sleep_5ms, concurrency=SLOW_CONCURRENCY),
        "sleepers": lambda: sleepers(n),
    }
    peers = {name: drain for name, drain in PEERS.items() if drain.available() and not target.fake}
    cells: dict[str, Cell] = {}
    ratios: dict[str, list[float]] = {}
    failed: dict[str, str] = {}
    with progress.phase("worker", opts.rounds * (len(runs) + len(peers))) as step:
        for _ in range(opts.rounds):
            rates = {}
            for kind, run in runs.items():
                elapsed = run()
                cells.setdefault(kind, Cell()).add(n, elapsed, None)
                rates[kind] = n / elapsed
                step(kind)
            for name, drain in peers.items():
                assert target.url is not None
                if name in failed:
                    continue
                try:
                    elapsed = drain.run(target.url, peer_n)
                except Exception as exc:  # a peer's own failure is reported, not the bench's
                    failed[name] = f"{type(exc).__name__}: {exc}"
                    continue
                cells.setdefault(name, Cell()).add(peer_n, elapsed, None)
                ratios.setdefault(f"sync/{name}", []).append(rates["sync"] / (peer_n / elapsed))
                ratios.setdefault(f"async/{name}", []).append(rates["async"] / (peer_n / elapsed))
                step(name)
            ratios.setdefault("sync", []).append(rates["sync"] / rates["bare"])
            ratios.setdefault("async", []).append(rates["async"] / rates["bare_async"])
            ratios.setdefault("async/sync bare", []).append(rates["async"] / rates["bare"])
            ratios.setdefault("bare_async", []).append(rates["bare_async"] / rates["bare"])
            ideal = min(SLOW_CONCURRENCY / SLOW_HANDLER_S, rates["bare_async"])
            ratios.setdefault("async_5ms", []).append(rates["async_5ms"] / ideal)
            # one thread does the asyncio client's work and the sleeps' work, one after the other:
            # with nothing else at all, a job costs the two together
            bound = 1 / (1 / rates["bare_async"] + 1 / rates["sleepers"])
            ratios.setdefault("bound_5ms", []).append(bound / ideal)
            ratios.setdefault("async_5ms/bound", []).append(rates["async_5ms"] / bound)
    return {
        "jobs": n,
        "peer_jobs": peer_n,
        "rates": {kind: cell.summary()["items_per_s"] for kind, cell in cells.items()},
        "ratios": {kind: median(values) for kind, values in ratios.items()},
        "peers": sorted(set(peers) - set(failed)),
        "peers_failed": failed,
        "peers_missing": sorted(set(PEERS) - set(peers)),
    }


def report(result: Result) -> str:
    rates, ratios = result["rates"], result["ratios"]
    labels = {
        "bare": f"bare ack_and_dequeue loop, batch {BARE_BATCH}",
        "bare_async": "the same on an asyncio client",
        "sync": "Worker, default settings",
        "async": "aio.Worker, default settings",
        "async_5ms": f"aio.Worker, concurrency {SLOW_CONCURRENCY}, 5 ms handlers",
        "sleepers": f"{SLOW_CONCURRENCY} asyncio tasks sleeping 5 ms in turn, no queue",
    }
    rows = [
        [labels["bare"], rates["bare"], "1.00"],
        [labels["bare_async"], rates["bare_async"], f"{ratios['bare_async']:.2f} of bare"],
        [labels["sync"], rates["sync"], f"{ratios['sync']:.2f} of bare"],
        [labels["async"], rates["async"], f"{ratios['async']:.2f} of asyncio bare, {ratios['async/sync bare']:.2f} of bare"],
        [
            labels["async_5ms"],
            rates["async_5ms"],
            f"{ratios['async_5ms']:.2f} of min(200,000/s, asyncio bare), {ratios['async_5ms/bound']:.2f} of the bound",
        ],
        [labels["sleepers"], rates["sleepers"], "what the handlers cost the loop alone"],
        [
            "bound: asyncio bare loop + the sleeps, one thread",
            1 / (1 / rates["bare_async"] + 1 / rates["sleepers"]),
            f"{ratios['bound_5ms']:.2f} of min(200,000/s, asyncio bare)",
        ],
    ]
    for name in result["peers"]:
        rows.append(
            [
                f"{name}'s own worker, defaults ({result['peer_jobs']:,} jobs)",
                rates[name],
                f"Worker {ratios[f'sync/{name}']:.1f}x, aio {ratios[f'async/{name}']:.1f}x",
            ]
        )
    text = table(
        f"worker runtime on {result['jobs']:,} no-op jobs (jobs/s; ratios: medians of each round's)",
        ["how", "jobs/s", "ratio"],
        rows,
    )
    for name, reason in result.get("peers_failed", {}).items():
        text += f"\n({name} failed: {reason})"
    if result["peers_missing"]:
        text += f"\n(peers not measured: {', '.join(result['peers_missing'])} not installed: pip install 'delayq[peers]')"
    return text


def targets(result: Result | None, goals: Targets) -> None:
    ratios = (result or {}).get("ratios", {})
    goals.check("Worker (defaults) vs the bare loop", ratios.get("sync"), GOALS["sync"], True)
    goals.check("aio.Worker (defaults) vs the bare loop on an asyncio client", ratios.get("async"), GOALS["async"], True)
    goals.check(
        "aio.Worker, 1000 x 5 ms handlers, vs min(200,000/s, asyncio bare)", ratios.get("async_5ms"), GOALS["async_5ms"], True
    )


PHASE = Phase(
    name="worker",
    summary="Worker and aio.Worker (defaults, no-op; and 1000 x 5 ms async) vs the bare loop; saq, arq, huey if installed",
    measure=measure,
    report=report,
    targets=targets,
)
