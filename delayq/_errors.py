"""Exceptions raised by delayq.

Every error delayq raises derives from :class:`DelayqError`; the ones caused by a
bad argument also derive from the builtin a caller would expect, so
``except ValueError`` keeps working::

    DelayqError
     ├── InvalidArgument (ValueError)   a value out of range: an empty name, a NaN delay, batch=0
     ├── InvalidType (TypeError)        a value of the wrong type: an int payload, a bool batch
     └── ScriptError (RuntimeError)     Redis refused a script call (e.g. WRONGTYPE: a key of
                                        this queue's name holds something else)

Connection problems are redis-py's own ``redis.exceptions.ConnectionError`` and
``TimeoutError``, raised unchanged: retry policy belongs to the redis client.
"""

from __future__ import annotations

__all__ = ["DelayqError", "InvalidArgument", "InvalidType", "ScriptError"]


class DelayqError(Exception):
    """Base class of every delayq error."""


class InvalidArgument(DelayqError, ValueError):
    """An argument has the right type but a value delayq cannot accept.

    Raised before anything is sent to Redis: the queue is unchanged.
    """


class InvalidType(DelayqError, TypeError):
    """An argument has a type delayq cannot accept.

    Raised before anything is sent to Redis: the queue is unchanged.
    """


class ScriptError(DelayqError, RuntimeError):
    """Redis answered a delayq script with an error other than NOSCRIPT."""
