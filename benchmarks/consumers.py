"""Benchmark phase `consumers`, runnable alone (its measurement, table and targets: delayq/bench/consumers.py).

1, 2 and 4 consumer processes on one queue.

    python benchmarks/consumers.py [--url URL] [--full] [--json PATH] [--plot PATH]

takes the options of `delayq bench`, which runs this phase as `delayq bench --only consumers`.
"""

import sys

from delayq.bench import run_script

if __name__ == "__main__":
    sys.exit(run_script("consumers"))
