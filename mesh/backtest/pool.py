"""How a sweep's process pool starts early and hands its workers the dataset already loaded.

A process pool's workers are forked from a server that imported `PRELOAD` once. Two costs used
to come before a sweep's first run on the pool, one after the other: that server's imports
(about a second: numba and the compiled indicators, pyarrow's dataset layer and pandas) and then
every worker reading the dataset for itself (about a second each, the workers slowing each other
down). Now `massive backtest` starts the server as soon as it knows a sweep will run on the pool
(`start`), with the dataset named in `DATASET_VAR`: the server imports, reads the dataset once
(`mesh.backtest.pool_dataset`, on a thread while numba loads), and every worker forked from it
finds it loaded (shared with the server, copy-on-write), while this process reads its own copy
beside it. docs/scaling.md,
"What each part costs", has the figures.

This module is light (naming the modules must not import them); it is also where a run's
dataset key is made, so the server and the tasks key the same dataset the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mesh import parallel
from mesh.datasets import storage

DATASET_VAR = "_MESH_POOL_DATASET"  # [dataset, data_dir, options key] for the fork server
PRELOAD = (
    "mesh.backtest.sweep",
    "pyarrow.dataset",  # reading Parquet pulls in its dataset layer and pandas
    "mesh.backtest.pool_dataset",  # starts reading the dataset in DATASET_VAR, once...
    "mesh.backtest.compiled",  # ...while the indicators' compiled loops load
    "mesh.backtest.pool_dataset_ready",  # last: the reading is over before any worker is forked
)


def options_key(options: Any) -> str:
    """A run's `Options` as sorted JSON: how workers and the fork server key a loaded dataset."""
    return json.dumps(asdict(options), sort_keys=True)


def absolute(data_dir: Path | str) -> Path | str:
    """A data folder as an absolute path; an s3:// location as it is."""
    return data_dir if storage.is_remote(data_dir) else Path(data_dir).absolute()


def uses_pool(workers: int | None, cluster: str | None) -> bool:
    """Several runs with these options go to this machine's process pool (not one process, not
    Dask)."""
    n = workers if workers is not None else os.cpu_count() or 1
    return n > 1 and not cluster and not os.environ.get(parallel.ADDRESS_VAR)


def start(dataset: str, data_dir: Path | str, options: str) -> None:
    """Start the pool's fork server now; it reads `dataset` as a run with `options` (a key from
    `options_key`) reads it. A dataset in S3 is not: its local copy is made by this process."""
    data_dir = absolute(data_dir)
    if storage.is_remote(data_dir):
        parallel.start_pool_early(PRELOAD)
        return
    os.environ[DATASET_VAR] = json.dumps([dataset, str(data_dir), options])
    try:
        parallel.start_pool_early(PRELOAD)
    finally:  # only the server reads it; later processes start without it
        os.environ.pop(DATASET_VAR, None)
