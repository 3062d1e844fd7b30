"""End to end: a session recorded from the sim's feed (ingest -> bus -> recorder) reconciles complete.

The mesh runs as real processes; the sim plays a past day from 09:30 ET at 20x, ingest subscribes
to every trade and quote of three symbols, the recorder records for a few seconds. `reconcile`
then finds every row Massive has for the span the session recorded, over the played sim's REST,
and again from the day's flat files of a sim whose clock is today (same history, the day
completed), and both methods report the same counts.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mesh.config import Config
from mesh.datasets import audit
from mesh.datasets.audit import Method
from mesh.fetcher.reconcile import reconcile
from mesh.sim.server import SimServer
from tests.fetcher.conftest import config_of, sim_env
from tests.meshproc import Mesh, wait_for

NAME = "played"
SYMBOLS = ("AAPL", "MSFT", "SPY")
DAY = "2026-12-04"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_session_recorded_from_the_feed_reconciles_complete_by_rest_and_by_flat_file(
    sim: SimServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with Mesh(data) as mesh:
        mesh.point_at_sim()
        mesh.start("bus")
        mesh.wait_up(["bus"], 20)
        mesh.start(
            "sim",
            *mesh.sim_args("--at", f"{DAY}T09:30", "--speed", "20", "--symbols", ",".join(SYMBOLS)),
        )
        mesh.start("recorder")
        mesh.wait_up(["sim", "recorder"], 60)
        mesh.call("recorder", "start", name=NAME)
        mesh.start("ingest", "--subscriptions", "Q.*,T.*")
        wait_for(
            lambda: (mesh.call("recorder", "status", timeout=2).get("session") or {}).get("rows"),
            45,
            0.3,
            "rows in the recording",
        )
        time.sleep(5)
        mesh.call("ingest", "unsubscribe", params="Q.*,T.*", timeout=15)
        time.sleep(2)
        mesh.call("recorder", "stop", timeout=15)
        wait_for(
            lambda: (
                (mesh.call("recorder", "status", timeout=2).get("session") or {}).get("state")
                == "stopped"
            ),
            60,
            0.3,
            "the recording to stop",
        )
        played = Config.load(environ=mesh.env, cwd=tmp_path)
        by_rest = reconcile(NAME, played, method="rest").reconciliation
    completed = config_of(sim_env(sim, data), tmp_path)
    by_file = reconcile(NAME, completed, method="flat_file").reconciliation
    assert by_rest is not None and by_file is not None
    assert by_rest.method is Method.REST and by_file.method is Method.FLAT_FILE
    for found in (by_rest, by_file):
        assert {(r.symbol, r.kind.value) for r in found.results} == {
            (s, k) for s in SYMBOLS for k in ("trades", "quotes")
        }
        assert found.complete, [r for r in found.results if not r.complete]
        assert sum(r.matched for r in found.results) > 100
        assert all(r.extra == 0 for r in found.results)
    assert [(r.symbol, r.kind, r.recorded, r.reference, r.matched) for r in by_rest.results] == [
        (r.symbol, r.kind, r.recorded, r.reference, r.matched) for r in by_file.results
    ]
    assert audit.read_audit(data / "recordings" / NAME).reconciliation == by_file
