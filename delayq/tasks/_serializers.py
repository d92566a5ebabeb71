"""How a task's call becomes payload bytes and back: the JSON default, msgspec, and the checks
that refuse, by name, an argument that would not come back as it was sent."""

from __future__ import annotations

import json
import math
from typing import Any, Literal, Protocol

from .._errors import InvalidArgument, InvalidType

__all__ = ["MAX_DEPTH", "MAX_INT_BITS", "JsonSerializer", "MsgspecSerializer", "Serializer", "SerializerName", "make_serializer"]

SerializerName = Literal["json", "msgspec", "msgpack"]

MAX_DEPTH = 100
"""Deepest nesting of lists and dicts accepted in a task's arguments."""

MAX_INT_BITS = 4096
"""Longest int accepted in a task's JSON arguments (Python refuses to parse ints past 4300 digits)."""


class Serializer(Protocol):
    """Turns an envelope (a dict of JSON-like values) into payload bytes and back."""

    name: str

    def dumps(self, envelope: dict[str, Any], task: str) -> bytes:
        """Encode; raise InvalidType or InvalidArgument naming the bad argument of ``task``."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode; raise ValueError (or any Exception) when ``data`` is not this format."""
        ...


def _where(path: tuple[str | int, ...]) -> str:
    head, *rest = path
    text = f"argument {head}" if isinstance(head, int) else f"keyword argument {head!r}"
    return text + "".join(f"[{p!r}]" for p in rest)


def _check_text(text: str, path: tuple[str | int, ...], task: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(
            f"{_where(path)} of task {task!r} holds {text[exc.start : exc.end]!r}, which is not valid Unicode "
            "(a lone surrogate, as os.fsdecode leaves for undecodable bytes): it cannot be sent"
        ) from None


def _check_json(value: object, path: tuple[str | int, ...], task: str, depth: int = 0) -> None:
    """Refuse what JSON would not give back as it was sent, naming where it is."""
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{_where(path)} of task {task!r} nests deeper than {MAX_DEPTH} levels (a cycle?)")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if not value.isascii():
            _check_text(value, path, task)
        return
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise InvalidArgument(f"{_where(path)} of task {task!r} is an int of {value.bit_length()} bits, too long for JSON")
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
            if not key.isascii():
                _check_text(key, path, task)
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
        """The envelope as UTF-8 JSON.

        Raises:
            InvalidType, InvalidArgument: An argument JSON would not give back as it was sent (named).
        """
        for index, value in enumerate(envelope["args"]):
            _check_json(value, (index,), task)
        for key, value in envelope.get("kwargs", {}).items():
            _check_text(key, (key,), task)
            _check_json(value, (key,), task)
        try:
            return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:  # what the checks missed: typed all the same
            raise InvalidArgument(f"the arguments of task {task!r} cannot be sent as JSON: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """The envelope in ``data``.

        Raises:
            ValueError: Not JSON (UnicodeDecodeError and JSONDecodeError are ValueErrors).
        """
        return json.loads(data)


class MsgspecSerializer:
    """msgspec (``pip install "delayq[msgspec]"``): JSON (``format="json"``, the same envelope,
    faster, and it also encodes datetimes, UUIDs, dataclasses, enums and msgspec Structs, which
    arrive as their JSON form) or MessagePack (``format="msgpack"``, binary and compact).

    Raises:
        InvalidArgument: msgspec is not installed.
    """

    def __init__(self, format: Literal["json", "msgpack"] = "json") -> None:
        try:
            import msgspec  # noqa: PLC0415 (an optional extra: imported when chosen)
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise InvalidArgument('serializer="msgspec" needs msgspec: pip install "delayq[msgspec]"') from exc
        self._module = msgspec.json if format == "json" else msgspec.msgpack
        self.name = "msgspec" if format == "json" else "msgpack"
        self._encoder = self._module.Encoder()

    def dumps(self, envelope: dict[str, Any], task: str) -> bytes:
        """The envelope encoded by msgspec.

        Raises:
            InvalidType: msgspec cannot encode an argument.
        """
        try:
            data: bytes = self._encoder.encode(envelope)
            return data
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise InvalidType(f"the arguments of task {task!r} cannot be encoded by {self.name}: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """The envelope in ``data``.

        Raises:
            msgspec.DecodeError: Not this format (a ValueError).
        """
        return self._module.decode(data)


def make_serializer(value: object) -> Serializer:
    """The serializer a registry was given: a name, or an object with ``dumps`` and ``loads``.

    Raises:
        InvalidArgument: Anything else (pickle is refused: a payload is data, never code).
    """
    if value == "json":
        return JsonSerializer()
    if value == "msgspec":
        return MsgspecSerializer("json")
    if value == "msgpack":
        return MsgspecSerializer("msgpack")
    if isinstance(value, str) or not callable(getattr(value, "dumps", None)) or not callable(getattr(value, "loads", None)):
        raise InvalidArgument(f"serializer must be 'json', 'msgspec', 'msgpack' or a Serializer, got {value!r}")
    return value  # type: ignore[return-value]
