"""Phase ``enqueue``: enqueue items/s, one at a time, ``enqueue_many`` (1000 per call), and the round trip's.

Each round times the three on fresh queues, in turn.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import Any

from .. import Queue
from ._harness import PAYLOAD, Cell, Phase, Progress, Result, Target, Targets, name_for, server_usec, spent, table
from ._roundtrip import RoundTripQueue

__all__ = ["PHASE"]


def _enqueue_one(q: Queue | RoundTripQueue, n: int) -> None:
    for _ in range(n):
        q.enqueue(PAYLOAD)


def _enqueue_many(q: Queue, n: int) -> None:
    for _ in range(n // 1000):
        q.enqueue_many([PAYLOAD] * 1000)


def measure(target: Target, opts: argparse.Namespace, progress: Progress) -> Result:
    """Enqueue items/s: Lua one at a time, Lua enqueue_many 1000 per call, round trip one at a time."""
    scale = 4 if opts.full else 1
    one_n, many_n, rt_n = 3000 * scale, 100_000 * scale, 1000 * scale
    if target.fake:
        one_n, many_n, rt_n = 500, 5000, 300
    cells: dict[str, Cell] = {}
    client = target.client()

    def timed(kind: str, n: int, run: Callable[[], Any], only: str | None) -> None:
        before = server_usec(client, target.fake)
        start = time.perf_counter()
        run()
        cells.setdefault(kind, Cell()).add(n, time.perf_counter() - start, spent(before, server_usec(client, target.fake), only))

    with progress.phase("enqueue", opts.rounds * 3) as step:
        for _ in range(opts.rounds):
            q = Queue(client, name_for("enq"))
            rq = RoundTripQueue(client, name_for("rt-enq"))
            timed("lua enqueue", one_n, functools.partial(_enqueue_one, q, one_n), "evalsha")
            step("enqueue")
            timed("lua enqueue_many", many_n, functools.partial(_enqueue_many, q, many_n), "evalsha")
            step("enqueue_many")
            timed("round trip enqueue", rt_n, functools.partial(_enqueue_one, rq, rt_n), None)
            step("round trip")
            q.purge()
            rq.purge()
    client.close()
    return {kind: cell.summary() for kind, cell in cells.items()}


def report(result: Result) -> str:
    return table(
        "enqueue (items/s)",
        ["how", "items/s", "server µs/item"],
        [[k, v["items_per_s"], v["server_usec_per_item"]] for k, v in result.items()],
    )


def targets(result: Result | None, goals: Targets) -> None:
    many = (result or {}).get("lua enqueue_many")
    goals.check("enqueue_many at 1000 per call", many["items_per_s"] if many else None, 200_000, True, " items/s")


PHASE = Phase(
    name="enqueue",
    summary="one at a time vs enqueue_many (1000 per call), and the round-trip enqueue",
    measure=measure,
    report=report,
    targets=targets,
)
