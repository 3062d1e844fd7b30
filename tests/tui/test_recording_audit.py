"""The Recording view shows, per session on disk, what its audit.json says: the quality report,
how complete reconciliation found it, and what heals put back."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import DataTable, Static

from mesh.config import Config
from tests.tui.audit_fixtures import write_checked
from tests.tui.test_dashboard import wait_until
from tui.app import make_app


def manifest(session: Path, name: str) -> None:
    session.mkdir(parents=True, exist_ok=True)
    (session / "manifest.json").write_text(
        json.dumps(
            {
                "name": name,
                "state": "stopped",
                "symbols": ["AAPL", "MSFT"],
                "rows": {"quotes": 40000, "trades": 30000},
                "clean": True,
                "runs": [{}],
            }
        )
    )


async def test_each_session_shows_its_quality_reconciliation_and_heals(tmp_path: Path) -> None:
    recordings = tmp_path / "data" / "recordings"
    manifest(recordings / "checked", "checked")
    write_checked(recordings / "checked")
    manifest(recordings / "fresh", "fresh")
    config = Config.load(environ={"MESH_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path)
    app = make_app(config, connect=False, show_clock=False, sample_history=False)
    async with app.run_test(size=(200, 40)) as pilot:
        await pilot.press("2")
        table = app.query_one("#sessions", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2)
        columns = [str(c.label) for c in table.columns.values()]
        shown = {
            str(table.get_row(key)[0]): dict(
                zip(columns, map(str, table.get_row(key)), strict=True)
            )
            for key in table.rows
        }
        assert shown["checked"]["Quality"] == "2 crossed quotes, 1 silence"
        assert shown["checked"]["Reconciled"] == "trades 99.97%, quotes 100%"
        assert shown["checked"]["Healed"] == "healed 41 rows, 3 spans unhealed"
        assert (
            shown["fresh"]["Quality"],
            shown["fresh"]["Reconciled"],
            shown["fresh"]["Healed"],
        ) == (
            "not checked",
            "not reconciled",
            "-",
        )
        table.move_cursor(row=table.get_row_index("checked"))
        details = app.query_one("#manifest", Static)
        await wait_until(pilot, lambda: "trades 99.97%" in str(details.render()))
