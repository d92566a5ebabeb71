"""Helpers for testing code that uses delayq: a clock you control, and a runner that works off due jobs inline.

    import fakeredis
    from delayq import Queue
    from delayq.testing import frozen_clock, run_due

    queue = Queue(fakeredis.FakeRedis(), "emails")
    with frozen_clock(queue) as clock:
        queue.enqueue(b"hi", delay=3600)
        assert run_due(queue, handler) == []      # not due yet
        clock.advance(3600)
        [outcome] = run_due(queue, handler)       # runs now, inline
        assert outcome.kind == "processed"

Both work on fakeredis and on a real server, for ``delayq.Queue``, ``delayq.aio.Queue``
(``arun_due``) and sharded queues. The clock is the queue's own: every script of the queue
takes "now" from it instead of the server's TIME, so delays, due times, lock expiry and
retry backoff all follow it, and so do periodic schedulers on that queue.
"""

from ._clock import Clock, frozen_clock
from ._runner import Outcome, OutcomeKind, arun_due, run_due

__all__ = ["Clock", "Outcome", "OutcomeKind", "arun_due", "frozen_clock", "run_due"]

for _public in (Clock, Outcome, arun_due, frozen_clock, run_due):
    _public.__module__ = __name__  # reprs and docs show the public path
del _public
