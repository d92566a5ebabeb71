"""Benchmark phase `cluster`, runnable alone (its measurement, table and targets: delayq/bench/cluster.py).

One hash tag vs 3 shards on a local 3-master Redis Cluster (or --cluster-url): time per master.

    python benchmarks/cluster.py [--url URL] [--full] [--json PATH] [--plot PATH]

takes the options of `delayq bench`, which runs this phase as `delayq bench --only cluster`.
"""

import sys

from delayq.bench import run_script

if __name__ == "__main__":
    sys.exit(run_script("cluster"))
