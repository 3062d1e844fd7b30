"""The fetcher's `reference` answer as the dashboard reads it: checked field by field, so an answer
of another shape is one error line, and an impossible previous close is not used."""

from __future__ import annotations

from tui.state import MarketState
from tui.views.live import reference_line


def test_an_answer_of_another_shape_is_one_error_and_changes_nothing() -> None:
    market = MarketState()
    market.reference.apply({"symbols": {"AAPL": {"previous_close": 190.0}}}, 0.0)
    market.reference.apply({"symbols": ["not", "a", "map"]}, 10.0)
    assert market.reference.previous_close == {"AAPL": 190.0}
    assert "not reference data" in market.reference.error
    assert market.reference.next_at == 40.0  # asked again later, not at once
    assert "reference data unavailable" in reference_line(market.reference).plain


def test_an_impossible_previous_close_is_not_used_and_a_name_is_drawn_as_sent() -> None:
    market = MarketState()
    market.reference.apply(
        {
            "symbols": {
                "AAPL": {"name": "[b]Apple[/b]\x1b[2J", "previous_close": float("nan")},
                "MSFT": {"previous_close": -3.0},
                "NVDA": {"previous_close": 1e12},
            },
            "market": {"state": "[red]open", "server_time": "not a time"},
        },
        0.0,
    )
    assert market.reference.previous_close == {}
    assert market.row("AAPL").change is None
    assert market.reference.names["AAPL"] == "[b]Apple[/b]\x1b[2J"
    line = reference_line(market.reference).plain
    assert "market [red]open" in line


def test_a_refused_quota_waits_as_long_as_it_says() -> None:
    market = MarketState()
    market.reference.asking({"AAPL"}, 100.0)
    market.reference.apply(
        {"pending": ["AAPL"], "refused": "REST per-minute limit reached", "retry_after_s": 42.0},
        100.0,
    )
    assert not market.reference.due({"AAPL"}, 141.0)
    assert market.reference.due({"AAPL"}, 142.0)
    assert "REST quota refused names/previous closes: REST per-minute limit reached" in (
        reference_line(market.reference).plain
    )
