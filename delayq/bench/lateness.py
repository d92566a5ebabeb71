"""Phase ``lateness``: claim time minus due time (server clock), p50/p99/max, at 1,000 jobs/s.

Jobs with random 0-200 ms delays are enqueued at a fixed rate for 5 s (20 s with
--full) while two processes run a long-polling ``delayq.Worker`` each; every
handler notes how late its job was claimed. Needs a real server.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import threading
import time
from typing import Any

import redis

from .. import Queue, Worker
from ._harness import PAYLOAD, TTL, Phase, Progress, Result, Target, Targets, name_for

__all__ = ["PHASE"]


def _late_consumer(url: str, name: str, seconds: float, ready: Any, go: Any, out: Any) -> None:
    """A lateness consumer: a delayq.Worker whose handler notes how late each job was claimed (ms)."""
    client = redis.Redis.from_url(url)
    q = Queue(client, name)
    q.stats()
    late: list[int] = []
    ttl_ms = int(TTL * 1000)
    worker = Worker(q, lambda job: late.append(job.lock_expires_ms - ttl_ms - job.due_ms), concurrency=8, lock_ttl=TTL, poll=1.0)
    ready.release()
    go.wait()
    stopper = threading.Timer(seconds, worker.stop)
    stopper.start()
    worker.run(install_signals=False)
    out.put(late)
    client.close()


IDLE_S = 4.0
"""How long the idle consumer is watched."""


def idle_calls(url: str, seconds: float) -> dict[str, float]:
    """Commands per second that a delayq.Worker (as the consumers run it) sends to an empty queue,
    by INFO commandstats: what waiting costs the server when there is no work."""
    client = redis.Redis.from_url(url)
    q = Queue(client, name_for("idle"))
    worker = Worker(q, lambda job: None, concurrency=8, lock_ttl=TTL, poll=1.0)
    stopper = threading.Timer(seconds, worker.stop)
    time.sleep(0.2)  # the sender's last calls settle
    before = client.info("commandstats")
    start = time.perf_counter()
    stopper.start()
    worker.run(install_signals=False)
    elapsed = time.perf_counter() - start
    after = client.info("commandstats")
    client.close()
    rates = {}
    for name, v in after.items():
        calls = v["calls"] - before.get(name, {"calls": 0})["calls"]
        if calls > 0 and not name.startswith(("cmdstat_info", "cmdstat_script")):
            rates[name.removeprefix("cmdstat_")] = calls / elapsed
    return rates


def measure(target: Target, opts: argparse.Namespace, progress: Progress) -> Result:
    """Claim time minus due time (server clock) at a fixed enqueue rate, two worker processes."""
    if target.fake:
        return {"skipped": "needs a real server (fakeredis lives inside one process)"}
    assert target.url is not None
    rate, seconds, max_delay = 1000, (20.0 if opts.full else 5.0), 0.2
    ctx = multiprocessing.get_context("spawn")
    client = target.client()
    q = Queue(client, name_for("late"))
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    consumers = [
        ctx.Process(target=_late_consumer, args=(target.url, q.name, seconds + max_delay + 1, ready, go, out)) for _ in range(2)
    ]
    for c in consumers:
        c.start()
    for _ in consumers:
        ready.acquire()
    go.set()
    sent = 0
    rng = random.Random(7)
    start = time.perf_counter()
    with progress.phase("lateness", int(seconds)) as step:
        second = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            while sent < int(elapsed * rate):  # a fixed rate: catch up to the schedule
                q.enqueue(PAYLOAD, delay=rng.uniform(0, max_delay))
                sent += 1
            if int(elapsed) > second:
                second = int(elapsed)
                step(f"{sent:,} sent")
            time.sleep(0.0005)
    late = sorted(v for _ in consumers for v in out.get(timeout=60))
    for c in consumers:
        c.join()
    left = q.stats().total
    q.purge()
    client.close()
    if not late:
        raise RuntimeError("no job was delivered in the lateness benchmark")

    idle = idle_calls(target.url, IDLE_S)

    def pct(p: float) -> float:
        return float(late[min(len(late) - 1, int(p * len(late)))])

    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "consumers": 2,
        "consumer": "delayq.Worker, concurrency 8, long-poll",
        "sent": sent,
        "delivered": len(late),
        "left_in_queue": left,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": float(late[-1]),
        "histogram_ms": _histogram(late),
        "idle_consumer_calls_per_s": idle,
    }


def _histogram(values: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return counts


def report(result: Result) -> str:
    lt = result
    return (
        f"lateness (claim time - due time, server clock): {lt['delivered']:,} jobs at {lt['rate_per_s']}/s for "
        f"{lt['seconds']:g} s, delays 0-200 ms, {lt['consumers']} delayq.Worker processes: "
        f"p50 {lt['p50_ms']:.0f} ms, p99 {lt['p99_ms']:.0f} ms, max {lt['max_ms']:.0f} ms\n"
        f"an idle consumer (delayq.Worker on an empty queue, {IDLE_S:g} s): "
        + ", ".join(f"{rate:.2f} {name.upper()}/s" for name, rate in sorted(lt.get("idle_consumer_calls_per_s", {}).items()))
    )


def targets(result: Result | None, goals: Targets) -> None:
    goals.check("lateness p99 at 1,000 jobs/s, 2 worker processes", (result or {}).get("p99_ms"), 2, False, " ms")
    goals.check("lateness max at 1,000 jobs/s, 2 worker processes", (result or {}).get("max_ms"), 10, False, " ms")
    idle = (result or {}).get("idle_consumer_calls_per_s")
    goals.check("calls per second of an idle consumer", sum(idle.values()) if idle else None, 5, False, "/s")


def plot(result: Result, ax: Any) -> None:
    """The lateness histogram, log counts."""
    hist = {int(k): v for k, v in result["histogram_ms"].items()}
    xs = sorted(hist)
    ax.bar(xs, [hist[x] for x in xs], width=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("claim time - due time (ms, server clock)")
    ax.set_ylabel("jobs")
    ax.set_title(f"lateness: p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms")


PHASE = Phase(
    name="lateness",
    summary="jobs with random short delays at a fixed rate: p50/p99/max of claim time - due time",
    measure=measure,
    report=report,
    targets=targets,
    plot=plot,
)
