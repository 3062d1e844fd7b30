"""Garbage-collector settings for the mesh's long-running processes (every service and the dashboard).

They allocate a container or two per event (decoded structs in lists, column tuples), nearly all
freed at once by reference counting. At CPython's default (a young-generation collection every
700 allocations) the cyclic collector ran hundreds of times a second under a firehose and cost
ingest about 15% of its throughput. It is still needed for the rare reference cycle, only less
often; and what start-up allocated (modules, configuration) is frozen so that full collections
never scan it again (the approach of `gc.freeze`'s documentation).
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)  # young collections every 50,000 container allocations


def tune_gc() -> None:
    """Collect once, freeze what survived start-up, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
