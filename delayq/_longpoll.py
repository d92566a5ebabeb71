"""Long-polling: how a dequeue with ``wait`` > 0 waits for jobs, and the constants that bound it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Union

from ._replies import DequeueResult
from ._steps import Block, Op, Sleep, Step
from ._types import Job
from ._validate import Duration, to_ms

__all__ = [
    "BLOCK_MARGIN_S",
    "MAX_WAIT_S",
    "SHARDED_NAP_S",
    "WAIT_SLICE_S",
    "WINDOW_STEP_S",
    "Pause",
    "long_poll",
    "nap_pause",
    "waiter_pause",
]

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

Pause = Callable[[DequeueResult, float], Union[Step, None]]
"""What a long-poll does after a dequeue that claimed nothing: given that dequeue's result and the
seconds left of the wait, the step to take before the next one (None: dequeue again at once)."""


def waiter_pause(wake: str, max_block: float | None) -> Pause:
    """How a single-tag queue's waiter waits, blocking on its ``wake`` list (each BLPOP at most ``max_block``).

    A waiter that claims nothing is told the time to watch (the queue's next due time or
    lock expiry) if no other waiter is due back before it, or if it is nearer than
    BLOCK_MARGIN_S; otherwise it is told nothing. It blocks on the wake list (BLPOP: one
    token wakes one waiter) until BLOCK_MARGIN_S before the time it watches, then checks
    every WINDOW_STEP_S; with nothing to watch it blocks for a token, WAIT_SLICE_S at
    most. The scripts push a token whenever the next claimable time moves earlier than
    every waiter's return (see lua/dequeue.lua). So, however many consumers wait, one is
    back within WINDOW_STEP_S plus a round trip of any job becoming claimable (within
    WAIT_SLICE_S if the consumer watching for it died).
    """

    def block(seconds: float) -> Step:
        # BLPOP timeout 0 would block for ever, and the server rounds to ms: a short wait sleeps
        if seconds < 0.01:
            return Sleep(max(seconds, 0.0))
        return Block(wake, seconds if max_block is None else min(seconds, max_block))

    def pause(result: DequeueResult, remaining: float) -> Step | None:
        if result.next_ms is None:  # another waiter watches: wait for a token
            slice_s = min(remaining, WAIT_SLICE_S)
            return block(slice_s - BLOCK_MARGIN_S) if slice_s > BLOCK_MARGIN_S else Sleep(slice_s)
        until_due = min(remaining, (result.next_ms - result.now_ms) / 1000)
        if until_due <= 0:
            return None
        if until_due > BLOCK_MARGIN_S + WINDOW_STEP_S:
            return block(until_due - BLOCK_MARGIN_S)
        return Sleep(min(until_due, WINDOW_STEP_S))

    return pause


def nap_pause(result: DequeueResult, remaining: float) -> Step | None:
    """How a sharded queue waits: BLPOP cannot wait on keys in several slots, so it naps until the
    next due time the shards reported, SHARDED_NAP_S at most: it is back within that of any job
    becoming claimable, and registers as no shard's waiter."""
    until_due = math.inf if result.next_ms is None else (result.next_ms - result.now_ms) / 1000
    nap = min(remaining, until_due, SHARDED_NAP_S)
    return Sleep(nap) if nap > 0 else None


def long_poll(
    dequeue: Callable[[Iterable[Job], float], Op[DequeueResult]],
    done: Iterable[Job],
    wait: Duration,
    pause: Pause,
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
