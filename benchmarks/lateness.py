"""Benchmark: claim time minus due time (server clock), p50/p99/max, at 1,000 jobs/s with two consumers.

Runs alone: `python benchmarks/lateness.py [--url URL] [--full] [--json PATH]` (same options as `delayq bench`).
"""

import sys

from delayq.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "lateness", *sys.argv[1:]]))
