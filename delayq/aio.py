"""delayq.aio: the asyncio twins of :class:`delayq.Queue`, :class:`delayq.Worker` and :func:`delayq.find_queues`.

The same methods, as coroutines over ``redis.asyncio`` clients; each is documented on its sync twin.
"""

from ._aio import Queue
from ._aio_worker import Worker
from ._discover import afind_queues as find_queues

__all__ = ["Queue", "Worker", "find_queues"]

for _cls in (Queue, Worker):
    _cls.__module__ = "delayq.aio"
del _cls
