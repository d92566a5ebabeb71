"""Where a job's server time goes: this tree against a git revision, paired, per Redis command.

Each round drains a fresh queue of ``--jobs`` due jobs with ``ack_and_dequeue`` at
``--batch`` (a worker's loop: ack the batch, claim the next, one call) once with the
delayq of this tree and once with the delayq of ``--base``, in alternating order, on
one private redis-server; INFO commandstats before and after each drain gives the
server time per job, in total (EVALSHA) and for each command the scripts ran. The
table shows medians over the rounds, and the ratio this/base as the median of the
per-round ratios (each round's two drains ran back to back, so a load that comes and
goes on a shared machine hits both alike).

    python benchmarks/server_time.py --base a0f990e [--rounds 30] [--jobs 10000] [--batch 100] [--url URL] [--json PATH]

"Lua and redis.call" is EVALSHA's time less that of the commands it ran: the
interpreter, argument conversion and reply building.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# runs in a child process, with PYTHONPATH pointing at one of the two trees: for each line
# "JOBS BATCH" it reads, it drains a fresh queue and prints the commandstats delta as JSON
DRAIN = r"""
import json, sys, uuid
import redis
from delayq import Queue
client = redis.Redis.from_url(sys.argv[1])
for line in sys.stdin:
    jobs, batch = map(int, line.split())
    q = Queue(client, "st-" + uuid.uuid4().hex[:8])
    q.enqueue_many([b"x" * 100] * jobs)
    q.stats()  # loads the scripts this drain needs before the first snapshot
    _, done = q.ack_and_dequeue([], 1, 30)  # ... and dequeue's
    before = client.info("commandstats")
    while True:
        _, got = q.ack_and_dequeue(done, batch, 30)
        if not got and not done:
            break
        done = got
    after = client.info("commandstats")
    left = q.stats().total
    q.purge()
    if left:
        raise SystemExit(f"not drained: {left} left")
    delta = {}
    for name, v in after.items():
        b = before.get(name, {"calls": 0, "usec": 0})
        calls, usec = v["calls"] - b["calls"], v["usec"] - b["usec"]
        if calls and not name.startswith(("cmdstat_info", "cmdstat_script")):
            delta[name.removeprefix("cmdstat_")] = {"calls": calls, "usec": usec}
    print(json.dumps(delta), flush=True)
"""


def base_tree(rev: str, into: Path) -> Path:
    """Extract delayq/ and lua/ of ``rev`` into a directory, importable as a checkout."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "delayq", "lua"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


class Side:
    """A child process running DRAIN with one tree's delayq."""

    def __init__(self, tree: Path, url: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.tree = tree
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRAIN, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            cwd=tree,  # python -c puts the working directory first on sys.path
        )

    def drain(self, jobs: int, batch: int) -> dict[str, dict[str, float]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{jobs} {batch}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the drain with {self.tree} failed (see its traceback above)")
        delta: dict[str, dict[str, float]] = json.loads(line)
        return delta

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="main", help="git revision to compare against (default main)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--url", help="a Redis to use (default: a private redis-server)")
    parser.add_argument("--json", metavar="PATH", help="write the rounds and the medians as JSON")
    opts = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from delayq._server import RedisServer  # noqa: PLC0415 (this tree's, after the path is set)

    server = None
    url = opts.url
    if url is None:
        server = RedisServer().start()
        url = server.url
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {"base": [], "this": []}
    with tempfile.TemporaryDirectory(prefix="delayq-base-") as tmp:
        sides = {"base": Side(base_tree(opts.base, Path(tmp)), url), "this": Side(ROOT, url)}
        try:
            for r in range(opts.rounds):
                order = ("base", "this") if r % 2 == 0 else ("this", "base")
                for side in order:
                    rounds[side].append(sides[side].drain(opts.jobs, opts.batch))
        finally:
            for s in sides.values():
                s.close()
            if server is not None:
                server.stop()
    print(report(rounds, opts))
    if opts.json:
        Path(opts.json).write_text(json.dumps({"options": vars(opts), "rounds": rounds}, indent=1))
    return 0


def report(rounds: dict[str, list[dict[str, dict[str, float]]]], opts: argparse.Namespace) -> str:
    jobs: int = opts.jobs
    names = sorted({n for side in rounds.values() for r in side for n in r} - {"evalsha"})

    def per_job(side: str, name: str, field: str) -> float:
        return float(statistics.median(r.get(name, {}).get(field, 0) / jobs for r in rounds[side]))

    def lua(r: dict[str, dict[str, float]]) -> float:
        return float(r["evalsha"]["usec"] - sum(v["usec"] for n, v in r.items() if n != "evalsha")) / jobs

    ratios = [t["evalsha"]["usec"] / b["evalsha"]["usec"] for b, t in zip(rounds["base"], rounds["this"], strict=True)]
    lines = [
        f"server time per job, ack_and_dequeue at batch {opts.batch}, {jobs:,} jobs a drain, "
        f"{opts.rounds} paired rounds; base = {opts.base}",
        f"{'command':<18}{'base calls/job':>15}{'base µs/job':>13}{'this calls/job':>16}{'this µs/job':>13}",
    ]
    for name in names:
        lines.append(
            f"{name:<18}{per_job('base', name, 'calls'):>15.3f}{per_job('base', name, 'usec'):>13.3f}"
            f"{per_job('this', name, 'calls'):>16.3f}{per_job('this', name, 'usec'):>13.3f}"
        )
    lua_b = statistics.median(lua(r) for r in rounds["base"])
    lua_t = statistics.median(lua(r) for r in rounds["this"])
    lines.append(f"{'Lua and redis.call':<18}{'':>15}{lua_b:>13.3f}{'':>16}{lua_t:>13.3f}")
    lines.append(
        f"{'EVALSHA (total)':<18}{per_job('base', 'evalsha', 'calls'):>15.3f}{per_job('base', 'evalsha', 'usec'):>13.3f}"
        f"{per_job('this', 'evalsha', 'calls'):>16.3f}{per_job('this', 'evalsha', 'usec'):>13.3f}"
    )
    lines.append(
        f"this/base, median of the paired rounds: {statistics.median(ratios):.2f}x  "
        f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
