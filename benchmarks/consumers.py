"""Benchmark: total items/s with 1, 2 and 4 consumer processes on one queue.

Runs alone: `python benchmarks/consumers.py [--url URL] [--full] [--json PATH]` (same options as `delayq bench`).
"""

import sys

from delayq.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "consumers", *sys.argv[1:]]))
