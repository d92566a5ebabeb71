"""The script registry: each Lua script's name, source, SHA1 and key roles, read once at import.

The ``.lua`` files are the single source of truth: the registry is the folder's
``*.lua`` files, and each script's keys are the ``KEYS[i] role`` lines of its
header, in order. In an installed wheel the files sit in ``delayq/lua/``; in a
source checkout they are the repository's top-level ``lua/`` folder.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["SCRIPTS", "Script", "header_keys"]

_KEY_LINE = re.compile(r"^KEYS\[(\d+)\]\s+(\w+)", flags=re.M)


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script: ``sha`` is what EVALSHA sends, ``source`` what SCRIPT LOAD sends, and
    ``keys`` the role of each of its KEYS, in order (``"due"``, ``"lease"`` ...)."""

    name: str
    source: str
    sha: str
    keys: tuple[str, ...]


def header_keys(name: str, source: str) -> tuple[str, ...]:
    """The key roles a script's header declares, ``KEYS[1]`` first.

    Raises:
        ValueError: The script has no ``--[[ ... ]]`` header, or its KEYS lines are not
            numbered 1, 2, 3 ... in order.
    """
    if not source.startswith("--[["):
        raise ValueError(f"lua/{name}.lua must open with a --[[ header ]] block")
    declared = _KEY_LINE.findall(source[: source.index("]]")])
    if [int(i) for i, _ in declared] != list(range(1, len(declared) + 1)):
        raise ValueError(f"lua/{name}.lua: its header's KEYS lines are not numbered 1, 2, 3 ...: {declared}")
    return tuple(role for _, role in declared)


def _sources() -> dict[str, str]:
    """Each ``.lua`` file's text, by name: the wheel's ``delayq/lua/``, else the checkout's ``lua/``."""
    packaged = resources.files("delayq").joinpath("lua")
    folder = packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "lua"
    return {f.name.removesuffix(".lua"): f.read_text(encoding="utf-8") for f in folder.iterdir() if f.name.endswith(".lua")}


def _load() -> dict[str, Script]:
    scripts = {}
    for name, source in sorted(_sources().items()):
        sha = hashlib.sha1(source.encode("utf-8")).hexdigest()
        scripts[name] = Script(name, source, sha, header_keys(name, source))
    return scripts


SCRIPTS: dict[str, Script] = _load()
"""Every script, by name (the file's name without ``.lua``)."""
