"""Imported last by a sweep's fork server: waits for `mesh.backtest.pool_dataset`'s reading, so
the server forks its workers with the dataset loaded and no other thread running."""

from __future__ import annotations

from mesh.backtest import pool_dataset

if pool_dataset.reading.ident is not None:  # started (a dataset was named)
    pool_dataset.reading.join()
