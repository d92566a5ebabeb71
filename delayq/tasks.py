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
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import math
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar, Union, overload

from . import aio
from ._errors import InvalidArgument, InvalidType
from ._hooks import Fail, JobPolicy
from ._sync import Queue
from ._types import Job
from ._validate import DEFAULT_MAX_ATTEMPTS, MAX_NAME_LENGTH, Duration
from ._worker_core import Backoff
from .periodic import Missed, PeriodicJob, Schedule, make_schedule

__all__ = ["Args", "JsonSerializer", "MsgspecSerializer", "Serializer", "Task", "TaskDecorator", "Tasks", "current_job"]

P = ParamSpec("P")
R = TypeVar("R")

AnyQueue = Union[Queue, aio.Queue]
SerializerName = Literal["json", "msgspec", "msgpack"]

MAX_DEPTH = 100
"""Deepest nesting of lists and dicts accepted in a task's arguments."""

_current: contextvars.ContextVar[Job | None] = contextvars.ContextVar("delayq_current_job", default=None)


def current_job() -> Job | None:
    """The job whose task is running in this context (its id, attempts, due time), or None.

    A periodic run's id names its slot (``"name@2025-01-06T08:00:00Z"``): a handy idempotency key.
    """
    return _current.get()


# ---------------------------------------------------------------- serializers


class Serializer(Protocol):
    """Turns an envelope (a dict of JSON-like values) into payload bytes and back."""

    name: str

    def dumps(self, envelope: dict[str, Any], task: str) -> bytes:
        """Encode; raise InvalidType or InvalidArgument naming the bad argument of ``task``."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode; raise ValueError (or a subclass) when ``data`` is not this format."""
        ...


def _where(path: tuple[str | int, ...]) -> str:
    head, *rest = path
    text = f"argument {head}" if isinstance(head, int) else f"keyword argument {head!r}"
    return text + "".join(f"[{p!r}]" for p in rest)


def _check_json(value: object, path: tuple[str | int, ...], task: str, depth: int = 0) -> None:
    """Refuse what JSON would not give back as it was sent, naming where it is."""
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{_where(path)} of task {task!r} nests deeper than {MAX_DEPTH} levels (a cycle?)")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{_where(path)} of task {task!r} is {value!r}, which JSON cannot carry")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, (*path, index), task, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidType(
                    f"{_where(path)} of task {task!r} has the key {key!r} ({type(key).__name__}); JSON keys are str"
                )
            _check_json(item, (*path, key), task, depth + 1)
        return
    raise InvalidType(
        f"{_where(path)} of task {task!r} cannot be sent as JSON: {value!r:.80} ({type(value).__name__}); "
        "use None, bool, int, float, str, lists and dicts with str keys (or serializer='msgspec')"
    )


class JsonSerializer:
    """The default: JSON by the standard library; what goes in is exactly what comes out
    (tuples come back as lists), and anything else is refused when the task is enqueued."""

    name = "json"

    def dumps(self, envelope: dict[str, Any], task: str) -> bytes:
        for index, value in enumerate(envelope["args"]):
            _check_json(value, (index,), task)
        for key, value in envelope.get("kwargs", {}).items():
            _check_json(value, (key,), task)
        return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class MsgspecSerializer:
    """msgspec (``pip install "delayq[msgspec]"``): JSON (``format="json"``, the same envelope,
    faster, and it also encodes datetimes, UUIDs, dataclasses, enums and msgspec Structs, which
    arrive as their JSON form) or MessagePack (``format="msgpack"``, binary and compact)."""

    def __init__(self, format: Literal["json", "msgpack"] = "json") -> None:
        try:
            import msgspec  # noqa: PLC0415 (an optional extra: imported when chosen)
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise InvalidArgument('serializer="msgspec" needs msgspec: pip install "delayq[msgspec]"') from exc
        self._module = msgspec.json if format == "json" else msgspec.msgpack
        self.name = "msgspec" if format == "json" else "msgpack"
        self._encoder = self._module.Encoder()

    def dumps(self, envelope: dict[str, Any], task: str) -> bytes:
        try:
            data: bytes = self._encoder.encode(envelope)
            return data
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidType(f"the arguments of task {task!r} cannot be encoded by {self.name}: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        return self._module.decode(data)


def _serializer(value: object) -> Serializer:
    if value == "json":
        return JsonSerializer()
    if value == "msgspec":
        return MsgspecSerializer("json")
    if value == "msgpack":
        return MsgspecSerializer("msgpack")
    if isinstance(value, str) or not callable(getattr(value, "dumps", None)) or not callable(getattr(value, "loads", None)):
        raise InvalidArgument(f"serializer must be 'json', 'msgspec', 'msgpack' or a Serializer, got {value!r}")
    return value  # type: ignore[return-value]


# ---------------------------------------------------------------- tasks


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
        return self.registry.serializer.dumps(envelope, self.name)

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
        queue: Queue | None = None,
    ) -> str | None:
        """Enqueue a call of this task: ``send_email.enqueue("a@example.com", "hi", delay=60)``.

        Args:
            *args: The function's positional arguments.
            delay: As for :meth:`delayq.Queue.enqueue`.
            at: As for :meth:`delayq.Queue.enqueue`.
            id: As for :meth:`delayq.Queue.enqueue` (same id twice: stored once).
            kwargs: The function's keyword arguments.
            queue: The queue; default the one given to :meth:`Tasks.bind`.

        Returns:
            The job's id, or None if a job with that id exists.

        Raises:
            InvalidArgument: No queue, or arguments that do not fit the function.
            InvalidType, InvalidArgument: An argument that cannot be serialised, or a bad delay, at or id;
                nothing is sent.
        """
        target = self.registry._sync_queue(queue)
        return target.enqueue(self.message(*args, **dict(kwargs or {})), delay=delay, at=at, id=id)

    def enqueue_many(
        self,
        calls: Iterable[Args | tuple[Any, ...]],
        *,
        delay: Duration = 0,
        at: datetime | None = None,
        ids: Sequence[str] | None = None,
        queue: Queue | None = None,
    ) -> list[str | None]:
        """Enqueue many calls in one round trip per 1000: ``task.enqueue_many([("a",), Args("b", x=1)])``.

        Returns:
            Each job's id, or None where the id exists; every argument is checked before anything is sent.
        """
        target = self.registry._sync_queue(queue)
        return target.enqueue_many(self._messages(calls), delay=delay, at=at, ids=ids)

    async def aenqueue(
        self,
        *args: Any,
        delay: Duration = 0,
        at: datetime | None = None,
        id: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        queue: aio.Queue | None = None,
    ) -> str | None:
        """:meth:`enqueue` on an asyncio queue (``delayq.aio.Queue``)."""
        target = self.registry._async_queue(queue)
        return await target.enqueue(self.message(*args, **dict(kwargs or {})), delay=delay, at=at, id=id)

    async def aenqueue_many(
        self,
        calls: Iterable[Args | tuple[Any, ...]],
        *,
        delay: Duration = 0,
        at: datetime | None = None,
        ids: Sequence[str] | None = None,
        queue: aio.Queue | None = None,
    ) -> list[str | None]:
        """:meth:`enqueue_many` on an asyncio queue."""
        target = self.registry._async_queue(queue)
        return await target.enqueue_many(self._messages(calls), delay=delay, at=at, ids=ids)


def _check_task_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidType(f"task name must be a str, got {name!r}")
    if not name or len(name) > MAX_NAME_LENGTH or name != name.strip():
        raise InvalidArgument(f"task name must be 1-{MAX_NAME_LENGTH} characters without surrounding spaces, got {name!r}")
    return name


_UNSET: Any = object()


class TaskDecorator(Protocol):
    """What ``@tasks.task(...)`` and ``@tasks.periodic(...)`` return: makes a function a Task."""

    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class Tasks:
    """A registry of tasks: what a producer enqueues and a worker dispatches.

    Args:
        queue: The queue :meth:`Task.enqueue` uses (a ``delayq.Queue`` or ``delayq.aio.Queue``);
            or give it later with :meth:`bind`.
        serializer: "json" (default), "msgspec" (msgspec's JSON), "msgpack" (msgspec's
            MessagePack), or an object with ``dumps(envelope, task)`` and ``loads(data)``.
        max_attempts: Every task's attempt limit unless it sets its own; default 20; None = never.
        backoff: Every task's retry delays unless it sets its own; None = the worker's.
        timeout: Every task's time limit in seconds unless it sets its own; None = the worker's.
        lock_ttl: Every task's lock length in seconds unless it sets its own; None = the worker's.

    Raises:
        InvalidType, InvalidArgument: A bad setting.
    """

    def __init__(
        self,
        queue: AnyQueue | None = None,
        *,
        serializer: SerializerName | Serializer = "json",
        max_attempts: int | None = DEFAULT_MAX_ATTEMPTS,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        lock_ttl: float | None = None,
    ) -> None:
        self.serializer: Serializer = _serializer(serializer)
        self.defaults = JobPolicy(max_attempts, backoff, timeout, lock_ttl)
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._periodic: dict[str, PeriodicJob] = {}
        self.queue: AnyQueue | None = None
        if queue is not None:
            self.bind(queue)

    # -- registration

    def bind(self, queue: AnyQueue) -> None:
        """Make ``queue`` the one :meth:`Task.enqueue` (sync queue) or :meth:`Task.aenqueue` (asyncio) uses.

        Raises:
            InvalidType: Not a delayq queue.
        """
        if not isinstance(queue, (Queue, aio.Queue)):
            raise InvalidType(f"queue must be a delayq.Queue or delayq.aio.Queue, got {queue!r:.80}")
        self.queue = queue

    def _sync_queue(self, queue: Queue | None) -> Queue:
        target = queue if queue is not None else self.queue
        if target is None:
            raise InvalidArgument("no queue to enqueue on: call tasks.bind(queue) first, or pass queue=")
        if not isinstance(target, Queue):
            raise InvalidType(f"{target!r} is an asyncio queue: use 'await task.aenqueue(...)'")
        return target

    def _async_queue(self, queue: aio.Queue | None) -> aio.Queue:
        target = queue if queue is not None else self.queue
        if target is None:
            raise InvalidArgument("no queue to enqueue on: call tasks.bind(queue) first, or pass queue=")
        if not isinstance(target, aio.Queue):
            raise InvalidType(f"{target!r} is not an asyncio queue: use 'task.enqueue(...)'")
        return target

    def _policy(self, max_attempts: Any, backoff: Any, timeout: Any, lock_ttl: Any) -> JobPolicy:
        d = self.defaults
        return JobPolicy(
            d.max_attempts if max_attempts is _UNSET else max_attempts,
            d.backoff if backoff is _UNSET else backoff,
            d.timeout if timeout is _UNSET else timeout,
            d.lock_ttl if lock_ttl is _UNSET else lock_ttl,
        )

    def _register(self, fn: Callable[P, R], name: str | None, policy: JobPolicy) -> Task[P, R]:
        if not callable(fn):
            raise InvalidType(f"a task must be a function, got {fn!r:.80}")
        task_name = _check_task_name(getattr(fn, "__name__", None) if name is None else name)
        if task_name in self._tasks:
            raise InvalidArgument(f"a task named {task_name!r} is already registered ({self._tasks[task_name].fn!r})")
        task = Task(self, fn, task_name, policy)
        self._tasks[task_name] = task
        return task

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        max_attempts: int | None = ...,
        backoff: Backoff | None = ...,
        timeout: float | None = ...,
        lock_ttl: float | None = ...,
    ) -> TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        max_attempts: int | None = _UNSET,
        backoff: Backoff | None = _UNSET,
        timeout: float | None = _UNSET,
        lock_ttl: float | None = _UNSET,
    ) -> Any:
        """Register a function as a task: ``@tasks.task`` or ``@tasks.task(max_attempts=5, ...)``.

        Args:
            fn: The function (plain or ``async def``).
            name: Its name in job envelopes; default the function's ``__name__``.
            max_attempts: Dead-letter after this many failed attempts; None = never; default the registry's (20).
            backoff: Retry delays; default the registry's (None: the worker's).
            timeout: Seconds it may run before it counts as failed; default the registry's.
            lock_ttl: Seconds of its lock; default the registry's.

        Returns:
            The :class:`Task` (or a decorator that makes it).

        Raises:
            InvalidType, InvalidArgument: A bad setting or name, or a name already registered.
        """
        policy = self._policy(max_attempts, backoff, timeout, lock_ttl)

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            return self._register(function, name, policy)

        return register if fn is None else register(fn)

    def periodic(
        self,
        schedule: Schedule | str | Duration,
        *,
        tz: str | None = None,
        missed: Missed = "skip",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        max_attempts: int | None = _UNSET,
        backoff: Backoff | None = _UNSET,
        timeout: float | None = _UNSET,
        lock_ttl: float | None = _UNSET,
    ) -> TaskDecorator:
        """Register a task that runs on a schedule: ``@tasks.periodic("0 9 * * MON-FRI", tz="Europe/Paris")``.

        Args:
            schedule: A cron expression (5 fields, or 6 with seconds first), an interval (seconds or
                timedelta, aligned to the Unix epoch), or a ``delayq.periodic.cron(...)/every(...)``.
            tz: The cron expression's time zone (IANA name); default UTC.
            missed: Runs missed while no scheduler ran: "skip" them, or "run_once" (one run, at once).
            args: Positional arguments of every run.
            kwargs: Keyword arguments of every run.
            name: The task's (and the periodic job's) name; default the function's ``__name__``.
            max_attempts, backoff, timeout, lock_ttl: As for :meth:`task`.

        Returns:
            A decorator that registers the function and its schedule.

        Raises:
            InvalidType, InvalidArgument: A bad cron expression, time zone, interval, policy or argument.
        """
        plan = make_schedule(schedule, tz)
        policy = self._policy(max_attempts, backoff, timeout, lock_ttl)

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            task = self._register(function, name, policy)
            try:
                self.add_periodic(task, plan, missed=missed, args=args, kwargs=kwargs)
            except BaseException:
                del self._tasks[task.name]
                raise
            return task

        return register

    def add_periodic(
        self,
        task: Task[Any, Any],
        schedule: Schedule | str | Duration,
        *,
        tz: str | None = None,
        missed: Missed = "skip",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> PeriodicJob:
        """Run a registered task on a schedule with these arguments (a task may have several schedules,
        each with its own ``name``). See :meth:`periodic` for the arguments.

        Returns:
            The periodic job (also in :attr:`periodic_jobs`).

        Raises:
            InvalidType, InvalidArgument: As for :meth:`periodic`, or a periodic name already used.
        """
        if not isinstance(task, Task) or self._tasks.get(task.name) is not task:
            raise InvalidArgument(f"{task!r} is not a task of this registry")
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise InvalidType(f"args must be a sequence of arguments, got {args!r:.80}")
        job = PeriodicJob(
            task.name if name is None else name,
            make_schedule(schedule, tz),
            task.message(*args, **dict(kwargs or {})),
            missed=missed,
        )
        if job.name in self._periodic:
            raise InvalidArgument(f"a periodic job named {job.name!r} is already registered")
        self._periodic[job.name] = job
        return job

    @property
    def periodic_jobs(self) -> list[PeriodicJob]:
        """The periodic jobs, for a ``delayq.periodic.Scheduler``."""
        return list(self._periodic.values())

    def __getitem__(self, name: str) -> Task[Any, Any]:
        return self._tasks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task[Any, Any]]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"<delayq Tasks {sorted(self._tasks)}>"

    @property
    def has_async(self) -> bool:
        """Whether any task is ``async def`` (the command line then runs an asyncio worker)."""
        return any(t.is_async for t in self._tasks.values())

    # -- dispatch

    def decode(self, job: Job) -> tuple[Task[Any, Any], list[Any], dict[str, Any]]:
        """The task a job calls and its arguments.

        Raises:
            Fail: The payload is not an envelope this registry can decode, names no registered
                task, or carries arguments that do not fit the function (the reason says which).
        """
        try:
            envelope = self.serializer.loads(job.payload)
        except (ValueError, TypeError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise Fail(f"job {job.id!r}: the payload is not a {self.serializer.name} task envelope: {exc}") from exc
        if not isinstance(envelope, dict) or not isinstance(envelope.get("task"), str):
            raise Fail(f'job {job.id!r}: the payload is not a task envelope (no "task" name): {job.payload[:80]!r}')
        name = envelope["task"]
        args = envelope.get("args", [])
        kwargs = envelope.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise Fail(f"job {job.id!r}: task {name!r} has malformed args or kwargs in its envelope")
        task = self._tasks.get(name)
        if task is None:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise Fail(f"job {job.id!r}: unknown task {name!r} (registered: {known})")
        try:
            task.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise Fail(f"job {job.id!r}: task {name!r} cannot take the arguments it was sent: {exc}") from exc
        return task, args, kwargs

    def policy(self, job: Job) -> JobPolicy | None:
        """The policy of the task a job calls (None when it does not decode: :meth:`run` will Fail it)."""
        try:
            return self.decode(job)[0].policy
        except Fail:
            return None

    def run(self, job: Job) -> Any:
        """Run the task a job calls, here: the handler of a thread ``delayq.Worker``.

        An ``async def`` task runs in a fresh event loop (``asyncio.run``).

        Returns:
            What the task returned.

        Raises:
            Fail: The job does not decode to a registered task (see :meth:`decode`).
            Exception: Whatever the task raised.
        """
        task, args, kwargs = self.decode(job)
        token = _current.set(job)
        try:
            if task.is_async:
                return asyncio.run(task.fn(*args, **kwargs))
            result = task.fn(*args, **kwargs)
            if inspect.isawaitable(result):
                return asyncio.run(_await(result))
            return result
        finally:
            _current.reset(token)

    async def arun(self, job: Job) -> Any:
        """Run the task a job calls: the handler of a ``delayq.aio.Worker``. A plain function runs
        on a daemon thread, so it never blocks the event loop.

        Returns, Raises: as :meth:`run`.
        """
        task, args, kwargs = self.decode(job)
        token = _current.set(job)
        try:
            if task.is_async:
                return await task.fn(*args, **kwargs)
            result = await _in_thread(contextvars.copy_context(), task.fn, args, kwargs)
            if inspect.isawaitable(result):
                return await result
            return result
        finally:
            _current.reset(token)


async def _await(awaitable: Awaitable[R]) -> R:
    return await awaitable


def _in_thread(
    context: contextvars.Context, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> asyncio.Future[Any]:
    """Run ``fn`` on a daemon thread. asyncio.to_thread's pool is joined when the loop closes,
    so a worker's hard stop would still wait for the function (the asyncio worker does the same)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if not future.done():
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    def target() -> None:
        try:
            value, error = context.run(fn, *args, **kwargs), None
        except BaseException as exc:  # handed to the awaiting task
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop may be closed after a hard stop
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name=f"delayq-task-{getattr(fn, '__name__', 'task')[:24]}", daemon=True).start()
    return future
