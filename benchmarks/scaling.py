"""Benchmark: dequeue cost vs queue size (10^4, 10^5; 10^6 with --full) and vs 10^4 jobs locked at the head.

Runs alone: `python benchmarks/scaling.py [--url URL] [--full] [--json PATH]` (same options as `delayq bench`).
"""

import sys

from delayq.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "scaling", *sys.argv[1:]]))
