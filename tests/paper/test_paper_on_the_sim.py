"""Paper trading on the simulator, as real processes: the live fills are the backtest's fills.

The sim plays 2026-12-04 from 10:00 ET at 10x. A `ma-crossover` session with short windows on
1 s bars trades AAPL, MSFT and SPY for about half a minute (five market minutes), beside a
session whose strategy raises after a few bars. Then `massive paper compare` backtests the
recording the session started and must find every live fill (same times, sides, quantities,
prices) and the same P&L; the raising session is failed with its traceback, and the other
went on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mesh.paper.session import journal_items
from mesh.schema import Fill
from tests.meshproc import Mesh, massive, wait_for
from tests.paper.meshes import SYMBOLS, start_paper_mesh

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TRADE_S = 30.0

BOOM = '''
import numpy as np


def boom(bars, after: int = 5):
    """Raises once it has seen `after` bars."""
    if len(bars) > after:
        raise RuntimeError("the strategy broke on purpose")
    return np.zeros(len(bars))
'''


def _session(mesh: Mesh, name: str) -> dict:
    report = mesh.call("strategy", "status", timeout=5)
    return next(s for s in report["sessions"] if s["name"] == name)


def test_a_clean_paper_session_equals_the_backtest_of_its_recording(tmp_path: Path) -> None:
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "boom.py").write_text(BOOM)
    with Mesh(tmp_path / "data", {"MESH_STRATEGY_PATH": str(strategies)}) as mesh:
        start_paper_mesh(mesh)
        start = massive(
            mesh.env, "paper", "start", "clean", "--strategy", "ma-crossover",
            "--param", "fast=3", "--param", "slow=8", "--symbols", SYMBOLS, "--interval", "1s",
            "--commission-bps", "1",
        )  # fmt: skip
        assert start.returncode == 0, start.stderr
        assert "clean: running" in start.stdout
        # no symbols given: every symbol quoted on the bus so far
        boom = mesh.call("strategy", "start", name="boom", strategy="boom.py:boom", timeout=10)
        assert boom["symbols"] and set(boom["symbols"]) <= set(SYMBOLS.split(","))
        assert boom["recording"] == "paper-clean"  # the recording already running is shared
        wait_for(lambda: _session(mesh, "boom")["state"] == "failed", 60, 0.5, "boom to fail")
        failed = _session(mesh, "boom")
        assert "the strategy broke on purpose" in failed["error"]
        time.sleep(TRADE_S)
        clean = _session(mesh, "clean")
        assert clean["state"] == "running" and clean["fills"] > 0, clean
        status = massive(mesh.env, "paper", "status")
        assert "boom: failed" in status.stdout and status.returncode == 1
        stop = massive(mesh.env, "paper", "stop", "clean", "--json")
        assert stop.returncode == 0, stop.stderr
        wait_for(lambda: mesh.session().get("state") == "stopped", 60, 0.3, "the recording to stop")
        assert all(mesh.alive().values()), {n: p.output()[-2000:] for n, p in mesh.procs.items()}

        compare = massive(mesh.env, "paper", "compare", "clean", "--json")
        assert compare.returncode == 0, compare.stdout + compare.stderr
        result = json.loads(compare.stdout)
        live = [
            f for f in journal_items(tmp_path / "data" / "paper" / "clean") if isinstance(f, Fill)
        ]
        assert result["exact"] and result["matched"] == len(live) == result["backtest_fills"] >= 4
        assert result["live_only"] == result["backtest_only"] == []
        assert abs(result["pnl_difference"]) < 1e-6
        human = massive(mesh.env, "paper", "compare", "clean")
        assert (
            f"{len(live)} of {len(live)} live fills" in human.stdout and "(exact)" in human.stdout
        )
