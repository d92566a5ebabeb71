"""delayq: a delayed-job queue whose every operation is one atomic Lua script in Redis.

    import redis
    from delayq import Queue

    q = Queue(redis.Redis(), "emails")
    q.enqueue(b"payload", delay=30)
    for job in q.dequeue(batch=100, lock_ttl=30):
        q.ack(job)

``delayq.aio.Queue`` is the asyncio twin.
"""

from ._discover import find_queues
from ._errors import DelayqError, InvalidArgument, InvalidType, ScriptError
from ._hooks import Fail, JobPolicy, Retry
from ._inspect import JobInfo, JobPage, QueueRef
from ._sync import Queue
from ._types import DeadJob, Job, PendingJob, QueueStats
from ._validate import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_BATCH,
    MAX_DELAY_S,
    MAX_ID_BYTES,
    MAX_LOCK_TTL_S,
    MAX_NAME_LENGTH,
    MAX_PAYLOAD_BYTES,
)
from ._worker import Worker
from ._worker_core import Backoff, WorkerEvent, WorkerStats

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "MAX_BATCH",
    "MAX_DELAY_S",
    "MAX_ID_BYTES",
    "MAX_LOCK_TTL_S",
    "MAX_NAME_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "Backoff",
    "DeadJob",
    "DelayqError",
    "Fail",
    "InvalidArgument",
    "InvalidType",
    "Job",
    "JobInfo",
    "JobPage",
    "JobPolicy",
    "PendingJob",
    "Queue",
    "QueueRef",
    "QueueStats",
    "Retry",
    "ScriptError",
    "Worker",
    "WorkerEvent",
    "WorkerStats",
    "__version__",
    "find_queues",
]

# the public classes say where users import them from (in reprs, tracebacks and errors), not
# which private module defines them
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "delayq"
del _name, _obj
