"""The steps an operation yields (script calls, blocking waits, sleeps), and script calls made whole.

An operation of the core is a generator (:data:`Op`): it yields steps, a driver (the sync or
the async queue) performs each one and sends back its reply, or throws its exception in.
:func:`run_scripts` is the one place that loads scripts and maps their errors: a driver runs
every operation through it and then only performs I/O (EVALSHA, SCRIPT LOAD, BLPOP, sleep).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from redis.exceptions import NoScriptError, ResponseError

from ._errors import ScriptError
from ._scripts import Script

__all__ = ["SCRIPT_LOADS", "Block", "Call", "Load", "Op", "Sleep", "Step", "run_scripts", "script_error"]

T = TypeVar("T")

SCRIPT_LOADS = 5
"""Most SCRIPT LOADs one call makes on NOSCRIPT replies (a restart, failover or SCRIPT FLUSH): a flush
may land between a load and the retried EVALSHA, so one reload is not enough; a bound keeps a server
that keeps losing scripts from looping a call forever."""


@dataclass(frozen=True, slots=True)
class Call:
    """One script call: EVALSHA script.sha len(keys) *keys *args."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[bytes | str | int, ...]


@dataclass(frozen=True, slots=True)
class Load:
    """SCRIPT LOAD script.source (the reply is the sha): made by :func:`run_scripts` on NOSCRIPT, never by an operation."""

    script: Script


@dataclass(frozen=True, slots=True)
class Block:
    """BLPOP key timeout: wait for a wake-up token (the reply is the token, or None on timeout)."""

    key: str
    timeout: float


@dataclass(frozen=True, slots=True)
class Sleep:
    """Sleep on the client for ``seconds`` (no I/O; the reply is None)."""

    seconds: float


Step = Union[Call, Load, Block, Sleep]
Op = Generator[Step, Any, T]
"""An operation: yields steps (script calls, blocking waits, sleeps), is sent their replies, returns the result."""


def script_error(call: Call, queue: str, exc: Exception) -> ScriptError:
    """The one mapping from a Redis error reply to a delayq exception."""
    if isinstance(exc, NoScriptError):
        return ScriptError(
            f"script {call.script.name!r} failed on queue {queue!r}: NOSCRIPT after {SCRIPT_LOADS} SCRIPT LOADs "
            f"(something keeps flushing the server's scripts): {exc}"
        )
    return ScriptError(f"script {call.script.name!r} failed on queue {queue!r}: {exc}")


def run_scripts(op: Op[T], queue: str) -> Op[T]:
    """``op`` with each of its script calls made whole, for a driver that only performs steps.

    A call that gets NOSCRIPT (after a restart, failover or SCRIPT FLUSH) loads its script and
    is sent again, SCRIPT_LOADS times at most; an error reply (from the call or the load) is
    thrown into ``op`` as a ScriptError. Other exceptions (a lost connection) and the replies
    of the other steps go to ``op`` unchanged.

    Args:
        op: An operation of the core.
        queue: The queue's name, for the error messages.

    Returns:
        ``op``'s result.

    Raises:
        ScriptError: What ``op`` lets through of a script's error reply; anything else ``op`` raises.
    """
    try:
        step = next(op)
        while True:
            try:
                reply = yield from (_evalsha(step, queue) if isinstance(step, Call) else _other(step))
            except Exception as exc:
                step = op.throw(exc)
            else:
                step = op.send(reply)
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        op.close()


def _evalsha(call: Call, queue: str) -> Op[Any]:
    loads = 0
    while True:
        try:
            return (yield call)
        except NoScriptError as exc:
            if loads == SCRIPT_LOADS:
                raise script_error(call, queue, exc) from exc
        except ResponseError as exc:
            raise script_error(call, queue, exc) from exc
        loads += 1
        try:
            yield Load(call.script)
        except ResponseError as exc:
            raise script_error(call, queue, exc) from exc


def _other(step: Step) -> Op[Any]:
    return (yield step)
