"""A paper session survives `kill -9` of the strategy service, and a slow strategy is reported.

After the kill and a restart the session runs on: its positions and cash are rebuilt from its
own journalled fills (not guessed), `status` says what the restart lost, and `paper compare`
explains the fills that differ by the time the service was down. A strategy slower than its bar
interval is shown as lagging, and every bar is still evaluated.
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


SLOW = '''
import time

import numpy as np


def slow(bars, pause: float = 1.5):
    """Flat, after thinking longer than a 1 s bar lasts."""
    time.sleep(pause)
    return np.zeros(len(bars))
'''


def _session(mesh: Mesh, name: str) -> dict:
    report = mesh.call("strategy", "status", timeout=10)
    return next(s for s in report["sessions"] if s["name"] == name)


def _journal_positions(folder: Path) -> dict[str, float]:
    held: dict[str, float] = {}
    for item in journal_items(folder):
        if isinstance(item, Fill):
            held[item.symbol] = item.position
    return held


def test_kill_9_of_the_strategy_service_rebuilds_positions_and_says_what_was_lost(
    tmp_path: Path,
) -> None:
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "slow.py").write_text(SLOW)
    data = tmp_path / "data"
    with Mesh(data, {"MESH_STRATEGY_PATH": str(strategies)}) as mesh:
        start_paper_mesh(mesh)
        mesh.call(
            "strategy", "start", name="steady", strategy="ma-crossover",
            params={"fast": 3, "slow": 8}, symbols=SYMBOLS.split(","), timeout=10,
        )  # fmt: skip
        wait_for(lambda: _session(mesh, "steady")["fills"] >= 3, 90, 0.5, "fills before the kill")
        mesh.call("strategy", "start", name="slow", strategy="slow.py:slow", symbols=["SPY"])
        wait_for(lambda: _session(mesh, "slow")["state"] == "lagging", 60, 0.5, "slow to lag")
        mesh.call("strategy", "stop", name="slow", timeout=15)

        mesh.kill9("strategy")
        before = _journal_positions(data / "paper" / "steady")
        time.sleep(3)
        mesh.restart("strategy")
        mesh.wait_up(["strategy"], 60)
        steady = _session(mesh, "steady")
        assert steady["state"] == "running"
        assert "restarted" in steady["lost"] and "rebuilt" in steady["lost"]
        assert {s: q for s, q in steady["positions"].items() if q} == {
            s: q for s, q in before.items() if q
        }
        assert _session(mesh, "slow")["state"] == "stopped"  # a stopped session stays stopped
        status = massive(mesh.env, "paper", "status")
        assert "restarted" in status.stdout

        time.sleep(10)
        massive(mesh.env, "paper", "stop", "steady")
        wait_for(lambda: mesh.session().get("state") == "stopped", 60, 0.3, "the recording to stop")
        compare = massive(mesh.env, "paper", "compare", "steady", "--json")
        result = json.loads(compare.stdout)
        assert result["matched"] > 0, result
        if not result["exact"]:
            assert compare.returncode == 1
            assert any("was down from" in line for line in result["explanations"])
