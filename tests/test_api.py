"""The public API: the names users import, where those names say they live, and imports without circles."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import fakeredis
import pytest

import delayq
import delayq.aio
from delayq._replies import new_job
from delayq._types import Job

ROOT = Path(__file__).resolve().parent.parent

PUBLIC = [
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


def test_the_exported_names_are_pinned() -> None:
    # a name added to or dropped from the public API is a decision: this test makes it a visible one
    assert delayq.__all__ == PUBLIC
    assert delayq.aio.__all__ == ["Queue", "Worker", "find_queues"]
    for module in (delayq, delayq.aio):
        assert all(hasattr(module, name) for name in module.__all__)


def test_public_classes_name_the_module_users_import_them_from() -> None:
    for name in delayq.__all__:
        obj = getattr(delayq, name)
        if isinstance(obj, type):
            assert obj.__module__ == "delayq", name
    assert delayq.aio.Queue.__module__ == "delayq.aio"
    assert delayq.aio.Worker.__module__ == "delayq.aio"


def test_reprs_and_errors_name_the_public_classes() -> None:
    server = fakeredis.FakeServer()
    assert repr(delayq.Queue(fakeredis.FakeRedis(server=server), "q")).startswith("delayq.Queue('q', ")
    assert repr(delayq.aio.Queue(fakeredis.FakeAsyncRedis(server=server), "q", shards=2)).startswith("delayq.aio.Queue('q', ")
    try:
        delayq.Worker(delayq.aio.Queue(fakeredis.FakeAsyncRedis(server=server), "q"), lambda job: None)  # type: ignore[arg-type]
    except delayq.InvalidType as exc:
        assert "queue must be a delayq.Queue (use delayq.aio.Worker" in str(exc)
    else:
        raise AssertionError("a sync Worker accepted an asyncio queue")


def test_every_module_imports_first_without_a_circle() -> None:
    # each module imported first, in a fresh set of delayq modules: an import circle fails here
    package = ROOT / "delayq"
    modules = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] != "__main__":  # would run the command line
            modules.append(".".join(["delayq", *parts[: -1 if parts[-1] == "__init__" else None]]))
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'delayq' or m.startswith('delayq.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "    print(name)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == modules and len(modules) > 20


def test_the_fast_job_constructor_makes_the_job_job_makes() -> None:
    """parse_dequeue builds Jobs by setting their slots (new_job): the same Job, field by field,
    as Job(...) makes, frozen, equal and hashing alike; a field added to Job fails this."""
    assert [f.name for f in fields(Job)] == ["id", "payload", "attempts", "token", "lock_expires_ms", "due_ms"]
    values = ("an-id", b"a payload", 3, "3:0123456789abcdef", 1_700_000_030_000, 1_700_000_000_000)
    fast, slow = new_job(*values), Job(*values)
    assert type(fast) is Job
    assert [getattr(fast, f.name) for f in fields(Job)] == list(values)
    assert (fast, hash(fast), repr(fast)) == (slow, hash(slow), repr(slow))
    with pytest.raises(FrozenInstanceError):
        fast.id = "other"  # type: ignore[misc]
