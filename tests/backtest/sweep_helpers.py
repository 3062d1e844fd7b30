"""What the sweep tests share: a few days of 1-minute bars, a user strategy file that can be made
slow (so a test can act while runs are in flight), and reading a sweep's results back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.backtest.helpers import MIN, write_history

SYMBOLS = ("AAA", "BBB", "CCC")

STRATEGY = '''
"""A moving-average cross that pauses when a file named `pause` lies beside it."""

import time
from pathlib import Path

import numpy as np

from mesh.backtest import indicators


def cross(bars, fast: int = 5, slow: int = 30):
    """Long while the fast average is above the slow one.

    fast: bars in the fast average
    slow: bars in the slow average
    """
    pause = Path(__file__).with_name("pause")
    if pause.exists():
        time.sleep(float(pause.read_text() or "0.2"))
    return (indicators.sma(bars.close, fast) > indicators.sma(bars.close, slow)).astype(float)
'''


def write_sweep_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    for key in ("MESH_DATA_DIR", "MASSIVE_API_KEY", "DASK_SCHEDULER_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MESH_DATA_DIR", str(root))
    monkeypatch.chdir(tmp_path)
    write_history(root, "mins", symbols=SYMBOLS, n=2000, step=MIN)
    (tmp_path / "strats").mkdir()
    (tmp_path / "strats" / "slowcross.py").write_text(STRATEGY)
    return root


def user_strategy(root: Path) -> str:
    return f"{root.parent / 'strats' / 'slowcross.py'}:cross"


def pause(root: Path, seconds: float | None) -> None:
    """Make every call of the user strategy sleep `seconds` (None: no pause)."""
    path = root.parent / "strats" / "pause"
    if seconds is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(str(seconds))


def results(root: Path, sweep_id: str) -> pa.Table:
    return pq.read_table(root / "sweeps" / sweep_id / "results.parquet")


def spec(root: Path, sweep_id: str) -> dict[str, Any]:
    return json.loads((root / "sweeps" / sweep_id / "sweep.json").read_text())


def sweep_ids(root: Path) -> list[str]:
    root = root / "sweeps"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent:
                found.append(child)
                frontier.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def pool_workers() -> list[int]:
    """This process's process-pool workers: the children of its multiprocessing fork server."""
    servers = [p for p in descendants(os.getpid()) if "forkserver" in cmdline(p)]
    return [w for s in servers for w in descendants(s)]
