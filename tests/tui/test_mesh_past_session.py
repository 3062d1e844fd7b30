"""The Mesh view with a sim playing a past session: it says which, and its age is not lag."""

from __future__ import annotations

from pathlib import Path

from tests.tui.test_snapshots import beat, fixed_app
from tui.views.mesh import MeshView

DAYS_BEHIND_S = 3 * 86_400.0


async def test_a_past_session_is_named_and_its_offset_is_not_counted_as_lag(tmp_path: Path) -> None:
    app = fixed_app(tmp_path)
    async with app.run_test(size=(160, 30)) as pilot:
        app.mesh.apply_heartbeat(
            beat(
                "sim",
                session="replaying 2026-12-04 from 14:03 ET, market closed",
                playing="past-session",
                clock_offset_s=DAYS_BEHIND_S,
            )
        )
        app.mesh.apply_heartbeat(
            beat("ingest", connection="streaming", last_event_age_s=DAYS_BEHIND_S + 0.4)
        )
        await pilot.press("4")
        summary = app.query_one(MeshView).mesh_summary().plain
        assert "sim: replaying 2026-12-04 from 14:03 ET, market closed" in summary
        assert "lag 0.4s" in summary and "LAGGING" not in summary
