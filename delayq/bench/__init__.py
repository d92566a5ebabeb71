"""``delayq bench``: what one Lua call per batch buys over the per-item round-trip version.

Shipped in the wheel, so that users can benchmark their own Redis with ``delayq bench --url``.
Tooling, not library API: nothing in ``delayq`` imports it but the command line.

    _suite.py      the registry of phases (PHASES), the options, the run and the report
    _harness.py    what phases share: target server, progress, cells, tables, targets, JSON, plot
    _processes.py  consumer processes, for the consumers and cluster phases
    _roundtrip.py  the baseline: the Go original's per-item round-trip queue
    _peers.py      saq, arq and huey draining jobs with their own workers, for the worker phase
    throughput.py, enqueue.py, scaling.py, consumers.py, lateness.py, cluster.py, worker.py:
                   one phase each: its measurement, its table, its targets (and plot panel)
"""

from ._suite import PHASES, add_arguments, report, run, run_script

__all__ = ["PHASES", "add_arguments", "report", "run", "run_script"]
