"""What a dashboard page costs Redis with a million jobs queued: client calls per page and server time.

Runs alone: `python benchmarks/dashboard.py [--jobs N] [--json PATH]`. It starts a private
redis-server, fills one queue (60% ready, 38% delayed, 1% in flight, 1% dead), then loads
each page through the app (Starlette's TestClient, the app's own redis.asyncio client)
with the server's stats reset before each: the commands the app sent (INFO commandstats:
EVALSHA, SCAN, TYPE, HGETALL), the server time they took, and the slowest single call (SLOWLOG).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import redis
from starlette.testclient import TestClient

import delayq
from delayq._server import RedisServer
from delayq.web import create_app

CLIENT_COMMANDS = ("evalsha", "scan", "type", "hgetall", "script|load", "ping")


def fill(client: redis.Redis, total: int) -> delayq.Queue:
    q = delayq.Queue(client, "big", max_attempts=1)
    ready, delayed, flight, dead = int(total * 0.60), int(total * 0.38), total // 100, total // 100
    for start in range(0, ready, 1000):
        q.enqueue_many([b'{"to": "someone@example.com", "template": "welcome"}'] * min(1000, ready - start))
    for start in range(0, delayed, 1000):
        q.enqueue_many([b'{"to": "later@example.com"}'] * min(1000, delayed - start), delay=3600)
    held = [job for _ in range(0, flight + dead, 1000) for job in q.dequeue(1000, lock_ttl=3600)]
    for job in held[:dead]:
        q.nack(job, error="TimeoutError: the SMTP server did not answer in 30s")
    return q


def measure(server: redis.Redis, web: TestClient, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    server.config_resetstat()
    server.slowlog_reset()
    started = time.perf_counter()
    response = web.get(path, headers=headers or {})
    wall_ms = (time.perf_counter() - started) * 1000
    assert response.status_code in (200, 404), (path, response.status_code)
    stats = server.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): v for name, v in stats.items()}
    sent = {k: v["calls"] for k, v in calls.items() if k in CLIENT_COMMANDS and k not in ("ping",)}
    usec = sum(v["usec"] for k, v in calls.items() if k in CLIENT_COMMANDS)
    inner = sum(
        v["calls"]
        for k, v in calls.items()
        if k not in CLIENT_COMMANDS and k not in ("info", "config|resetstat", "slowlog|reset")
    )
    slow = server.slowlog_get(1000)
    longest = max((e["duration"] for e in slow if e["command"][:7].lower() in (b"evalsha", b"scan", b"hgetal")), default=0)
    return {"page": path + (" (htmx refresh)" if headers else ""), "calls": sent, "server_us": usec, "inner_commands": inner,
            "longest_call_us": longest, "wall_ms": round(wall_ms, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    with RedisServer() as srv:
        server = redis.Redis(port=srv.port)
        server.config_set("slowlog-log-slower-than", 0)
        server.config_set("slowlog-max-len", 10_000)
        started = time.monotonic()
        q = fill(server, args.jobs)
        print(f"filled {q.stats()} in {time.monotonic() - started:.0f}s", file=sys.stderr)
        dead_id = q.list_jobs("dead", limit=1).jobs[0].id
        deep = q.stats().ready // 50 // 2
        rows = []
        app = create_app(srv.url, username="", password="", discover_every=10)
        with TestClient(app, base_url="http://localhost") as web:  # the app answers loopback names only
            web.get("/")  # scripts loaded, connection made: measure the steady state
            web.get("/queue?name=big")
            web.get("/job?name=big&id=x")
            time.sleep(0.1)
            # forget the list of queues, so that the first page walks the keyspace again
            web.app.state.delayq.found = (float("-inf"), [])
            rows.append(measure(server, web, "/", None))
            rows.append(measure(server, web, "/", {"HX-Request": "true"}))
            rows.append(measure(server, web, "/queue?name=big"))
            rows.append(measure(server, web, f"/queue?name=big&page={deep}"))
            rows.append(measure(server, web, "/queue?name=big&state=delayed&page=7000"))
            rows.append(measure(server, web, "/queue?name=big&state=dead"))
            rows.append(measure(server, web, "/queue?name=big&state=in_flight"))
            rows.append(measure(server, web, "/partials/counts?name=big", {"HX-Request": "true"}))
            rows.append(measure(server, web, f"/job?name=big&id={dead_id}"))
            rows.append(measure(server, web, "/workers"))
            rows.append(measure(server, web, "/metrics"))
        server.close()
    print(f"{'page':<50} {'calls':<34} {'server µs':>10} {'inner cmds':>10} {'longest µs':>10} {'wall ms':>8}")
    for row in rows:
        calls = ", ".join(f"{k.upper()} {v}" for k, v in sorted(row["calls"].items()))
        figures = f"{row['server_us']:>10} {row['inner_commands']:>10} {row['longest_call_us']:>10} {row['wall_ms']:>8}"
        print(f"{row['page']:<50} {calls:<34} {figures}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"jobs": args.jobs, "redis": srv.binary, "rows": rows}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
