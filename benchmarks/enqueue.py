"""Benchmark phase `enqueue`, runnable alone (its measurement, table and targets: delayq/bench/enqueue.py).

One at a time vs enqueue_many (1000 per call), and the round-trip enqueue.

    python benchmarks/enqueue.py [--url URL] [--full] [--json PATH] [--plot PATH]

takes the options of `delayq bench`, which runs this phase as `delayq bench --only enqueue`.
"""

import sys

from delayq.bench import run_script

if __name__ == "__main__":
    sys.exit(run_script("enqueue"))
