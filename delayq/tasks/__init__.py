"""Named tasks: functions registered by name, enqueued with their arguments, run by one worker.

An optional layer over the bytes API (which it uses unchanged)::

    from delayq import Queue
    from delayq.tasks import Tasks

    tasks = Tasks()

    @tasks.task(max_attempts=5, timeout=60)
    def send_email(to: str, subject: str) -> None: ...

    tasks.bind(Queue(redis.Redis(), "emails"))
    send_email.enqueue("a@example.com", "hi", delay=3600)

    Worker(queue, tasks.run).run()        # or: delayq worker myapp.tasks emails

A job's payload is an envelope ``{"task": name, "args": [...], "kwargs": {...}}``, JSON by
default (readable in ``delayq peek``, and easy to produce from another language); msgspec's
JSON or MessagePack as an option. Never pickle: a payload is data, never code.

A job whose envelope does not decode, names no registered task, or whose arguments do not fit
the function raises :class:`delayq.Fail`: it goes to the dead letters with the reason, and the
worker goes on.

The modules: ``_serializers`` (payload bytes), ``_task`` (one task, enqueueing), ``_registry``
(registration and dispatch). Import from ``delayq.tasks``.
"""

from ._registry import Tasks
from ._serializers import MAX_DEPTH as MAX_DEPTH
from ._serializers import MAX_INT_BITS as MAX_INT_BITS
from ._serializers import JsonSerializer, MsgspecSerializer, Serializer
from ._serializers import SerializerName as SerializerName
from ._task import AnyQueue as AnyQueue
from ._task import Args, Task, TaskDecorator, current_job

__all__ = ["Args", "JsonSerializer", "MsgspecSerializer", "Serializer", "Task", "TaskDecorator", "Tasks", "current_job"]

for _public in (Args, JsonSerializer, MsgspecSerializer, Serializer, Task, TaskDecorator, Tasks, current_job):
    _public.__module__ = __name__  # reprs and docs show the public path
del _public
