"""Phase ``cluster``: one queue on one hash tag vs sharded over 3 tags, on a Redis Cluster.

A local 3-master cluster (or --cluster-url / $DELAYQ_CLUSTER_URL); two consumer
processes, batch 100 ack+claim; items/s and each master's evalsha time per item,
from which the throughput with a core per master is predicted.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import redis
import redis.cluster

from .. import Queue
from .._cli_base import check_url
from .._server import RedisCluster, ServerUnavailable
from ._harness import PAYLOAD, Cell, Phase, Progress, Result, Target, median, name_for, table
from ._processes import run_consumers

__all__ = ["PHASE"]


def measure(target: Target, opts: argparse.Namespace, progress: Progress) -> Result:
    """Single tag vs 3 shards on a cluster: items/s with 2 consumers, and each master's evalsha time."""
    if target.fake:
        return {"skipped": "needs redis-server and redis-cli for a local cluster"}
    url = opts.cluster_url or os.environ.get("DELAYQ_CLUSTER_URL")
    local = None
    if not url:
        try:
            local = RedisCluster(masters=3, replicas=0).start()
        except ServerUnavailable as exc:
            return {"skipped": str(exc)}
        url = local.url
    n, procs, shards = (200_000 if opts.full else 60_000), 2, 3
    cells: dict[str, Cell] = {}
    per_node: dict[str, list[list[float]]] = {}
    try:
        client = redis.cluster.RedisCluster.from_url(url)
        nodes = client.get_primaries()  # type: ignore[no-untyped-call]

        def node_usec() -> list[float]:
            return [
                float(client.info("commandstats", target_nodes=node).get("cmdstat_evalsha", {}).get("usec", 0)) for node in nodes
            ]

        with progress.phase("cluster", opts.rounds * 2) as step:
            for _ in range(opts.rounds):
                for label, count in (("single tag", 1), (f"{shards} shards", shards)):
                    q = Queue(client, name_for("cluster"), shards=count)
                    q.enqueue_many([PAYLOAD] * n)
                    before = node_usec()
                    elapsed = run_consumers(url, q, procs, n, cluster=True, shards=count)
                    used = [a - b for a, b in zip(node_usec(), before, strict=True)]
                    cells.setdefault(label, Cell()).add(n, elapsed, sum(used))
                    # busiest master first: a fresh queue name each round lands on a different master
                    per_node.setdefault(label, []).append(sorted((u / n for u in used), reverse=True))
                    step(label)
        client.close()
    finally:
        if local is not None:
            local.stop()
    result: dict[str, Any] = {"masters": len(nodes), "consumers": procs, "jobs": n, "local": local is not None}
    for label, cell in cells.items():
        nodes_us = [median([run[i] for run in per_node[label]]) for i in range(len(nodes))]
        busiest = max(nodes_us)
        result[label] = {
            **cell.summary(),
            "node_usec_per_item": nodes_us,
            # one core per node: the busiest node bounds the queue at 1 s / its µs per item
            "predicted_items_per_s_one_core_per_node": 1e6 / busiest if busiest else None,
        }
    return result


def report(result: Result) -> str:
    cl = result
    rows = [
        [
            label,
            cl[label]["items_per_s"],
            " / ".join(f"{u:.2f}" for u in cl[label]["node_usec_per_item"]),
            cl[label]["predicted_items_per_s_one_core_per_node"],
        ]
        for label in cl
        if isinstance(cl[label], dict)
    ]
    return table(
        f"cluster: {cl['masters']} masters, {cl['consumers']} consumer processes, batch 100 ack+claim, "
        f"{cl['jobs']:,} jobs (every process shares this machine's cores)",
        ["queue", "items/s", "server µs/item per master, busiest first", "predicted items/s, 1 core per master"],
        rows,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster-url", help="a Redis Cluster node for the cluster phase (default $DELAYQ_CLUSTER_URL, else a local one)"
    )


def check_options(opts: argparse.Namespace) -> None:
    if opts.cluster_url:
        check_url(opts.cluster_url)


PHASE = Phase(
    name="cluster",
    summary="one hash tag vs 3 shards on a local 3-master Redis Cluster (or --cluster-url): time per master",
    measure=measure,
    report=report,
    add_arguments=add_arguments,
    check_options=check_options,
)
