"""Imported last by a sweep's fork server (`mesh.backtest.pool.PRELOAD`): reads the dataset the
command named, so that every worker forked from the server finds it loaded.

Whatever goes wrong here is left for the workers to meet: they read the dataset themselves when
it is not loaded, and report what is wrong with it as a run's error. Nothing may escape: the fork
server would die with it.
"""

from __future__ import annotations

import json
import os


def _load() -> None:
    from mesh.backtest.pool import DATASET_VAR

    # for this server alone: its workers and whatever they start go without it
    named = os.environ.pop(DATASET_VAR, None)
    if not named:
        return
    try:
        dataset, data_dir, options = json.loads(named)
        from mesh.backtest.sweep import _market

        _market(dataset, data_dir, options)
    except Exception:  # noqa: S110 - the workers read it again and report the error
        pass


_load()
