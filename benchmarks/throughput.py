"""Benchmark: dequeue+ack items/s, Lua vs the per-item round-trip queue, batch 1/10/100/1000, with server µs per item.

Runs alone: `python benchmarks/throughput.py [--url URL] [--full] [--json PATH]` (same options as `delayq bench`).
"""

import sys

from delayq.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "throughput", *sys.argv[1:]]))
