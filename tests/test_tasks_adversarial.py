"""Tasks and delayq.testing under attack: what a careless or unlucky user does to them, and what
they must do then (a typed error and an unchanged queue, a dead letter with its reason, or jobs
given back), on fakeredis and a real server, sync and asyncio."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest

import delayq
import delayq.aio
from delayq import Fail, InvalidArgument, InvalidType, Job, QueueStats
from delayq.tasks import Tasks
from delayq.testing import arun_due, frozen_clock, run_due
from tests.helpers import Env, unique_name
from tests.helpers_tasks import bind, drain, enqueue, enqueue_many, real_queue, run_worker
from tests.snapshots import snapshot

ROOT = Path(__file__).resolve().parent.parent


def test_a_task_enqueues_another_from_whichever_worker_runs_it(env: Env) -> None:
    """A plain task under the asyncio worker runs on a thread, with an asyncio queue bound: its
    ``enqueue`` must reach the worker's loop. An ``async def`` task under the thread worker, with a
    sync queue bound, must be able to ``await aenqueue``."""
    tasks = Tasks()
    done: list[str] = []

    @tasks.task
    def child(word: str) -> None:
        done.append(word)

    @tasks.task
    def plain_parent(word: str) -> None:
        child.enqueue(f"{word} from a plain task", id=f"child-of-{word}")

    @tasks.task
    async def async_parent(word: str) -> None:
        await child.aenqueue(f"{word} from an async task")

    q = env.queue()
    bind(env, tasks, q)
    enqueue(env, plain_parent, "a")
    enqueue(env, async_parent, "b")
    stats = run_worker(env, q, tasks, lambda: len(done) >= 2, linger=0.2)
    assert sorted(done) == ["a from a plain task", "b from an async task"]
    assert stats.processed == 4 and stats.failed == 0
    assert q.stats().total == 0


def test_enqueue_on_an_asyncio_queue_from_its_own_loop_says_to_await() -> None:
    async def main() -> None:
        q = delayq.aio.Queue(fakeredis.FakeAsyncRedis(), "aio-tasks")
        tasks = Tasks(q)

        @tasks.task
        def hello(name: str) -> str:
            return f"hello {name}"

        with pytest.raises(InvalidType, match=r"await task\.aenqueue"):
            hello.enqueue("x")  # it would wait on the loop it blocks
        assert await hello.aenqueue("x", id="h") == "h"
        sync_queue = delayq.Queue(fakeredis.FakeRedis(), "sync")
        assert await hello.aenqueue("y", id="s", queue=sync_queue) == "s"  # on a thread
        assert [p.id for p in sync_queue.peek()] == ["s"]

    asyncio.run(main())
    idle = Tasks(delayq.aio.Queue(fakeredis.FakeAsyncRedis(), "idle"))

    @idle.task
    def nothing() -> None: ...

    with pytest.raises(InvalidType, match="no event loop of its worker is running"):
        nothing.enqueue()  # from a script, with no worker's loop to run it on


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def test_error_texts_that_are_not_valid_unicode_still_settle_the_job(env: Env) -> None:
    """A lone surrogate (from os.fsdecode of a bad file name, say) cannot be UTF-8 encoded: the job's
    error text keeps it escaped, and the job is retried or dead-lettered all the same."""
    q = env.queue(max_attempts=1)
    raising: dict[str, BaseException] = {
        "value": ValueError("no such file: 'caf\udce9.txt'"),
        "fail": Fail("bad name 'caf\udce9'"),
        "fail-int": Fail(404),  # type: ignore[arg-type]
        "unprintable": Unprintable(),
        "long": Fail("x" * 100_000),
    }
    for job_id in raising:
        q.enqueue(job_id.encode(), id=job_id)

    def handler(job: Job) -> None:
        raise raising[job.id]

    outcomes = {o.id: o for o in drain(env, q, handler)}
    assert {o.kind for o in outcomes.values()} == {"dead_lettered"}
    errors = {d.id: d.error or "" for d in q.dead_letters()}
    assert errors["value"] == "ValueError: no such file: 'caf\\udce9.txt'"
    assert errors["fail"] == "bad name 'caf\\udce9'"
    assert errors["fail-int"] == "404"
    assert errors["unprintable"] == "Unprintable: <unprintable Unprintable>"
    assert len(errors["long"]) == 2000 and errors["long"].endswith("...")
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=5)


def test_a_worker_keeps_an_invalid_unicode_error_and_goes_on(env: Env) -> None:
    q = env.queue(max_attempts=1)
    watch = delayq.Queue(env.raw, q.name)
    q.enqueue(b"bad", id="bad")
    q.enqueue(b"good", id="good")
    done: list[bytes] = []

    def handler(job: Job) -> None:
        if job.payload == b"bad":
            raise OSError("cannot open 'caf\udce9'")
        done.append(job.payload)

    stats = run_worker(env, q, handler, lambda: watch.stats().dead == 1 and done == [b"good"])
    assert done == [b"good"] and stats.dead_lettered == 1
    [dead] = q.dead_letters()
    assert dead.error == "OSError: cannot open 'caf\\udce9'"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
def test_an_interrupt_in_run_due_gives_every_claimed_job_back(env: Env, interrupt: type[BaseException]) -> None:
    """Ctrl-C (or sys.exit, or a cancelled task) in the middle of run_due: the job that was running and
    the ones claimed with it go back to the queue at once, their attempt not counted."""
    q = env.queue()
    for i in range(3):
        q.enqueue(f"{i}".encode(), id=f"j{i}")
    ran: list[str] = []

    def handler(job: Job) -> None:
        ran.append(job.id)
        if len(ran) == 2:
            raise interrupt()

    with pytest.raises(interrupt):
        drain(env, q, handler)
    assert len(ran) == 2
    assert q.stats() == QueueStats(ready=2, delayed=0, in_flight=0, dead=0, oldest_ready_age=q.stats().oldest_ready_age)
    again = drain(env, q, lambda job: None)
    assert sorted(o.id for o in again) == sorted(set(["j0", "j1", "j2"]) - {ran[0]})
    assert all(o.kind == "processed" and o.job.attempts == 1 for o in again)  # the interrupted claim did not count


def test_cancelling_arun_due_gives_the_running_job_back() -> None:
    async def main() -> None:
        q = delayq.aio.Queue(fakeredis.FakeAsyncRedis(), "cancel")
        await q.enqueue(b"slow", id="slow")
        started = asyncio.Event()

        async def handler(job: Job) -> None:
            started.set()
            await asyncio.sleep(3600)

        runner = asyncio.create_task(arun_due(q, handler))
        await started.wait()
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        stats = await q.stats()
        assert (stats.ready, stats.in_flight) == (1, 0)

    asyncio.run(main())


def test_run_due_holds_each_task_to_its_lock_ttl_and_timeout(env: Env) -> None:
    tasks = Tasks()

    @tasks.task(lock_ttl=120)
    def long_lock() -> None:
        clock.advance(60)  # a minute of work: past run_due's 30 s lock, inside the task's own

    @tasks.task  # the registry's default lock: 30 s
    def short_lock() -> None:
        clock.advance(60)

    @tasks.task(timeout=0.2)
    async def hangs() -> None:
        await asyncio.sleep(30)

    @tasks.task(timeout=0.2)
    def dawdles() -> None:
        time.sleep(0.6)  # a plain function: abandoned on its thread under arun, measured under run

    q = env.queue()
    bind(env, tasks, q)
    with frozen_clock(real_queue(env, q)) as clock:
        for task in (long_lock, short_lock, hangs, dawdles):
            enqueue(env, task, id=task.name)
        outcomes = {o.id: o for o in drain(env, q, tasks)}
    assert outcomes["long_lock"].kind == "processed"
    assert outcomes["short_lock"].kind == "lock_lost"  # its lock expired while it ran: not acked
    for name in ("hangs", "dawdles"):
        assert outcomes[name].kind == "retried"
        error = outcomes[name].error or ""
        assert error.startswith("TimeoutError: ") and error.endswith("ran longer than its timeout of 0.2s"), error


class Fussy:
    """A custom serializer with its own errors, as users write them."""

    name = "fussy"

    class Unreadable(Exception):
        pass

    def dumps(self, envelope: dict[str, Any], task: str) -> bytes:
        if "secret" in envelope.get("kwargs", {}):
            raise KeyError("secret")
        return json.dumps(envelope).encode()

    def loads(self, data: bytes) -> Any:
        if not data.startswith(b"{"):
            raise Fussy.Unreadable(f"{len(data)} bytes of something else")
        return json.loads(data)


def test_a_serializer_error_is_a_typed_error_or_a_dead_letter(env: Env) -> None:
    tasks = Tasks(serializer=Fussy())
    seen: list[int] = []

    @tasks.task
    def note(n: int = 0, secret: str = "") -> None:
        seen.append(n)

    q = env.queue(max_attempts=None)  # dead letters must not depend on running out of attempts
    bind(env, tasks, q)
    enqueue(env, note, 1, id="kept")
    before = snapshot(env.raw, q)
    with pytest.raises(InvalidArgument, match=r"task 'note' cannot be serialised: KeyError: 'secret'"):
        enqueue(env, note, kwargs={"secret": "x"})
    assert snapshot(env.raw, q) == before
    q.enqueue(b"\x93\x01\x02\x03", id="binary")
    outcomes = {o.id: o for o in drain(env, q, tasks)}
    assert outcomes["kept"].kind == "processed" and seen == [1]
    assert outcomes["binary"].kind == "dead_lettered"
    assert (
        outcomes["binary"].error
        == "job 'binary': the payload is not a fussy task envelope: Unreadable: 4 bytes of something else"
    )
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=1)


def test_msgpack_payloads_that_lie_about_their_size_are_dead_lettered() -> None:
    q = delayq.Queue(fakeredis.FakeRedis(), "msgpack-lies")
    tasks = Tasks(q, serializer="msgpack")

    @tasks.task
    def t() -> None: ...

    for i, data in enumerate([b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc1", b"\x81\xa4task"]):
        q.enqueue(data, id=f"lie-{i}")
    outcomes = run_due(q, tasks)
    assert [o.kind for o in outcomes] == ["dead_lettered"] * 4
    assert all("is not a msgpack task envelope" in (o.error or "") for o in outcomes)


def test_arguments_that_cannot_be_sent_are_named_and_nothing_is_sent(env: Env) -> None:
    tasks = Tasks()

    @tasks.task
    def send(*values: Any, **named: Any) -> None: ...

    q = env.queue()
    bind(env, tasks, q)
    enqueue(env, send, "kept", id="kept")
    before = snapshot(env.raw, q)
    cases: list[tuple[tuple[Any, ...], dict[str, Any], type[Exception], str]] = [
        (("ok", "caf\udce9"), {}, InvalidArgument, "argument 1 of task 'send' holds '\\udce9', which is not valid Unicode"),
        (({"caf\udce9": 1},), {}, InvalidArgument, "argument 0 of task 'send' holds '\\udce9'"),
        ((), {"kwargs": {"caf\udce9": 1}}, InvalidArgument, "keyword argument 'caf\\udce9' of task 'send' holds"),
        (([10**5000],), {}, InvalidArgument, "argument 0[0] of task 'send' is an int of 16610 bits"),
        ((), {"kwargs": [("a", 1)]}, InvalidType, "kwargs must be a mapping"),
        (({1, 2},), {}, InvalidType, "argument 0 of task 'send' cannot be sent as JSON: {1, 2} (set)"),
    ]
    for args, kwargs, error, text in cases:
        with pytest.raises(error) as info:
            enqueue(env, send, *args, **kwargs)
        assert text in str(info.value)
    assert snapshot(env.raw, q) == before


def test_run_due_on_the_wrong_kind_of_queue_is_a_typed_error() -> None:
    aqueue = delayq.aio.Queue(fakeredis.FakeAsyncRedis(), "aio")
    with pytest.raises(InvalidType, match=r"for a delayq\.aio\.Queue: 'await arun_due\(\.\.\.\)'"):
        run_due(aqueue, print)  # type: ignore[arg-type]
    with pytest.raises(InvalidType, match=r"for a delayq\.Queue: run_due"):
        asyncio.run(arun_due(delayq.Queue(fakeredis.FakeRedis(), "sync"), print))  # type: ignore[arg-type]


def test_frozen_clocks_may_end_in_any_order() -> None:
    q = delayq.Queue(fakeredis.FakeRedis(), "clocks")
    outer = frozen_clock(q)
    first = outer.__enter__()
    inner = frozen_clock(q)
    second = inner.__enter__()
    assert q._core.clock is second
    outer.__exit__(None, None, None)  # the first to start ends first: the queue keeps the live one
    assert q._core.clock is second
    inner.__exit__(None, None, None)
    assert q._core.clock is None  # and gets the server's clock back, not a stale test clock
    assert first is not second


def test_a_registry_survives_its_module_running_twice() -> None:
    """``python -m myapp.jobs`` runs the module as __main__ and again under its name: each @task
    runs twice on a shared registry. The second definition replaces the first, schedules included."""
    tasks = Tasks()
    source = textwrap.dedent(
        """
        @tasks.periodic(60)
        def beat() -> None: ...

        @tasks.task
        def work(n: int) -> int:
            return n
        """
    )
    code = compile(source, "/app/jobs.py", "exec")
    exec(code, {"tasks": tasks, "__name__": "__main__"})
    exec(code, {"tasks": tasks, "__name__": "jobs"})
    assert sorted(t.name for t in tasks) == ["beat", "work"]
    assert [job.name for job in tasks.periodic_jobs] == ["beat"]
    assert tasks["work"].fn.__globals__["__name__"] == "jobs"
    with pytest.raises(InvalidArgument, match="'work' is already registered"):
        tasks.task(name="work")(lambda n: n)  # another function of that name is still refused


TWICE_MODULE = """
from delayq.tasks import Tasks

tasks = Tasks()
registry = tasks  # the same registry under a second name

@tasks.periodic(3600)
def hourly():
    pass
"""


def test_the_command_line_takes_a_module_that_names_its_registry_twice(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "twice.py").write_text(TWICE_MODULE)
    result = subprocess.run(
        [sys.executable, "-m", "delayq", "periodic", "twice", unique_name("twice"), "--json"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT), DELAYQ_REDIS_URL=redis_url),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert [row["name"] for row in json.loads(result.stdout)] == ["hourly"]


def test_enqueue_from_a_worker_thread_while_the_loop_is_busy_does_not_deadlock() -> None:
    """The bridge posts to the loop and waits: the loop must stay free, as the asyncio worker keeps it."""

    async def main() -> list[str | None]:
        q = delayq.aio.Queue(fakeredis.FakeAsyncRedis(), "bridge")
        tasks = Tasks(q)

        @tasks.task
        def leaf(n: int) -> None: ...

        await asyncio.sleep(0)
        tasks.bind(q)  # inside the loop: the registry learns it
        ids: list[str | None] = []
        threads = [threading.Thread(target=lambda i=i: ids.append(leaf.enqueue(i, id=f"n{i}"))) for i in range(8)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.01)
        return sorted(ids, key=str)

    assert asyncio.run(main()) == [f"n{i}" for i in range(8)]


def test_sharded_queues_keep_the_same_behaviour(env: Env) -> None:
    q = env.queue(shards=3)
    for i in range(6):
        q.enqueue(f"{i}".encode(), id=f"s{i}")
    with pytest.raises(KeyboardInterrupt):
        drain(env, q, lambda job: (_ for _ in ()).throw(KeyboardInterrupt()))
    stats = q.stats()
    assert (stats.ready, stats.in_flight, stats.dead) == (6, 0, 0)


def test_a_frozen_clock_keeps_the_order_jobs_were_enqueued_in(env: Env) -> None:
    """Under a frozen clock every job is due at the same ms, and ties are broken by id: ids made
    later must sort later, or run_due runs a test's jobs in a random order."""
    tasks = Tasks()
    order: list[int] = []

    @tasks.task
    def step(n: int) -> None:
        order.append(n)

    q = env.queue()
    bind(env, tasks, q)
    with frozen_clock(real_queue(env, q)):
        for n in range(12):
            enqueue(env, step, n)
        enqueue_many(env, step, [(n,) for n in range(12, 20)])
        enqueue(env, step, 20)
        assert [o.kind for o in drain(env, q, tasks)] == ["processed"] * 21
    assert order == list(range(21))


def test_bad_input_gets_a_typed_error_or_a_dead_letter_and_nothing_else_changes(env: Env) -> None:
    """The issue's list: a bad cron expression, a bad time zone and a non-serialisable argument are
    refused, typed and named, before anything is registered or sent; an unknown task and an
    envelope that does not decode go to the dead letters with their reason, on their first run
    (not after their attempts), and the rest of the queue is as it was."""
    tasks = Tasks()

    @tasks.task
    def report(day: str) -> None: ...

    q = env.queue(max_attempts=None)
    bind(env, tasks, q)
    enqueue(env, report, "monday", id="kept", delay=3600)
    before = snapshot(env.raw, q)
    refused: list[tuple[Any, type[Exception], str]] = [
        (lambda: tasks.periodic("61 9 * * *"), InvalidArgument, "bad cron expression '61 9 * * *': Bad minute"),
        (lambda: tasks.periodic("0 9 * * *", tz="Europe/Pariss"), InvalidArgument, "unknown time zone 'Europe/Pariss'"),
        (lambda: enqueue(env, report, object()), InvalidType, "argument 0 of task 'report' cannot be sent as JSON"),
        (lambda: enqueue(env, report, day=b"monday"), InvalidType, "keyword argument 'day' of task 'report'"),
    ]
    for attempt, error, text in refused:
        with pytest.raises(error) as info:
            attempt()
        assert text in str(info.value)
    assert [t.name for t in tasks] == ["report"] and tasks.periodic_jobs == []
    assert snapshot(env.raw, q) == before
    q.enqueue(b'{"task": "send_invoice", "args": []}', id="unknown")
    q.enqueue(b"\xff not an envelope", id="undecodable")
    outcomes = {o.id: o for o in drain(env, q, tasks)}
    assert {i: o.kind for i, o in outcomes.items()} == {"unknown": "dead_lettered", "undecodable": "dead_lettered"}
    dead = {d.id: (d.attempts, d.error) for d in q.dead_letters()}
    assert dead == {
        "unknown": (1, "job 'unknown': unknown task 'send_invoice' (registered: report)"),
        "undecodable": (
            1,
            "job 'undecodable': the payload is not a json task envelope: UnicodeDecodeError: "
            "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        ),
    }
    for job_id in ("unknown", "undecodable"):
        assert q.cancel(job_id)
    assert snapshot(env.raw, q) == before  # the delayed job untouched, nothing else left behind


def test_keyword_arguments_go_as_keywords_or_in_kwargs(env: Env) -> None:
    """``report.enqueue(day="monday")`` raised a bare TypeError (unexpected keyword): keywords are
    the function's now; kwargs= stays for names enqueue takes itself."""
    tasks = Tasks()
    calls: list[tuple[str, float]] = []

    @tasks.task
    def remind(who: str, *, channel: str = "email", delay: float = 0) -> None:
        calls.append((f"{who}/{channel}", delay))

    q = env.queue()
    bind(env, tasks, q)
    enqueue(env, remind, "ann", channel="sms")
    enqueue(env, remind, "bob", kwargs={"delay": 5.0}, channel="push")  # the function's own 'delay'
    before = snapshot(env.raw, q)
    with pytest.raises(InvalidArgument, match="given twice, as keywords and in kwargs=: 'channel'"):
        enqueue(env, remind, "cy", kwargs={"channel": "a"}, channel="b")
    with pytest.raises(InvalidArgument, match="unexpected keyword argument 'chanel'"):
        enqueue(env, remind, "cy", chanel="sms")  # a typo: refused by the signature, typed
    assert snapshot(env.raw, q) == before
    assert [o.kind for o in drain(env, q, tasks)] == ["processed", "processed"]
    assert calls == [("ann/sms", 0), ("bob/push", 5.0)]


def test_run_due_inside_an_event_loop_says_to_await_arun_due_and_keeps_the_job() -> None:
    """In an async test, run_due's asyncio.run of an async handler fails: that is the test's
    mistake, not the job's, so the job must not be retried (an attempt used) for it."""
    q = delayq.Queue(fakeredis.FakeRedis(), "in-a-loop")
    tasks = Tasks(q)

    @tasks.task
    async def ping() -> None: ...

    async def handler(job: Job) -> None: ...

    async def main() -> None:
        ping.enqueue(id="p")
        with pytest.raises(InvalidArgument, match=r"await arun_due"):
            run_due(q, tasks)
        with pytest.raises(InvalidArgument, match=r"await arun_due"):
            run_due(q, handler)

    asyncio.run(main())
    assert q.stats().ready == 1 and q.stats().in_flight == 0
    [outcome] = run_due(q, tasks)  # outside the loop, as meant: its first attempt
    assert outcome.kind == "processed" and outcome.job.attempts == 1
