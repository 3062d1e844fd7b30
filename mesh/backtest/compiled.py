"""Importing this module switches the indicators to their compiled loops in this process.

A sweep's pool workers are forked from a server that imported `PRELOAD` (mesh/backtest/sweep.py)
once; naming this module there loads numba and the loops (about a second) once in that server
instead of in every worker, and each run then spends about 15% less (docs/backtest.md, Sweeps).
Results are the same bits either way (mesh/backtest/indicators.py, `warm_up`).
"""

from __future__ import annotations

from mesh.backtest import indicators

indicators.warm_up()
