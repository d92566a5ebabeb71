"""Benchmark phase `scaling`, runnable alone (its measurement, table and targets: delayq/bench/scaling.py).

Dequeue cost at 10^4/10^5 (10^6 with --full) queued, and with 10^4 locked at the head.

    python benchmarks/scaling.py [--url URL] [--full] [--json PATH] [--plot PATH]

takes the options of `delayq bench`, which runs this phase as `delayq bench --only scaling`.
"""

import sys

from delayq.bench import run_script

if __name__ == "__main__":
    sys.exit(run_script("scaling"))
