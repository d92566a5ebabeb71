"""The registry of tasks: registering functions (and their schedules), and dispatching a
claimed job to the function its envelope names, in a thread worker or an asyncio one."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

from .. import aio
from .._daemon import in_daemon_thread
from .._errors import InvalidArgument, InvalidType
from .._hooks import Fail, JobPolicy
from .._sync import Queue
from .._types import Job
from .._validate import DEFAULT_MAX_ATTEMPTS, Duration
from .._worker_types import Backoff
from ..periodic import Missed, PeriodicJob, Schedule, make_schedule
from ._run import limited
from ._serializers import Serializer, SerializerName, make_serializer
from ._task import AnyQueue, P, R, Task, TaskDecorator, check_task_name, current, run_on_loop

__all__ = ["Tasks"]

T = TypeVar("T")

_UNSET: Any = object()


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
        self.serializer: Serializer = make_serializer(serializer)
        self.defaults = JobPolicy(max_attempts, backoff, timeout, lock_ttl)
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._periodic: dict[str, PeriodicJob] = {}
        self._periodic_task: dict[str, str] = {}
        """Each periodic job's task name."""
        self.queue: AnyQueue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The event loop an asyncio worker runs this registry's tasks on (for enqueue from its threads)."""
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
        with contextlib.suppress(RuntimeError):  # no running loop: arun() learns it later
            self._loop = asyncio.get_running_loop()

    def _queue_for(self, queue: AnyQueue | None) -> AnyQueue:
        target = queue if queue is not None else self.queue
        if target is None:
            raise InvalidArgument("no queue to enqueue on: call tasks.bind(queue) first, or pass queue=")
        if not isinstance(target, (Queue, aio.Queue)):
            raise InvalidType(f"queue must be a delayq.Queue or delayq.aio.Queue, got {target!r:.80}")
        return target

    def _from_thread(self, target: aio.Queue, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return run_on_loop(self._loop, target, call)

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
        task_name = check_task_name(getattr(fn, "__name__", None) if name is None else name)
        try:
            task = Task(self, fn, task_name, policy)
        except (TypeError, ValueError) as exc:  # inspect.signature cannot read some callables
            raise InvalidType(f"cannot read the signature of {fn!r:.80} for task {task_name!r}: {exc}") from exc
        old = self._tasks.get(task_name)
        if old is not None:
            if not _same_definition(old.fn, fn):
                raise InvalidArgument(f"a task named {task_name!r} is already registered ({old.fn!r})")
            # the same def run again: its module was imported twice (as __main__ and by name, or
            # reloaded): the new one replaces it, schedules included (the module adds them again)
            for periodic_name in [p for p, owner in self._periodic_task.items() if owner == task_name]:
                del self._periodic[periodic_name], self._periodic_task[periodic_name]
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
            saved = (dict(self._tasks), dict(self._periodic), dict(self._periodic_task))
            try:
                task = self._register(function, name, policy)
                self.add_periodic(task, plan, missed=missed, args=args, kwargs=kwargs)
            except BaseException:
                self._tasks, self._periodic, self._periodic_task = saved  # nothing registered
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
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise InvalidType(f"kwargs must be a mapping of keyword arguments, got {kwargs!r:.80}")
        job = PeriodicJob(
            task.name if name is None else name,
            make_schedule(schedule, tz),
            task.message(*args, **dict(kwargs or {})),
            missed=missed,
        )
        if job.name in self._periodic:
            raise InvalidArgument(f"a periodic job named {job.name!r} is already registered")
        self._periodic[job.name] = job
        self._periodic_task[job.name] = task.name
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

        Returns:
            (the task, its positional arguments, its keyword arguments).

        Raises:
            Fail: The payload is not an envelope this registry can decode, names no registered
                task, or carries arguments that do not fit the function (the reason says which).
        """
        task, args, kwargs = self._unpack(job)
        try:
            task.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise Fail(f"job {job.id!r}: task {task.name!r} cannot take the arguments it was sent: {exc}") from exc
        return task, args, kwargs

    def _unpack(self, job: Job) -> tuple[Task[Any, Any], list[Any], dict[str, Any]]:
        """:meth:`decode` without checking the arguments against the function's signature."""
        kind = getattr(self.serializer, "name", type(self.serializer).__name__)
        try:
            envelope = self.serializer.loads(job.payload)
        except Exception as exc:  # whatever a serializer raises for bytes it cannot read, the job is dead
            raise Fail(f"job {job.id!r}: the payload is not a {kind} task envelope: {type(exc).__name__}: {exc}") from exc
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
        return task, args, kwargs

    def policy(self, job: Job) -> JobPolicy | None:
        """The policy of the task a job calls (None when it does not decode: :meth:`run` will Fail it).

        Returns:
            The task's JobPolicy, or None.
        """
        try:  # not the arguments' check against the signature: a worker asks this of every job, and run checks it
            return self._unpack(job)[0].policy
        except Fail:
            return None

    def run(self, job: Job) -> Any:
        """Run the task a job calls, here: the handler of a thread ``delayq.Worker``.

        An ``async def`` task runs in a fresh event loop (``asyncio.run``), cancelled at its
        task's ``timeout``. (A plain function cannot be stopped: the worker, which takes the task's
        timeout from :meth:`policy`, fails it at that timeout and abandons its thread.)

        Returns:
            What the task returned.

        Raises:
            Fail: The job does not decode to a registered task (see :meth:`decode`).
            TimeoutError: An ``async def`` task ran past its ``timeout``.
            Exception: Whatever the task raised.
        """
        task, args, kwargs = self.decode(job)
        token = current.set(job)
        try:
            if task.is_async:
                return asyncio.run(limited(task.fn(*args, **kwargs), task))
            result = task.fn(*args, **kwargs)
            if inspect.isawaitable(result):
                return asyncio.run(limited(result, task))
            return result
        finally:
            current.reset(token)

    async def arun(self, job: Job) -> Any:
        """Run the task a job calls: the handler of a ``delayq.aio.Worker``. A plain function runs
        on a daemon thread, so it never blocks the event loop (and may call ``task.enqueue``,
        which then runs on this loop). Either kind fails with TimeoutError at its task's ``timeout``
        (a plain function's thread is then abandoned, as the asyncio worker does).

        Returns, Raises: as :meth:`run`.
        """
        task, args, kwargs = self.decode(job)
        self._loop = asyncio.get_running_loop()
        token = current.set(job)
        try:
            if task.is_async:
                return await limited(task.fn(*args, **kwargs), task)
            future, _ = in_daemon_thread(
                f"delayq-task-{task.name[:24]}", contextvars.copy_context().run, task.fn, *args, **kwargs
            )
            result = await limited(future, task)
            if inspect.isawaitable(result):
                return await limited(result, task)
            return result
        finally:
            current.reset(token)


def _same_definition(old: Callable[..., Any], new: Callable[..., Any]) -> bool:
    """Whether two functions are one ``def`` executed twice (same qualified name, file and line)."""
    if old is new:
        return True
    old_code, new_code = getattr(old, "__code__", None), getattr(new, "__code__", None)
    return (
        old_code is not None
        and new_code is not None
        and getattr(old, "__qualname__", None) == getattr(new, "__qualname__", None)
        and (old_code.co_filename, old_code.co_firstlineno) == (new_code.co_filename, new_code.co_firstlineno)
    )
