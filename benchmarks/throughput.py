"""Benchmark phase `throughput`, runnable alone (its measurement, table and targets: delayq/bench/throughput.py).

Dequeue+ack items/s, Lua vs round trip, batch 1/10/100/1000, with server µs/item.

    python benchmarks/throughput.py [--url URL] [--full] [--json PATH] [--plot PATH]

takes the options of `delayq bench`, which runs this phase as `delayq bench --only throughput`.
"""

import sys

from delayq.bench import run_script

if __name__ == "__main__":
    sys.exit(run_script("throughput"))
