"""Benchmark: enqueue items/s: one at a time, enqueue_many (1000 per call), and the round-trip enqueue.

Runs alone: `python benchmarks/enqueue.py [--url URL] [--full] [--json PATH]` (same options as `delayq bench`).
"""

import sys

from delayq.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "enqueue", *sys.argv[1:]]))
