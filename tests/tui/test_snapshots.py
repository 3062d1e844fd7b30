"""What each view looks like, with fixed data: a change in appearance shows up as a diff."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

from mesh.config import Config
from mesh.schema import Heartbeat, Quote, QuoteBatch, Trade, TradeBatch
from tests.tui.audit_fixtures import write_checked
from tui.app import MassiveTui, make_app

NOW = 1_763_820_000_000_000_000  # 2025-11-22 14:00 UTC, 09:00 ET
SYMBOLS = {
    "AAPL": 271.49,
    "MSFT": 472.12,
    "NVDA": 178.88,
    "SPY": 659.03,
    "QQQ": 590.07,
    "TSLA": 391.09,
}
NAMES = {
    "AAPL": "Apple Inc.",
    "MSFT": "Microsoft Corp",
    "NVDA": "Nvidia Corp",
    "SPY": "SPDR S&P 500 ETF Trust",
    "QQQ": "Invesco QQQ Trust, Series 1",
    "TSLA": "Tesla, Inc. Common Stock",
}


def beat(service: str, state: str = "ok", message: str = "", **counters: Any) -> Heartbeat:
    return Heartbeat(
        service=service,
        instance="0000",
        pid=1000,
        state=state,
        started=NOW - 60_000_000_000,
        interval=1.0,
        counters=counters,
        message=message,
    )


def fixed_app(tmp_path: Path) -> MassiveTui:
    config = Config.load(environ={"MESH_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path)
    session = tmp_path / "data/recordings/open-bell"
    session.mkdir(parents=True)
    (session / "manifest.json").write_text(
        json.dumps(
            {
                "name": "open-bell",
                "state": "stopped",
                "symbols": ["AAPL", "MSFT"],
                "rows": {"quotes": 120000, "trades": 45000},
                "first_event": "2025-11-21T14:30:00Z",
                "last_event": "2025-11-21T15:30:00Z",
                "gaps": [],
                "gaps_total": 0,
                "clean": True,
                "bytes": 2400000,
                "runs": [{}],
            }
        )
    )
    write_checked(session)
    app = make_app(config, connect=False, clock=lambda: NOW, show_clock=False, sample_history=False)
    rows = [
        Quote(
            symbol=s,
            bid_price=p,
            bid_size=300,
            ask_price=p + 0.02,
            ask_size=500,
            bid_exchange=11,
            ask_exchange=12,
            ts_event=NOW - i * 1_000_000,
            ts_recv=NOW,
        )
        for i, (s, p) in enumerate(SYMBOLS.items())
    ]
    app.market.apply_quotes(QuoteBatch.from_rows(rows))
    app.market.reference.apply(
        {
            "market": {"state": "pre-market", "server_time": "2025-11-21T09:00:00-05:00"},
            "symbols": {
                s: {"name": NAMES[s], "previous_close": p - 1.0, "previous_day": "2025-11-20"}
                for s, p in SYMBOLS.items()
            },
        },
        0.0,
    )
    app.market.apply_trades(
        TradeBatch.from_rows(
            [
                Trade(
                    symbol=s,
                    price=p + 0.01,
                    size=1000,
                    exchange=4,
                    trade_id="1",
                    ts_event=NOW,
                    ts_recv=NOW,
                )
                for s, p in SYMBOLS.items()
            ]
        )
    )
    app.market.history["AAPL"] = deque([271.0 + (i % 7) * 0.1 for i in range(60)])
    mesh = app.mesh
    for heartbeat in [
        beat("bus", msgs_per_s=2150.0, bytes_per_s=1.2e6, services_up=4),
        beat("sim", connections=1, events_per_s=2000.0),
        beat(
            "ingest",
            connection="streaming",
            events_per_s=1987.0,
            reconnects=1,
            last_event_age_s=0.2,
            gaps=0,
            malformed=0,
            server_status="success: subscribed to: A.*",
        ),
        beat(
            "recorder", session="open-bell", recording="recording", rows=165000, events_per_s=1900.0
        ),
        beat("kdb", state="disabled", message="KDB_TICKERPLANT is not set"),
    ]:
        mesh.apply_heartbeat(heartbeat)
    mesh.services["kdb"].last_seen_ns = NOW - 10_000_000_000  # missed its beats: down
    return app


def test_live_view(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async def select_aapl(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.pause(0.3)
        pilot.app.query_one("#live-view").sample()
        pilot.app.query_one("#live-view").show_reference()
        await pilot.pause(0.1)

    assert snap_compare(fixed_app(tmp_path), terminal_size=(130, 30), run_before=select_aapl)


def test_mesh_view(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(fixed_app(tmp_path), press=["4", "_"], terminal_size=(150, 24))


def test_recording_view(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(fixed_app(tmp_path), press=["2", "_", "_"], terminal_size=(200, 40))


def test_help_screen(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        fixed_app(tmp_path), press=["question_mark", "_", "_", "_"], terminal_size=(110, 40)
    )
