"""One registered task: enqueueing a call of it (sync, asyncio, or from a worker's thread), and
the context a running task sees (:func:`current_job`)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, Union

from .. import aio
from .._errors import DelayqError, InvalidArgument, InvalidType
from .._hooks import JobPolicy
from .._sync import Queue
from .._types import Job
from .._validate import MAX_NAME_LENGTH, Duration

if TYPE_CHECKING:
    from ._registry import Tasks

__all__ = ["AnyQueue", "Args", "Task", "TaskDecorator", "check_task_name", "current_job"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

AnyQueue = Union[Queue, aio.Queue]

current: contextvars.ContextVar[Job | None] = contextvars.ContextVar("delayq_current_job", default=None)
"""The job whose task runs in this context (set by Tasks.run and Tasks.arun)."""


def current_job() -> Job | None:
    """The job whose task is running in this context (its id, attempts, due time), or None.

    A periodic run's id names its slot (``"name@2025-01-06T08:00:00Z"``): a handy idempotency key.

    Returns:
        The running Job, or None outside a task run by a worker (or ``run_due``).
    """
    return current.get()


def check_task_name(name: object) -> str:
    """A task's name, checked: what job envelopes carry and logs print.

    Raises:
        InvalidType: Not a str.
        InvalidArgument: Empty, too long, padded, unprintable, or not valid Unicode.
    """
    if not isinstance(name, str):
        raise InvalidType(f"task name must be a str, got {name!r}")
    if not name or len(name) > MAX_NAME_LENGTH or name != name.strip() or not name.isprintable():
        raise InvalidArgument(
            f"task name must be 1-{MAX_NAME_LENGTH} printable characters without surrounding spaces, got {name!r}"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"task name must be valid Unicode text, got {name!r}") from None
    return name


def _keywords(kwargs: Mapping[str, Any] | None, named: dict[str, Any]) -> dict[str, Any]:
    """The function's keyword arguments: given as keywords, or in ``kwargs=`` (for the names that
    enqueue takes itself: delay, at, id, kwargs, queue)."""
    if kwargs is None:
        return named
    if not isinstance(kwargs, Mapping):
        raise InvalidType(f"kwargs must be a mapping of keyword arguments, got {kwargs!r:.80}")
    both = sorted(set(kwargs) & set(named))
    if both:
        raise InvalidArgument(f"keyword arguments given twice, as keywords and in kwargs=: {', '.join(map(repr, both))}")
    return {**kwargs, **named}


class Args:
    """The arguments of one call, for :meth:`Task.enqueue_many`: ``Args(1, 2, key="v")``."""

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"Args({', '.join([*map(repr, self.args), *(f'{k}={v!r}' for k, v in self.kwargs.items())])})"


class Task(Generic[P, R]):
    """A registered function. Calling it runs it here and now; :meth:`enqueue` runs it in a worker.

    Attributes:
        name: The name jobs carry in their envelope.
        fn: The function.
        policy: Its attempts, backoff, timeout and lock ttl, for the worker.
    """

    def __init__(self, registry: Tasks, fn: Callable[P, R], name: str, policy: JobPolicy) -> None:
        self.registry = registry
        self.fn = fn
        self.name = name
        self.policy = policy
        self.signature = inspect.signature(fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<delayq task {self.name!r}>"

    def message(self, *args: Any, **kwargs: Any) -> bytes:
        """The payload of a job that calls this task with these arguments.

        Returns:
            The envelope, serialised.

        Raises:
            InvalidArgument: The arguments do not fit the function's signature.
            InvalidType, InvalidArgument: An argument the serializer cannot carry (it is named).
        """
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgument(f"task {self.name!r} cannot take these arguments: {exc}") from exc
        envelope: dict[str, Any] = {"task": self.name, "args": list(args)}
        if kwargs:
            envelope["kwargs"] = kwargs
        try:
            return self.registry.serializer.dumps(envelope, self.name)
        except DelayqError:
            raise
        except Exception as exc:  # a custom serializer's own error, typed for the caller
            reason = f"{type(exc).__name__}: {exc}"
            raise InvalidArgument(f"the arguments of task {self.name!r} cannot be serialised: {reason}") from exc

    def _messages(self, calls: Iterable[Args | tuple[Any, ...]]) -> list[bytes]:
        if isinstance(calls, (str, bytes)) or not isinstance(calls, Iterable):
            raise InvalidType(f"calls must be an iterable of Args or tuples of arguments, got {calls!r:.80}")
        payloads = []
        for call in calls:
            if isinstance(call, Args):
                payloads.append(self.message(*call.args, **call.kwargs))
            elif isinstance(call, tuple):
                payloads.append(self.message(*call))
            else:
                raise InvalidType(f"each call must be Args(...) or a tuple of arguments, got {call!r:.80}")
        return payloads

    def enqueue(
        self,
        *args: Any,
        delay: Duration = 0,
        at: datetime | None = None,
        id: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        queue: AnyQueue | None = None,
        **named: Any,
    ) -> str | None:
        """Enqueue a call of this task: ``send_email.enqueue("a@example.com", "hi", html=True, delay=60)``.

        On an asyncio queue this works from a thread other than the event loop's, such as a plain
        task's thread under ``Tasks.arun`` (the call runs on the loop the registry's asyncio
        worker runs); inside the loop itself, ``await`` :meth:`aenqueue` instead.

        Args:
            *args: The function's positional arguments.
            delay: As for :meth:`delayq.Queue.enqueue`.
            at: As for :meth:`delayq.Queue.enqueue`.
            id: As for :meth:`delayq.Queue.enqueue` (same id twice: stored once).
            kwargs: The function's keyword arguments whose names enqueue takes itself (delay, at,
                id, kwargs, queue); any others may be given as keywords.
            queue: The queue; default the one given to :meth:`Tasks.bind`.
            **named: The function's keyword arguments.

        Returns:
            The job's id, or None if a job with that id exists.

        Raises:
            InvalidArgument: No queue, or arguments that do not fit the function.
            InvalidType: An asyncio queue, called from its own event loop (or with no loop running it).
            InvalidType, InvalidArgument: An argument that cannot be serialised, or a bad delay, at or id;
                nothing is sent.
        """
        target = self.registry._queue_for(queue)
        payload = self.message(*args, **_keywords(kwargs, named))
        if isinstance(target, Queue):
            return target.enqueue(payload, delay=delay, at=at, id=id)
        return self.registry._from_thread(target, lambda: target.enqueue(payload, delay=delay, at=at, id=id))

    def enqueue_many(
        self,
        calls: Iterable[Args | tuple[Any, ...]],
        *,
        delay: Duration = 0,
        at: datetime | None = None,
        ids: Sequence[str] | None = None,
        queue: AnyQueue | None = None,
    ) -> list[str | None]:
        """Enqueue many calls in one round trip per 1000: ``task.enqueue_many([("a",), Args("b", x=1)])``.

        Returns:
            Each job's id, or None where the id exists; every argument is checked before anything is sent.

        Raises:
            As :meth:`enqueue`.
        """
        target = self.registry._queue_for(queue)
        payloads = self._messages(calls)
        if isinstance(target, Queue):
            return target.enqueue_many(payloads, delay=delay, at=at, ids=ids)
        return self.registry._from_thread(target, lambda: target.enqueue_many(payloads, delay=delay, at=at, ids=ids))

    async def aenqueue(
        self,
        *args: Any,
        delay: Duration = 0,
        at: datetime | None = None,
        id: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        queue: AnyQueue | None = None,
        **named: Any,
    ) -> str | None:
        """:meth:`enqueue` from a coroutine: awaited on an asyncio queue, run on a thread on a
        ``delayq.Queue`` (so an ``async def`` task under a thread worker can enqueue too).

        Returns, Raises: as :meth:`enqueue`.
        """
        target = self.registry._queue_for(queue)
        payload = self.message(*args, **_keywords(kwargs, named))
        if isinstance(target, aio.Queue):
            return await target.enqueue(payload, delay=delay, at=at, id=id)
        return await asyncio.to_thread(target.enqueue, payload, delay=delay, at=at, id=id)

    async def aenqueue_many(
        self,
        calls: Iterable[Args | tuple[Any, ...]],
        *,
        delay: Duration = 0,
        at: datetime | None = None,
        ids: Sequence[str] | None = None,
        queue: AnyQueue | None = None,
    ) -> list[str | None]:
        """:meth:`enqueue_many` from a coroutine (see :meth:`aenqueue`).

        Returns, Raises: as :meth:`enqueue_many`.
        """
        target = self.registry._queue_for(queue)
        payloads = self._messages(calls)
        if isinstance(target, aio.Queue):
            return await target.enqueue_many(payloads, delay=delay, at=at, ids=ids)
        return await asyncio.to_thread(target.enqueue_many, payloads, delay=delay, at=at, ids=ids)


class TaskDecorator(Protocol):
    """What ``@tasks.task(...)`` and ``@tasks.periodic(...)`` return: makes a function a Task."""

    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


def run_on_loop(loop: asyncio.AbstractEventLoop | None, target: aio.Queue, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an asyncio queue's call from a thread that is not its loop's, and wait for it.

    Raises:
        InvalidType: Called from a running event loop (it would wait on itself), or no loop runs.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise InvalidType(f"{target!r} is an asyncio queue: use 'await task.aenqueue(...)'")
    if loop is None or loop.is_closed() or not loop.is_running():
        raise InvalidType(
            f"{target!r} is an asyncio queue and no event loop of its worker is running: "
            "use 'await task.aenqueue(...)' in the queue's loop"
        )
    return asyncio.run_coroutine_threadsafe(call(), loop).result()
