"""Imported by a sweep's fork server (`mesh.backtest.pool.PRELOAD`): reads the dataset the command
named, so that every worker forked from the server finds it loaded.

The reading runs on a thread (Parquet decoding and numpy release the interpreter) while the
server goes on importing numba and the compiled indicators; `mesh.backtest.pool_dataset_ready`,
imported last, waits for it, so no thread is left running when the server forks a worker.
Whatever goes wrong here is left for the workers to meet: they read the dataset themselves when
it is not loaded, and report what is wrong with it as a run's error. Nothing may escape: the fork
server would die with it.
"""

from __future__ import annotations

import json
import os
import threading


def _load(named: str) -> None:
    try:
        dataset, data_dir, options = json.loads(named)
        from mesh.backtest.sweep import _market

        _market(dataset, data_dir, options)
    except Exception:  # noqa: S110 - the workers read it again and report the error
        pass


def _named() -> str | None:
    from mesh.backtest.pool import DATASET_VAR

    # for this server alone: its workers and whatever they start go without it (taken here,
    # before the reading thread starts: the environment is not changed while threads run)
    return os.environ.pop(DATASET_VAR, None)


_dataset = _named()
reading = threading.Thread(target=_load, args=(_dataset,), name="pool-dataset", daemon=True)
if _dataset:
    reading.start()
