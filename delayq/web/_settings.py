"""The dashboard's settings: how it reaches Redis, what it shows, who may do what, checked once.

A bad value raises a typed error naming it when the app is made (``create_app``), not on
the first page: :class:`~delayq.InvalidType` for a wrong type, :class:`~delayq.InvalidArgument`
for a value out of range.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.connection

from .._core import QueueCore
from .._errors import DelayqError, InvalidArgument, InvalidType
from .._inspect import QueueRef
from .._shards import MAX_SHARDS
from .._validate import MAX_BATCH, check_int, check_name
from ._security import LOOPBACK_HOSTS, Auth, check_host_pattern

__all__ = ["WebSettings"]


def _number(value: object, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidType(f"{what} must be a number of seconds, got {value!r} ({type(value).__name__})")
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidArgument(f"{what} must be between {low:g} and {high:g} seconds, got {value!r}")
    return float(value)


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidType(f"{what} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def _optional_text(value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidType(f"{what} must be a str or None, got {type(value).__name__}")
    return value


def _queue_ref(value: object) -> QueueRef:
    if isinstance(value, str):
        value = QueueRef(value)
    if not isinstance(value, QueueRef):
        raise InvalidType(f"queues must hold queue names (str) or QueueRef, got {value!r:.80}")
    check_name(value.name, "queues: a queue name")
    check_int(value.shards, "shards", 1, MAX_SHARDS)
    return value


def _hosts(value: object) -> tuple[str, ...]:
    if value is None:
        env = os.environ.get("DELAYQ_WEB_ALLOWED_HOSTS", "")
        return tuple(h.strip() for h in env.split(",") if h.strip()) or LOOPBACK_HOSTS
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidType(f"allowed_hosts must be a list of host names, got {value!r:.80}")
    hosts = tuple(value)
    if not hosts:
        raise InvalidArgument("allowed_hosts must name at least one host (or '*' for any)")
    for host in hosts:
        check_host_pattern(host)
    return hosts


@dataclass
class WebSettings:
    """How the dashboard reaches Redis and who may do what.

    Attributes:
        client: A ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``
            (``decode_responses=False``), or a redis:// URL to make one from (one per event loop).
        cluster: With a URL: it names a Redis Cluster node.
        prefix: The queues' key prefix.
        queues: The queues to show; None = every queue found by SCAN.
        read_only: Show no actions and refuse every POST.
        username: HTTP basic user; default ``$DELAYQ_WEB_USERNAME``.
        password: HTTP basic password; default ``$DELAYQ_WEB_PASSWORD``.
        public_read: With credentials set, let anyone look (actions still need them);
            default ``$DELAYQ_WEB_PUBLIC_READ=1``.
        secret: The CSRF key; default ``$DELAYQ_WEB_SECRET``, else random per process (so
            several processes behind one address need the variable).
        allowed_hosts: The ``Host`` names it answers (``*.example.com`` matches subdomains,
            ``*`` any); default ``$DELAYQ_WEB_ALLOWED_HOSTS`` (comma-separated), else the
            loopback names only. A page asked for under another name is refused (400): a
            web page elsewhere cannot point a name of its own at this address (DNS
            rebinding) and read or act as if it were the dashboard's own page.
        refresh: Seconds between the counts' refreshes (0.2 to 3600).
        page_size: Jobs per page (1 to 1000).
        discover_every: Seconds a SCAN's list of queues is kept (0 to 3600).
        timeout: With a URL: seconds to connect and to wait for each reply (0.1 to 300)
            before the page says Redis did not answer (503), rather than hanging.

    Raises:
        InvalidType, InvalidArgument: A bad value, named (on construction).
        DelayqError: Only one of username and password.
    """

    client: Any = None
    cluster: bool = False
    prefix: str = "delayq"
    queues: Sequence[str | QueueRef] | None = None
    read_only: bool = False
    username: str | None = None
    password: str | None = None
    public_read: bool | None = None
    secret: bytes | None = None
    allowed_hosts: Sequence[str] | None = None
    refresh: float = 2.0
    page_size: int = 50
    discover_every: float = 10.0
    timeout: float = 5.0
    auth: Auth = field(init=False)
    refs: tuple[QueueRef, ...] | None = field(init=False)

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = os.environ.get("DELAYQ_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://localhost:6379/0"
        if isinstance(self.client, str):
            try:
                redis.connection.parse_url(self.client)  # type: ignore[no-untyped-call]
            except ValueError as exc:
                raise InvalidArgument(f"client: bad Redis URL {self.client!r}: {exc}") from exc
        QueueCore("probe", prefix=self.prefix)  # a bad prefix fails here, not on the first page
        _flag(self.cluster, "cluster")
        _flag(self.read_only, "read_only")
        if self.queues is not None and (isinstance(self.queues, str) or not isinstance(self.queues, Sequence)):
            raise InvalidType(f"queues must be a list of queue names, got {self.queues!r:.80}")
        self.refs = None if self.queues is None else tuple(dict.fromkeys(_queue_ref(q) for q in self.queues))
        self.username = _optional_text(self.username, "username")
        self.password = _optional_text(self.password, "password")
        if self.username is None:
            self.username = os.environ.get("DELAYQ_WEB_USERNAME")
        if self.password is None:
            self.password = os.environ.get("DELAYQ_WEB_PASSWORD")
        if self.public_read is None:
            self.public_read = os.environ.get("DELAYQ_WEB_PUBLIC_READ") == "1"
        _flag(self.public_read, "public_read")
        if self.secret is None:
            env = os.environ.get("DELAYQ_WEB_SECRET")
            self.secret = env.encode() if env else secrets.token_bytes(32)
        if not isinstance(self.secret, bytes) or len(self.secret) < 16:
            raise InvalidArgument("secret must be at least 16 bytes (DELAYQ_WEB_SECRET: at least 16 characters)")
        self.allowed_hosts = _hosts(self.allowed_hosts)
        self.refresh = _number(self.refresh, "refresh", 0.2, 3600)
        self.page_size = check_int(self.page_size, "page_size", 1, MAX_BATCH)
        self.discover_every = _number(self.discover_every, "discover_every", 0, 3600)
        self.timeout = _number(self.timeout, "timeout", 0.1, 300)
        self.auth = Auth(self.username, self.password)
        if bool(self.username) != bool(self.password):
            raise DelayqError("set both DELAYQ_WEB_USERNAME and DELAYQ_WEB_PASSWORD (or neither)")
