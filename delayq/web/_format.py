"""How the pages show times, payloads and counts (plain functions, used as Jinja filters)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

__all__ = ["MAX_SHOWN_BYTES", "age", "duration", "hexdump", "iso", "payload_view", "relative", "since"]

MAX_SHOWN_BYTES = 64 * 1024
"""A job page shows at most this much of a payload."""


def iso(ms: int) -> str:
    """A server-clock time in ms, as ISO 8601 UTC to the second."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """A short human duration: 850ms, 42s, 3m 5s, 2h 10m, 4d 3h."""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def relative(at_ms: int, now_ms: int) -> str:
    """``at_ms`` seen from ``now_ms`` (both server clock): "in 5s", "3m 2s ago", "now"."""
    delta = (at_ms - now_ms) / 1000
    if abs(delta) < 0.5:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def since(at_s: float, now_s: float) -> str:
    """A time another machine reported (a worker's heartbeat, in seconds), seen from ``now_s``.

    "-" when it is missing (0); "5m 2s ago"; and when the reporter's clock runs ahead of
    this one, "3s ahead of this clock" (a skew to notice, never a time in the past).
    """
    if at_s <= 0:
        return "-"
    shown = relative(round(at_s * 1000), round(now_s * 1000))
    return f"{shown[3:]} ahead of this clock" if shown.startswith("in ") else shown


def age(seconds: float) -> str:
    """The oldest ready age for a table: "-" when nothing waits."""
    return "-" if seconds <= 0 else duration(seconds)


def _decode(data: bytes) -> str:
    """UTF-8 text, forgiving a character cut off at the end (payloads are shown cut).

    Raises:
        UnicodeDecodeError: Not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8")
        raise


def _printable(text: str) -> bool:
    return all(ch.isprintable() or ch in "\n\r\t" for ch in text)


def hexdump(data: bytes) -> str:
    """Offset, hex bytes and ASCII, 16 bytes a line (as ``hexdump -C``)."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<47}  |{text}|")
    return "\n".join(lines)


def payload_view(data: bytes) -> tuple[str, str]:
    """How to show a payload: ("json", indented), ("text", as is) for printable UTF-8, else ("hex", a dump).

    The caller escapes the text (Jinja's autoescape): it is never markup.
    """
    try:
        text = _decode(data)
    except UnicodeDecodeError:
        return "hex", hexdump(data)
    if not _printable(text):
        return "hex", hexdump(data)
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return "json", json.dumps(json.loads(stripped), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return "text", text


def preview(data: bytes, width: int = 80) -> str:
    """A one-line look at a payload for tables: text, or ``\\xNN`` escapes for other bytes."""
    try:
        text = _decode(data)
        if not _printable(text):
            raise ValueError
        text = " ".join(text.split())
    except ValueError:
        text = repr(data)[2:-1]
    return text if len(text) <= width else text[: width - 1] + "…"
