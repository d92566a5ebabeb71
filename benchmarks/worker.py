"""Benchmark phase `worker`, runnable alone (its measurement, table and targets: delayq/bench/worker.py).

Worker and aio.Worker with default settings vs the bare ack_and_dequeue loop; saq, arq and huey if installed.

    python benchmarks/worker.py [--url URL] [--full] [--json PATH] [--plot PATH]

takes the options of `delayq bench`, which runs this phase as `delayq bench --only worker`.
"""

import sys

from delayq.bench import run_script

if __name__ == "__main__":
    sys.exit(run_script("worker"))
