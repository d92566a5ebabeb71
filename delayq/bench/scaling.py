"""Phase ``scaling``: dequeue cost vs queue size, and vs jobs locked at the head.

Batch 100 dequeues from queues of 10^4 and 10^5 due jobs (10^6 with --full), and
from one with nothing in flight vs one with 10^4 jobs leased at its head; client
ms and server µs per call, as ratios to the smallest. The round-trip queue, which
steps over locked jobs one round trip each, for contrast (200 locked).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import redis

from .. import Queue
from ._harness import PAYLOAD, TTL, Phase, Progress, Result, Target, Targets, median, name_for, server_usec, spent, table
from ._roundtrip import RoundTripQueue

__all__ = ["PHASE"]


def dequeue_cost(client: redis.Redis, fake: bool, q: Queue, calls: int, batch: int) -> dict[str, Any]:
    """Median client latency (ms) and mean server time (µs) of ``calls`` dequeues; acks afterwards."""
    latencies, held = [], []
    before = server_usec(client, fake)
    for _ in range(calls):
        start = time.perf_counter()
        jobs = q.dequeue(batch, TTL)
        latencies.append((time.perf_counter() - start) * 1000)
        held += jobs
    usec = spent(before, server_usec(client, fake), "evalsha")
    for i in range(0, len(held), 1000):
        q.ack_many(held[i : i + 1000])
    return {"client_ms": median(latencies), "server_usec_per_call": None if usec is None else usec / calls}


def measure(target: Target, opts: argparse.Namespace, progress: Progress) -> Result:
    """Dequeue cost vs queue size and vs jobs locked at the head; the round trip's for contrast."""
    sizes = [10_000, 100_000] + ([1_000_000] if opts.full else [])
    locked_n = 10_000
    if target.fake:
        sizes, locked_n = [1000, 5000], 1000
    calls, batch = 30, 100
    client = target.client()
    result: dict[str, Any] = {"batch": batch, "calls": calls, "rounds": opts.rounds, "sizes": [], "in_flight": {}}
    # every queue is filled once; the rounds then interleave them, each measurement refilling
    # what it consumed, so that drift on this shared machine hits every size alike
    queues: dict[str, Queue] = {}
    with progress.phase("scaling", len(sizes) + 2 + opts.rounds + 2) as step:
        for size in sizes:
            queues[f"size_{size}"] = q = Queue(client, name_for("size"))
            for filled in range(0, size, 10_000):
                q.enqueue_many([PAYLOAD] * min(10_000, size - filled))
            step(f"filled {size:,}")
        for locked in (0, locked_n):
            queues[f"lua_{locked}"] = q = Queue(client, name_for("locked"))
            q.enqueue_many([PAYLOAD] * (locked + (20_000 if not target.fake else 2000)))
            for _ in range(locked // 1000):
                q.dequeue(1000, 3600)  # held for an hour: leased, never acked during the measurement
            step(f"{locked:,} locked")
        samples: dict[str, list[dict[str, Any]]] = {key: [] for key in queues}
        for _ in range(opts.rounds):
            for key, q in queues.items():
                samples[key].append(dequeue_cost(client, target.fake, q, calls, batch))
                q.enqueue_many([PAYLOAD] * (calls * batch))
            step("round")
        for key, q in queues.items():
            runs = samples[key]
            cost = {
                "client_ms": median([r["client_ms"] for r in runs]),
                "server_usec_per_call": None if target.fake else median([r["server_usec_per_call"] for r in runs]),
            }
            if key.startswith("size_"):
                result["sizes"].append({"queued": int(key[5:]), **cost})
            else:
                result["in_flight"][key] = cost
            q.purge()
        rt_locked = 200
        for locked in (0, rt_locked):
            rq = RoundTripQueue(client, name_for("rt-locked"))
            rq.enqueue_many([PAYLOAD] * (locked + 100))
            if locked:
                rq.dequeue(locked, 600)
            latencies: list[float] = []
            for _ in range(5):
                start = time.perf_counter()
                jobs = rq.dequeue(10, TTL)
                latencies.append((time.perf_counter() - start) * 1000)
                rq.ack_many(jobs)
            result["in_flight"][f"round_trip_{locked}"] = {"client_ms": median(latencies), "server_usec_per_call": None}
            rq.purge()
            step(f"round trip {locked} locked")
    client.close()
    base = result["sizes"][0]
    for row in result["sizes"]:
        row["ratio_client"] = row["client_ms"] / base["client_ms"]
        row["ratio_server"] = row["server_usec_per_call"] / base["server_usec_per_call"] if base["server_usec_per_call"] else None
    flight = result["in_flight"]
    flight["lua_ratio_client"] = flight[f"lua_{locked_n}"]["client_ms"] / flight["lua_0"]["client_ms"]
    s0, s1 = flight["lua_0"]["server_usec_per_call"], flight[f"lua_{locked_n}"]["server_usec_per_call"]
    flight["lua_ratio_server"] = s1 / s0 if s0 else None
    flight["round_trip_ratio"] = flight[f"round_trip_{rt_locked}"]["client_ms"] / flight["round_trip_0"]["client_ms"]
    result["locked"] = locked_n
    result["rt_locked"] = rt_locked
    return result


def report(result: Result) -> str:
    s = result
    sizes = table(
        f"dequeue cost vs queue size (batch {s['batch']}, {s['calls']} calls)",
        ["queued", "client ms/call", "server µs/call", "client ratio", "server ratio"],
        [
            [
                r["queued"],
                r["client_ms"],
                r["server_usec_per_call"],
                f"{r['ratio_client']:.2f}",
                _ratio(r["ratio_server"]),
            ]
            for r in s["sizes"]
        ],
    )
    f = s["in_flight"]
    locked = table(
        "dequeue cost vs jobs locked at the head",
        ["queue", "locked", "client ms/call", "server µs/call", "ratio"],
        [
            ["lua", 0, f["lua_0"]["client_ms"], f["lua_0"]["server_usec_per_call"], ""],
            [
                "lua",
                s["locked"],
                f[f"lua_{s['locked']}"]["client_ms"],
                f[f"lua_{s['locked']}"]["server_usec_per_call"],
                f"{f['lua_ratio_client']:.2f} (server {_ratio(f['lua_ratio_server'])})",
            ],
            ["round trip (batch 10)", 0, f["round_trip_0"]["client_ms"], None, ""],
            [
                "round trip (batch 10)",
                s["rt_locked"],
                f[f"round_trip_{s['rt_locked']}"]["client_ms"],
                None,
                f"{f['round_trip_ratio']:.1f}",
            ],
        ],
    )
    return f"{sizes}\n\n{locked}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def targets(result: Result | None, goals: Targets) -> None:
    if result is None:
        goals.check("dequeue server cost at the largest vs the smallest queue", None, 1.3, False, "x")
        goals.check("dequeue server cost with jobs locked at the head vs none", None, 1.3, False, "x")
        return
    last = result["sizes"][-1]
    goals.check(
        f"dequeue server cost at {last['queued']:,} vs {result['sizes'][0]['queued']:,} queued",
        last["ratio_server"],
        1.3,
        False,
        "x",
    )
    goals.check(
        f"dequeue server cost with {result['locked']:,} locked vs none", result["in_flight"]["lua_ratio_server"], 1.3, False, "x"
    )


PHASE = Phase(
    name="scaling",
    summary="dequeue cost at 10^4/10^5 (10^6 with --full) queued, and with 10^4 locked at the head",
    measure=measure,
    report=report,
    targets=targets,
)
