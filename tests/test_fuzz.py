"""Bad input, fuzzed: every public method (sync and async) and the CLI's arguments get wrong types,
huge and negative numbers, NaN, empty and enormous strings, invalid text, braces in names. The only
failures allowed are typed delayq errors, and then the queue must be exactly as it was."""

from __future__ import annotations

import io
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import delayq
import delayq.aio
from delayq import DelayqError, InvalidArgument, InvalidType, Job
from delayq.__main__ import main
from delayq._validate import SENTINEL
from tests.helpers import Env, unique_name
from tests.snapshots import snapshot

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.binary(max_size=50),
    st.sampled_from(["", "{", "}", "a{b}c", "\ud800", "\udcff", "x" * 5000, "\x00", "é☃"]),
    st.sampled_from([b"", b"\xff\xfe\x00", b"x" * 100_000]),
    st.lists(st.integers() | st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([timedelta(days=-1), timedelta(days=10**5), timedelta(0), datetime(2030, 1, 1), object()]),
    st.datetimes(timezones=st.none() | st.just(timezone.utc)),
)
STALE = Job("stale", b"", 1, "1:0123456789abcdef", 0, 0)
# hand-built jobs: junk in any field, the reserved member, the empty token it has in `meta`
HAND_BUILT = st.builds(
    Job,
    JUNK | st.sampled_from([SENTINEL, "a", "stale"]),
    JUNK,
    JUNK | st.just(1),
    JUNK | st.sampled_from(["", "1:", "1:0123456789abcdef", "0:0123456789abcdef"]),
    JUNK,
    JUNK,
)
JOBS = st.one_of(st.just(STALE), HAND_BUILT, JUNK, st.lists(st.just(STALE) | HAND_BUILT | JUNK, max_size=3))

# method -> strategies for its positional arguments and keyword arguments (wait is left out: a
# valid one would block the test)
CALLS: dict[str, tuple[list[Any], dict[str, Any]]] = {
    "enqueue": ([JUNK | st.binary(max_size=20)], {"delay": JUNK, "id": JUNK}),
    "enqueue_many": ([JUNK | st.lists(JUNK | st.binary(max_size=5), max_size=3)], {"delay": JUNK, "ids": JUNK}),
    "dequeue": ([JUNK | st.integers(-5, 2000), JUNK], {}),
    "ack_and_dequeue": ([JOBS, JUNK | st.integers(-5, 2000), JUNK], {}),
    "ack": ([JOBS], {}),
    "ack_many": ([JOBS], {}),
    "nack": ([JOBS, JUNK], {"error": JUNK}),
    "extend": ([JOBS, JUNK], {}),
    "release": ([JOBS], {}),
    "cancel": ([JUNK], {}),
    "reschedule": ([JUNK], {"delay": JUNK, "at": JUNK}),
    "peek": ([JUNK | st.integers(-5, 2000)], {}),
    "dead_letters": ([JUNK | st.integers(-5, 2000)], {}),
    "redrive": ([JUNK], {}),
}


@st.composite
def call(draw: st.DrawFn) -> tuple[str, list[Any], dict[str, Any]]:
    method = draw(st.sampled_from(sorted(CALLS)))
    positional, keywords = CALLS[method]
    args = [draw(s) for s in positional]
    kwargs = {k: draw(s) for k, s in keywords.items() if draw(st.booleans())}
    return method, args, kwargs


@pytest.mark.timeout(300)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_public_methods_refuse_bad_input_with_typed_errors_and_change_nothing(env: Env, data: st.DataObject) -> None:
    q = env.queue(unique_name("fuzz"), max_attempts=3)
    q.enqueue_many([b"a", b"\x00b"], ids=["a", "b"])
    q.enqueue(b"c", id="c", delay=60)
    q.dequeue(1)
    for _ in range(3):
        method, args, kwargs = data.draw(call())
        before = snapshot(env.raw, q)
        try:
            getattr(q, method)(*args, **kwargs)
        except DelayqError as exc:
            assert isinstance(exc, (InvalidArgument, InvalidType)), repr(exc)
            assert isinstance(exc, ValueError if isinstance(exc, InvalidArgument) else TypeError)
            assert str(exc)
            assert snapshot(env.raw, q) == before, f"{method} changed the queue before failing"
    q.purge()


@settings(max_examples=200, deadline=None)
@given(name=JUNK, prefix=JUNK, max_attempts=JUNK, shards=JUNK, flavour=st.sampled_from(["sync", "async"]))
def test_queue_arguments_refused_with_typed_errors(name: Any, prefix: Any, max_attempts: Any, shards: Any, flavour: str) -> None:
    client: Any = fakeredis.FakeRedis() if flavour == "sync" else fakeredis.FakeAsyncRedis()
    cls: Any = delayq.Queue if flavour == "sync" else delayq.aio.Queue
    try:
        cls(client, name, prefix=prefix, max_attempts=max_attempts, shards=shards)
    except DelayqError as exc:
        assert isinstance(exc, (InvalidArgument, InvalidType))


def test_payloads_are_opaque_bytes_never_evaluated() -> None:
    q = delayq.Queue(fakeredis.FakeRedis(), "opaque")
    import pickle  # noqa: PLC0415

    evil = pickle.dumps(print)  # would call print if anything unpickled it
    blobs = [evil, b"__import__('os').system('false')", b"\x00" * 10, bytes(range(256)), b"\xc3\x28"]
    ids = q.enqueue_many(blobs)
    got = {j.id: j.payload for j in q.dequeue(10)}
    assert [got[i] for i in ids if i] == blobs


CLI_WORDS = st.sampled_from(
    ["--limit", "--delay", "--at", "--id", "--prefix", "--shards", "--json", "--yes", "--cluster", "-", "0", "-1", "nan", "1e400"]
)


@pytest.mark.timeout(300)
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    command=st.sampled_from(["stats", "peek", "enqueue", "cancel", "dead", "redrive"]),
    words=st.lists(CLI_WORDS | st.text(max_size=20) | st.sampled_from(["a{b}", "\x00", "x" * 300]), max_size=5),
)
def test_cli_arguments_give_an_exit_status_never_a_traceback(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str, words: list[str]
) -> None:
    monkeypatch.setenv("DELAYQ_REDIS_URL", redis_url)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    args = [command, f"fuzz-{command}", *[w for w in words if "\x00" not in w or command != "enqueue"]]
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse: bad usage, or --help
        code = exit_.code  # type: ignore[assignment]
    assert code in (0, 1, 2)
    capsys.readouterr()
