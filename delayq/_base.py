"""What the sync and the async queue share besides the core: the core they drive, construction, name, repr."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from ._core import QueueCore
from ._heartbeats import workers_key
from ._sharded import ShardedCore
from ._shards import MAX_SHARDS
from ._validate import DEFAULT_MAX_ATTEMPTS, check_client, check_int

__all__ = ["QueueBase", "make_core"]

ClientT = TypeVar("ClientT")


def make_core(name: str, prefix: str, max_attempts: int | None, shards: int) -> QueueCore | ShardedCore:
    """The core for a queue: one tag (shards=1, the keys carry ``{name}``) or several.

    Raises:
        InvalidType, InvalidArgument: A bad name, prefix, max_attempts or shards.
    """
    check_int(shards, "shards", 1, MAX_SHARDS)
    if shards == 1:
        return QueueCore(name, prefix=prefix, max_attempts=max_attempts)
    return ShardedCore(name, shards, prefix=prefix, max_attempts=max_attempts)


class QueueBase(Generic[ClientT]):
    """What the sync and the async queue share besides the core: construction, name and repr."""

    def __init__(
        self,
        client: ClientT,
        name: str,
        *,
        prefix: str = "delayq",
        max_attempts: int | None = DEFAULT_MAX_ATTEMPTS,
        shards: int = 1,
    ) -> None:
        check_client(client)
        self._client = client
        self._core = make_core(name, prefix, max_attempts, shards)
        self._workers_key = workers_key(self._core.prefix, self._core.name, shards)
        """The workers' heartbeat hash (see delayq._heartbeats)."""
        # a long-poll's BLPOP must end before the client's own socket timeout does
        kwargs: dict[str, Any] = client.get_connection_kwargs()  # type: ignore[attr-defined]
        timeout = kwargs.get("socket_timeout")
        self._max_block = None if timeout is None else max(0.05, float(timeout) - 0.5)

    @property
    def name(self) -> str:
        """The queue's name."""
        return self._core.name

    def __repr__(self) -> str:
        core = self._core
        shards = len(core.shards) if isinstance(core, ShardedCore) else 1
        kind = f"{type(self).__module__}.{type(self).__qualname__}"
        return f"{kind}({core.name!r}, prefix={core.prefix!r}, max_attempts={core.max_attempts!r}, shards={shards})"
