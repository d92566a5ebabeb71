"""Prometheus metrics for delayq (the ``prometheus`` extra: ``pip install "delayq[prometheus]"``).

Two kinds, as Prometheus's conventions want them:

- **Queue gauges, read from Redis at scrape time** (so they are right however many
  processes enqueue or work): ``delayq_jobs{queue,shards,state}`` for state ready, delayed,
  in_flight and dead; ``delayq_oldest_ready_age_seconds{queue,shards}`` (how far behind the
  workers are: the number to alert on); ``delayq_queue_paused{queue,shards}``; and
  ``delayq_up`` (1 when Redis answered for every queue) and
  ``delayq_scrape_duration_seconds``. :class:`QueueCollector` reads them with a sync
  client; the dashboard's ``/metrics`` reads them with its asyncio client. One stats
  script call per queue (one per shard), O(log N) each. ``queue`` is the queue's name as
  given to ``Queue``, ``shards`` its shard count ("1" for a plain queue): a plain queue
  ``a/3`` and a queue ``a`` of 3 shards are two series, whatever else the server holds.
  A queue whose keys cannot be read (another program's key of the same name) is left
  out of the scrape, and ``delayq_up`` is 0.
- **Worker counters, fed by the worker's events**: ``delayq_worker_events_total{queue,event}``
  (event: processed, failed, retried, dead_lettered, lock_lost, returned) and the
  histogram ``delayq_handler_duration_seconds{queue,outcome}`` (outcome success or
  failure). Attach them with ``Worker(q, handler, on_event=WorkerMetrics(q))``.
  Workers in several processes: set ``PROMETHEUS_MULTIPROC_DIR`` to one empty
  directory for all of them and for the process that serves ``/metrics``
  (``delayq exporter`` or ``delayq web``), which then adds up every process's
  counters (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, get_args

import redis
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis.exceptions import RedisClusterException

from ._discover import find_queues
from ._errors import InvalidType, ScriptError
from ._inspect import STATES, QueueRef
from ._sync import Queue
from ._types import QueueStats
from ._worker_core import EventKind, WorkerEvent

__all__ = [
    "CONTENT_TYPE_LATEST",
    "HANDLER_BUCKETS",
    "QueueCollector",
    "WorkerMetrics",
    "queue_families",
    "render",
]

HANDLER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf"))
"""Handler duration buckets, in seconds: jobs run from milliseconds to minutes."""

DISCOVER_EVERY_S = 30.0
"""How long a list of queues found by SCAN is kept before the next scrape looks again."""


def queue_families(stats: Mapping[QueueRef, QueueStats], *, up: bool, seconds: float) -> list[Metric]:
    """The queue gauges for stats read at scrape time.

    Args:
        stats: Each queue's stats.
        up: Whether Redis answered (when not, ``stats`` is empty).
        seconds: How long reading them took.

    Returns:
        The metric families, ready for a collector to yield.
    """
    jobs = GaugeMetricFamily(
        "delayq_jobs", "Jobs in a queue by state, read from Redis at scrape time.", labels=["queue", "shards", "state"]
    )
    age = GaugeMetricFamily(
        "delayq_oldest_ready_age_seconds",
        "Seconds since the oldest ready job of a queue came due (0 when none is ready): how far behind the workers are.",
        labels=["queue", "shards"],
    )
    paused = GaugeMetricFamily(
        "delayq_queue_paused", "1 while a queue is paused (workers claim nothing).", labels=["queue", "shards"]
    )
    for ref, s in sorted(stats.items()):
        labels = [ref.name, str(ref.shards)]
        for state in STATES:
            jobs.add_metric([*labels, state], getattr(s, state))
        age.add_metric(labels, s.oldest_ready_age)
        paused.add_metric(labels, 1 if s.paused else 0)
    return [
        jobs,
        age,
        paused,
        GaugeMetricFamily("delayq_up", "1 if Redis answered the last scrape for every queue, else 0.", value=1 if up else 0),
        GaugeMetricFamily("delayq_scrape_duration_seconds", "Seconds it took to read the queues from Redis.", value=seconds),
    ]


class QueueCollector(Collector):
    """A collector that reads every queue's stats from Redis when Prometheus scrapes.

    Args:
        client: A sync ``redis.Redis`` or ``redis.cluster.RedisCluster``.
        prefix: The queues' key prefix.
        queues: The queues to report (names, or QueueRef for sharded ones); None = every
            queue found by :func:`delayq.find_queues`, looked up again every 30 s.

    Raises:
        InvalidType, InvalidArgument: A bad client, prefix or queue name (when first used).
    """

    def __init__(self, client: Any, *, prefix: str = "delayq", queues: Iterable[str | QueueRef] | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.queues = None if queues is None else [q if isinstance(q, QueueRef) else QueueRef(q) for q in queues]
        self._found: tuple[float, list[QueueRef]] = (-DISCOVER_EVERY_S, [])
        self._lock = threading.Lock()

    def refs(self) -> list[QueueRef]:
        """The queues to report: as given, or as found (kept for 30 s)."""
        if self.queues is not None:
            return self.queues
        with self._lock:
            found_at, found = self._found
            if time.monotonic() - found_at >= DISCOVER_EVERY_S:
                found = find_queues(self.client, prefix=self.prefix)
                self._found = (time.monotonic(), found)
            return found

    def collect(self) -> Iterator[Metric]:
        """Read the stats (one script call per queue and shard) and yield the gauges."""
        started = time.perf_counter()
        stats: dict[QueueRef, QueueStats] = {}
        up = True
        try:
            for ref in self.refs():
                try:
                    stats[ref] = Queue(self.client, ref.name, prefix=self.prefix, shards=ref.shards).stats()
                except ScriptError:  # this queue's keys hold something else: the others still count
                    up = False
        except (redis.RedisError, RedisClusterException, OSError):
            stats, up = {}, False
        yield from queue_families(stats, up=up, seconds=time.perf_counter() - started)


class _Families(Collector):
    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families()


def render(queues: QueueCollector | Iterable[Metric] | None, *, multiprocess_dir: str | None = None) -> bytes:
    """The text exposition of the queue metrics and the worker metrics, for a ``/metrics`` response.

    Worker metrics come from every process when ``multiprocess_dir`` (default
    ``$PROMETHEUS_MULTIPROC_DIR``) is set, else from this process's default registry.

    Args:
        queues: A QueueCollector, or metric families read already (the dashboard's), or None.
        multiprocess_dir: The directory the workers' prometheus_client writes to.

    Returns:
        The body, of type :data:`CONTENT_TYPE_LATEST`.
    """
    registry = CollectorRegistry(auto_describe=False)
    if isinstance(queues, QueueCollector):
        registry.register(queues)
    elif queues is not None:
        families = list(queues)
        registry.register(_Families(lambda: families))
    folder = multiprocess_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Families(REGISTRY.collect))
    return generate_latest(registry)


_EVENTS: tuple[EventKind, ...] = get_args(EventKind)

_WORKER_METRICS: dict[int, tuple[CollectorRegistry, Counter, Histogram]] = {}
_WORKER_LOCK = threading.Lock()


def _worker_metrics(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    """The worker metrics of a registry, made once (a registry refuses a name twice)."""
    with _WORKER_LOCK:
        made = _WORKER_METRICS.get(id(registry))
        if made is None:
            events = Counter(
                "delayq_worker_events",
                "Job outcomes in workers: processed, failed, retried, dead_lettered, lock_lost, returned.",
                ["queue", "event"],
                registry=registry,
            )
            duration = Histogram(
                "delayq_handler_duration_seconds",
                "How long handlers ran, by outcome (success: acked; failure: raised).",
                ["queue", "outcome"],
                registry=registry,
                buckets=HANDLER_BUCKETS,
            )
            made = _WORKER_METRICS[id(registry)] = (registry, events, duration)
        return made[1], made[2]


class WorkerMetrics:
    """A worker's ``on_event`` hook that counts outcomes and times handlers in Prometheus metrics.

    ``Worker(q, handler, on_event=WorkerMetrics(q))``; in several processes, see the module
    docstring (``PROMETHEUS_MULTIPROC_DIR``).

    Args:
        queue: The queue (its name becomes the ``queue`` label), or the label itself.
        registry: Where the metrics live; default prometheus_client's default registry.

    Raises:
        InvalidType: ``queue`` is neither a queue nor a str.
    """

    def __init__(self, queue: Any, registry: CollectorRegistry | None = None) -> None:
        name = queue if isinstance(queue, str) else getattr(queue, "name", None)
        if not isinstance(name, str):
            raise InvalidType(f"queue must be a delayq queue or a str, got {queue!r}")
        self.queue = name
        self._events, self._duration = _worker_metrics(registry or REGISTRY)
        # children made once: labels() takes a lock and a dict lookup on every call otherwise
        self._counters = {kind: self._events.labels(name, kind) for kind in _EVENTS}
        self._success = self._duration.labels(name, "success")
        self._failure = self._duration.labels(name, "failure")

    def __call__(self, event: WorkerEvent) -> None:
        """Count one event; time the handler of a processed or failed job."""
        self._counters[event.kind].inc()
        if event.kind == "processed":
            self._success.observe(event.seconds)
        elif event.kind == "failed":
            self._failure.observe(event.seconds)
