"""Phase ``consumers``: total items/s with 1, 2 and 4 consumer processes on one queue.

Batch 100, ack+claim in one call; each round fills a fresh queue for each process
count. Needs a real server (fakeredis lives inside one process).
"""

from __future__ import annotations

import argparse

from .. import Queue
from ._harness import PAYLOAD, Cell, Phase, Progress, Result, Target, name_for, server_usec, spent, table
from ._processes import run_consumers

__all__ = ["PHASE"]


def measure(target: Target, opts: argparse.Namespace, progress: Progress) -> Result:
    """Total items/s with 1, 2 and 4 consumer processes (batch 100, ack+claim in one call)."""
    if target.fake:
        return {"skipped": "needs a real server (fakeredis lives inside one process)"}
    assert target.url is not None
    n = 200_000 if opts.full else 60_000
    client = target.client()
    cells: dict[int, Cell] = {}
    with progress.phase("consumers", opts.rounds * 3) as step:
        for _ in range(opts.rounds):
            for procs in (1, 2, 4):
                q = Queue(client, name_for("cons"))
                q.enqueue_many([PAYLOAD] * n)
                before = server_usec(client, False)
                elapsed = run_consumers(target.url, q, procs, n)
                cells.setdefault(procs, Cell()).add(n, elapsed, spent(before, server_usec(client, False), "evalsha"))
                step(f"{procs} processes")
    client.close()
    return {str(p): c.summary() for p, c in cells.items()}


def report(result: Result) -> str:
    return table(
        "consumer processes (batch 100, ack+claim in one call)",
        ["processes", "items/s", "server µs/item"],
        [[int(p), v["items_per_s"], v["server_usec_per_item"]] for p, v in result.items()],
    )


PHASE = Phase(
    name="consumers",
    summary="1, 2 and 4 consumer processes on one queue",
    measure=measure,
    report=report,
)
