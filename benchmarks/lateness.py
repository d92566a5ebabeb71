"""Benchmark phase `lateness`, runnable alone (its measurement, table and targets: delayq/bench/lateness.py).

Jobs with random short delays at a fixed rate: p50/p99/max of claim time - due time.

    python benchmarks/lateness.py [--url URL] [--full] [--json PATH] [--plot PATH]

takes the options of `delayq bench`, which runs this phase as `delayq bench --only lateness`.
"""

import sys

from delayq.bench import run_script

if __name__ == "__main__":
    sys.exit(run_script("lateness"))
