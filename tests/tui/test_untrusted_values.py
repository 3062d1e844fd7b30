"""The dashboard's own defences, behind the wire's: values the decoder lets through today (or a
future decoder might) are skipped and counted, or drawn, but never end the app."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.config import Config
from mesh.schema import Event, Heartbeat, JobUpdate, QuoteBatch, Stats
from mesh.wire import Message
from tests.tui.test_hostile_bus import MARKUP, SHOWN_MARKUP, T0, alive, show_view
from tui.app import make_app
from tui.state import MarketState, Unusable

U64_MAX = 2**64 - 1


def deep(depth: int) -> dict:  # type: ignore[type-arg]
    value: dict = {}  # type: ignore[type-arg]
    for _ in range(depth):
        value = {"x": value}
    return value


def columns(symbols: list[str], bid: list[float], size: list[int] | None = None) -> dict[str, list]:  # type: ignore[type-arg]
    n = len(symbols)
    return {
        "symbol": symbols,
        "bid_price": bid,
        "ask_price": [b + 0.01 for b in bid],
        "bid_size": size or [1] * n,
        "ask_size": [1] * n,
        "ts_event": [T0] * n,
    }


def test_a_quote_batch_with_unequal_columns_changes_nothing_and_says_why() -> None:
    market = MarketState()
    with pytest.raises(Unusable) as caught:
        market.apply_quote_columns({**columns(["AAPL", "MSFT"], [1.0, 2.0]), "bid_price": [1.0]})
    assert caught.value.kind == "columns" and market.quotes == {} and market.version == 0
    with pytest.raises(Unusable) as caught:
        market.apply_quote_columns(columns(["AAPL"], [1.0], size=[U64_MAX]))
    assert caught.value.kind == "values" and market.quotes == {}


def test_rows_with_impossible_prices_are_dropped_and_counted() -> None:
    market = MarketState()
    market.apply_quote_columns(
        columns(
            ["NAN", "INF", "NEG", "BIG", "AAPL"], [float("nan"), float("inf"), -1.0, 1e308, 271.5]
        )
    )
    assert list(market.quotes) == ["AAPL"] and market.dropped_rows == 4
    market.sample_history()
    assert list(market.history["AAPL"]) == [271.505]


def test_the_feed_counts_a_batch_it_cannot_show_and_carries_on(mesh_config: Config) -> None:
    app = make_app(mesh_config, connect=False)
    told: list[str] = []
    app.feed.on_problem = lambda kind, message: told.append(message)
    bad = QuoteBatch(
        symbol=["AAPL", "MSFT"],
        bid_price=[1.0],
        bid_size=[1, 1],
        ask_price=[1.0, 2.0],
        ask_size=[1, 1],
        bid_exchange=[1, 1],
        ask_exchange=[1, 1],
        condition=[0, 0],
        tape=[1, 1],
        sequence=[1, 2],
        ts_event=[T0, T0],
        ts_recv=[T0, T0],
    )
    header = (1, "evil", 1, T0)
    for _ in range(3):
        app.feed.handle(Message("md.quote.stocks", header, bad))  # type: ignore[arg-type]
    assert app.feed.skipped == {"columns": 3}
    assert len(told) == 1 and "columns of unequal length" in told[0]


async def test_every_view_draws_hostile_service_messages(
    mesh_config: Config, tmp_path: Path
) -> None:
    app = make_app(mesh_config, connect=False)
    async with app.run_test(size=(160, 40)) as pilot:
        mesh = app.mesh
        hostile = {
            "nested": deep(3000),
            "nan": float("nan"),
            "big": U64_MAX,
            "msgs_per_s": "many",
            "events_per_s": [1],
            "malformed": {"body": 2, "x": deep(50)},
            "connection": {"a": 1},
            "last_event_age_s": "late",
            "server_status": MARKUP,
        }
        for name in ("bus", "ingest", "recorder", "fetcher", "backtester", MARKUP[:60]):
            mesh.apply_heartbeat(
                Heartbeat(
                    service=name,
                    instance=MARKUP,
                    pid=-1,
                    state=MARKUP,
                    started=U64_MAX,
                    interval=float("nan"),
                    counters=hostile,
                    message=MARKUP * 100,
                )
            )
        mesh.apply_stats(
            Stats(
                service="recorder",
                stats={
                    **hostile,
                    "rows": deep(100),
                    "wal_depth": "x",
                    "session": MARKUP,
                    "error": MARKUP,
                },
            )
        )
        mesh.apply_quota(
            Stats(
                service="fetcher",
                stats={
                    "rest_calls_minute": "x",
                    "rest_calls_per_minute": float("inf"),
                    "rest_calls_today": U64_MAX,
                    "day_resets": MARKUP,
                    "throttled_24h": deep(10),
                },
            )
        )
        mesh.apply_job(
            JobUpdate(
                job_id="j1",
                kind="fetch",
                state=MARKUP,
                progress=float("nan"),
                message=MARKUP,
                result={"runs": deep(500)},
            )
        )
        mesh.apply_event(Event(service=MARKUP, level="error", message=MARKUP, data=deep(3000)))
        for view_id in ("live", "recording", "history", "mesh", "logs", "backtest", "mesh"):
            await show_view(pilot, app, view_id)
        assert alive(app) and app.draw_errors == {}
        from textual.widgets import DataTable

        table = app.query_one("#services", DataTable)
        assert (
            str(table.get_cell("ingest", table.ordered_columns[5].key)) == "2"
        )  # malformed: the numbers in it, summed
        assert any(SHOWN_MARKUP in str(n.message) for n in app._notifications)
