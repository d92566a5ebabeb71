"""What a request names, checked: the queue, a page number, a link back into the app."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request

from .._core import QueueCore
from .._errors import DelayqError
from .._inspect import QueueRef
from .._shards import MAX_SHARDS
from .._validate import MAX_NAME_LENGTH

__all__ = ["int_param", "link", "ref_from", "root_of"]


def root_of(request: Request) -> str:
    """The path the app is mounted under ("" at the root)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def link(root: str, path: str, **params: Any) -> str:
    """A URL inside the app (relative to the host, under the mount point), with query parameters."""
    query = urlencode({k: v for k, v in params.items() if v is not None and v != ""})
    return f"{root}{path}" + (f"?{query}" if query else "")


def ref_from(params: Any) -> QueueRef:
    """The queue named by the ``name`` and ``shards`` parameters, checked.

    Raises:
        HTTPException: 400, naming the bad value.
    """
    name = params.get("name", "")
    try:
        QueueCore(name)
        shards = int(params.get("shards") or 1)
    except (DelayqError, ValueError) as exc:
        raise HTTPException(400, f"bad queue: {exc}"[: MAX_NAME_LENGTH + 100]) from exc
    if not 1 <= shards <= MAX_SHARDS:
        raise HTTPException(400, f"shards must be between 1 and {MAX_SHARDS}, got {shards}")
    return QueueRef(name, shards)


def int_param(params: Any, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter, clamped to [low, high].

    Raises:
        HTTPException: 400 when it is not an integer.
    """
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        return max(low, min(high, int(raw)))
    except ValueError as exc:
        raise HTTPException(400, f"{name} must be a whole number, got {raw[:40]!r}") from exc
