"""What every phase of the bench shares: the target server, progress, cells and medians,
tables, the targets check, the JSON file and the plot.

A phase (one module each, registered in ``delayq.bench.PHASES``) is a :class:`Phase`:
its measurement, its report table, and optionally its targets, its plot panel and
its own options. Nothing here knows any one phase.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import redis

from .._cli_base import CliError, checked_client
from .._server import RedisServer, ServerUnavailable

__all__ = [
    "PAYLOAD",
    "TTL",
    "Cell",
    "Phase",
    "Progress",
    "Result",
    "Target",
    "Targets",
    "environment",
    "median",
    "name_for",
    "open_target",
    "plot",
    "server_usec",
    "spent",
    "table",
    "write_json",
]

PAYLOAD = b"x" * 100
TTL = 30.0

Result = dict[str, Any]
"""What a phase measured: JSON-ready, stored under the phase's name in the results."""


# ---------------------------------------------------------------- the target server


@dataclass
class Target:
    """The Redis the suite runs against, and how to make clients for it."""

    url: str | None
    label: str
    server: RedisServer | None = None
    fake_server: Any = None

    @property
    def fake(self) -> bool:
        return self.fake_server is not None

    def client(self) -> redis.Redis:
        if self.fake_server is not None:
            import fakeredis  # noqa: PLC0415 (only when no real server can be had)

            client: redis.Redis = fakeredis.FakeRedis(server=self.fake_server)
            return client
        assert self.url is not None
        return redis.Redis.from_url(self.url)

    def close(self) -> None:
        if self.server is not None:
            self.server.__exit__(None, None, None)


def open_target(url: str | None, say: Callable[[str], None]) -> Target:
    """Connect to ``url``, else start a private redis-server, else fall back to fakeredis.

    Raises:
        CliError: ``url`` is malformed or the server does not answer.
    """
    if url:
        checked_client(url).close()
        return Target(url, f"Redis at {url}")
    try:
        server = RedisServer().start()
    except ServerUnavailable as exc:
        try:
            import fakeredis  # noqa: PLC0415
        except ImportError:
            raise CliError(f"{exc}, and fakeredis is not installed (pip install 'fakeredis[lua]')") from exc
        say("!" * 78)
        say(f"!! NO REDIS SERVER: {exc}")
        say("!! Running on fakeredis, in-process. These figures are NOT representative of Redis:")
        say("!! fakeredis runs Lua through lupa in Python. Install redis-server for real figures.")
        say("!" * 78)
        return Target(None, "fakeredis (NOT representative)", fake_server=fakeredis.FakeServer())
    return Target(server.url, f"private redis-server on 127.0.0.1:{server.port}", server=server)


def server_usec(client: redis.Redis, fake: bool) -> dict[str, float]:
    """Total server time per command so far (INFO commandstats), in µs; {} on fakeredis."""
    if fake:
        return {}
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): float(v["usec"]) for name, v in stats.items()}


def spent(before: dict[str, float], after: dict[str, float], only: str | None = None) -> float | None:
    """Server µs spent between two snapshots: in one command, or in all but INFO/CONFIG."""
    if not after:
        return None
    names = [only] if only else [n for n in after if not n.startswith(("info", "config"))]
    return sum(after.get(n, 0.0) - before.get(n, 0.0) for n in names)


def environment(target: Target) -> dict[str, Any]:
    """Where the figures come from: Redis version, machine, Python, parser."""
    info: dict[str, Any] = {
        "target": target.label,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_cpu_model()}",
        "redis_py": redis.__version__,
        "parser": "hiredis" if redis.utils.HIREDIS_AVAILABLE else "python",
    }
    client = target.client()
    info["redis_version"] = "fakeredis" if target.fake else str(client.info("server")["redis_version"])
    client.close()
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ---------------------------------------------------------------- measuring


class Progress:
    """A progress bar over a phase's steps (tqdm when installed, else a line per step)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        try:
            from tqdm import tqdm  # noqa: PLC0415 (optional extra)
        except ImportError:
            self._tqdm: Any = None
        else:
            self._tqdm = tqdm

    @contextmanager
    def phase(self, name: str, steps: int) -> Iterator[Callable[[str], None]]:
        if self.quiet:
            yield lambda _label: None
        elif self._tqdm is not None:
            bar = self._tqdm(total=steps, desc=f"{name:<10}", file=sys.stderr, leave=False, dynamic_ncols=True)

            def advance(label: str) -> None:
                bar.set_postfix_str(label)
                bar.update(1)

            yield advance
            bar.close()
        else:
            done = [0]

            def step(label: str) -> None:
                done[0] += 1
                print(f"  {name} {done[0]}/{steps} {label}", file=sys.stderr, flush=True)

            yield step


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def name_for(kind: str) -> str:
    """A fresh queue name, so that no run sees another's keys."""
    return f"bench-{kind}-{uuid4().hex[:8]}"


@dataclass
class Cell:
    """Repeated measurements of one configuration."""

    rates: list[float] = field(default_factory=list)
    usec_per_item: list[float] = field(default_factory=list)

    def add(self, items: int, seconds: float, usec: float | None) -> None:
        self.rates.append(items / seconds)
        if usec is not None:
            self.usec_per_item.append(usec / items)

    def summary(self) -> dict[str, Any]:
        return {
            "items_per_s": median(self.rates),
            "server_usec_per_item": median(self.usec_per_item) if self.usec_per_item else None,
            "runs": len(self.rates),
        }


# ---------------------------------------------------------------- reporting


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table."""

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = [title, "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


class Targets:
    """The speed targets, each with the figure measured in this run."""

    def __init__(self) -> None:
        self.lines = ["targets (met / NOT met):"]

    def check(self, label: str, value: float | None, goal: float, higher: bool, unit: str = "") -> None:
        """Add one target: met if ``value`` is at least (``higher``) or at most ``goal``; None: not measured."""
        if value is None:
            self.lines.append(f"  -         {label}: not measured in this run")
            return
        ok = value >= goal if higher else value <= goal
        self.lines.append(
            f"  {'met' if ok else 'NOT met':<9} {label}: {value:,.2f}{unit} ({'>=' if higher else '<='} {goal:,}{unit})"
        )

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class Phase:
    """One phase of the bench: a module's measurement, its report, and what else it brings.

    Attributes:
        name: The phase's name: ``--only NAME``, ``benchmarks/NAME.py``, the JSON key.
        summary: One line for ``--help``.
        measure: Runs the phase; its result must be JSON-ready. ``{"skipped": reason}``
            when it cannot run here (the harness reports that line instead of a table).
        report: The phase's table(s), as text.
        targets: Adds the phase's targets; given None when the phase did not run or was skipped.
        plot: Draws the phase's panel on a matplotlib Axes.
        add_arguments: Options only this phase reads.
        check_options: Rejects bad values of those options before any phase runs (raises CliError).
    """

    name: str
    summary: str
    measure: Callable[[Target, argparse.Namespace, Progress], Result]
    report: Callable[[Result], str]
    targets: Callable[[Result | None, Targets], None] | None = None
    plot: Callable[[Result, Any], None] | None = None
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    check_options: Callable[[argparse.Namespace], None] | None = None


def write_json(results: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
        f.write("\n")


def plot(results: dict[str, Any], path: str, phases: Sequence[Phase]) -> None:
    """A PNG with one panel per phase that draws one (throughput, lateness), side by side.

    Raises:
        CliError: matplotlib is not installed.
    """
    try:
        import matplotlib  # noqa: PLC0415 (optional extra)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise CliError("--plot needs matplotlib: pip install 'delayq[plot]'") from exc
    panels = [p for p in phases if p.plot is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for phase, ax in zip(panels, axes[0], strict=True):
        result = results.get(phase.name)
        if result is None or "skipped" in result:
            ax.text(0.5, 0.5, f"{phase.name} not measured", ha="center", va="center")
        else:
            assert phase.plot is not None
            phase.plot(result, ax)
    env = results["environment"]
    fig.suptitle(f"delayq bench: Redis {env['redis_version']}, {env['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
