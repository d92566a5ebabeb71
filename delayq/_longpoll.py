"""Long-polling: how a dequeue with ``wait`` > 0 waits for jobs, and the constants that bound it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ._replies import DequeueResult
from ._steps import Op, Step
from ._types import Job
from ._validate import Duration, to_ms

__all__ = ["BLOCK_MARGIN_S", "MAX_WAIT_S", "SHARDED_NAP_S", "WAIT_SLICE_S", "WINDOW_STEP_S", "long_poll"]

MAX_WAIT_S = 3600.0
"""Longest long-poll wait of one dequeue, in seconds."""
BLOCK_MARGIN_S = 0.11
"""Redis fires a BLPOP timeout on its cron tick, up to 1/hz late (100 ms at the default hz 10): a
long-poll's BLPOP ends this much before the time the waiter must be back."""
WINDOW_STEP_S = 0.005
"""Within BLOCK_MARGIN_S of the time it watches, a waiter checks the queue every this long: the
bound on how late it sees a job that becomes due in that window (a BLPOP cannot time out sooner)."""
WAIT_SLICE_S = 1.0
"""A waiter re-reads the queue at least this often, so that a consumer that died while it was
the one watching the next due time delays that job by this much at most."""
SHARDED_NAP_S = 0.05
"""A sharded queue cannot BLPOP keys in several slots at once: its long-poll naps at most this long."""


def long_poll(
    dequeue: Callable[[Iterable[Job], float], Op[DequeueResult]],
    done: Iterable[Job],
    wait: Duration,
    pause: Callable[[DequeueResult, float], Step | None],
) -> Op[DequeueResult]:
    """Dequeue (acking ``done``) and, while nothing comes and ``wait`` lasts, pause and retry.

    ``dequeue(acks, remaining)`` makes one dequeue call, told how many seconds of the wait
    remain; ``pause(result, remaining)`` makes the step to take before the next one (None:
    retry at once).

    Raises:
        InvalidType, InvalidArgument: A bad wait (or what ``dequeue`` refuses), before anything is sent.
    """
    wait_s = to_ms(wait, "wait", minimum_ms=0, maximum_s=MAX_WAIT_S) / 1000
    deadline = time.monotonic() + wait_s
    first = result = yield from dequeue(done, wait_s)
    acked, dead = result.acked, result.dead_lettered
    while not result.jobs and (remaining := deadline - time.monotonic()) > 0:
        step = pause(result, remaining)
        if step is not None:
            yield step
        result = yield from dequeue((), max(0.0, deadline - time.monotonic()))
        dead += result.dead_lettered
    return DequeueResult(result.now_ms, result.next_ms, acked, dead, result.jobs, first.refused, first.unapplied, first.gone)
