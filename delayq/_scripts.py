"""The script registry: each Lua script's name, source and SHA1, read once at import.

The ``.lua`` files are the single source of truth. In an installed wheel they sit
in ``delayq/lua/``; in a source checkout they are the repository's top-level
``lua/`` folder.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["SCRIPTS", "Script"]

_NAMES = (
    "ack",
    "cancel",
    "dead_letters",
    "dequeue",
    "enqueue",
    "extend",
    "nack",
    "peek",
    "periodic_state",
    "purge",
    "redrive",
    "release",
    "reschedule",
    "schedule",
    "stats",
    # looking into a queue and pausing it
    "get",
    "jobs",
    "pause",
    "resume",
)


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script: ``sha`` is what EVALSHA sends, ``source`` what SCRIPT LOAD sends."""

    name: str
    source: str
    sha: str


def _read(name: str) -> str:
    packaged = resources.files("delayq").joinpath("lua").joinpath(f"{name}.lua")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parent.parent / "lua" / f"{name}.lua"
    return checkout.read_text(encoding="utf-8")


def _load() -> dict[str, Script]:
    scripts = {}
    for name in _NAMES:
        source = _read(name)
        sha = hashlib.sha1(source.encode("utf-8")).hexdigest()
        scripts[name] = Script(name, source, sha)
    return scripts


SCRIPTS: dict[str, Script] = _load()
