"""`massive status` with a sim replaying a past session: ingest is not lagging.

Ingest's `last_event_age_s` is its newest event's age, days when the sim plays a past session;
the status discounts the sim's `clock_offset_s` (mesh.health.ingest_lag_s), as the dashboard does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mesh import health
from tests.meshproc import Mesh, wait_for

DAYS_BEHIND_S = 3 * 86_400.0


def test_a_past_sessions_offset_is_not_lag_but_a_stalled_feed_is() -> None:
    sim = {"playing": "past-session", "clock_offset_s": DAYS_BEHIND_S}
    assert health.ingest_lag_s({"last_event_age_s": DAYS_BEHIND_S + 0.4}, sim) == pytest.approx(0.4)
    assert health.ingest_lag_s({"last_event_age_s": DAYS_BEHIND_S + 60}, sim) == pytest.approx(60)
    assert health.ingest_lag_s({"last_event_age_s": 12.0}, {}) == 12.0
    assert health.ingest_lag_s({"last_event_age_s": -1}, sim) is None
    assert health.ingest_lag_s({"last_event_age_s": "soon"}, {"clock_offset_s": "x"}) is None


def _status(mesh: Mesh, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh.cli", "status", *argv],
        env=mesh.env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_massive_status_with_a_sim_replaying_a_past_session_is_not_lagging(
    tmp_path: Path,
) -> None:
    with Mesh(tmp_path / "data") as mesh:
        mesh.point_at_sim()
        mesh.start("bus")
        mesh.wait_up(["bus"], 20)
        mesh.start("sim", *mesh.sim_args("--at", "2026-12-04T10:00", "--symbols", "AAPL,MSFT"))
        mesh.start("ingest", "--subscriptions", "Q.*,T.*")
        mesh.wait_up(["sim", "ingest"], 60)

        def report() -> dict[str, Any]:
            done = _status(mesh, "--json")
            data = json.loads(done.stdout)
            age = data.get("ingest", {}).get("counters", {}).get("last_event_age_s", -1)
            return data if age > 86_400 else {}

        data = wait_for(report, 45, 0.5, "ingest's first played event")
        assert data["sim"]["counters"]["clock_offset_s"] > 86_400
        assert 0 <= data["ingest"]["lag_s"] < health.LAG_WARNING_S
        text = _status(mesh).stdout
        ingest_line = next(line for line in text.splitlines() if line.startswith("ingest"))
        assert "lag=" in ingest_line and "LAGGING" not in ingest_line
        assert "degraded" not in ingest_line
