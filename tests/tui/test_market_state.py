"""The dashboard's market state: a burst of many batches keeps each symbol's latest quote and every trade's volume."""

from __future__ import annotations

from mesh import topics, wire
from mesh.schema import QuoteBatch, TradeBatch
from tui.feed import BOARD_FIELDS
from tui.state import MarketState

T0 = 1_763_820_000_000_000_000


def quotes(start: int, symbols: list[str]) -> QuoteBatch:
    n = len(symbols)
    return QuoteBatch(
        symbol=symbols,
        bid_price=[100.0 + start + i for i in range(n)],
        bid_size=[100] * n,
        ask_price=[100.5 + start + i for i in range(n)],
        ask_size=[300] * n,
        bid_exchange=[1] * n,
        ask_exchange=[2] * n,
        condition=[0] * n,
        tape=[3] * n,
        sequence=list(range(start, start + n)),
        ts_event=[T0 + start + i for i in range(n)],
        ts_recv=[T0] * n,
    )


def test_a_burst_keeps_each_symbols_latest_quote_and_all_the_volume() -> None:
    sent = [quotes(10 * k, ["AAPL", "MSFT", "AAPL"]) for k in range(5)]
    trades = TradeBatch(
        symbol=["AAPL", "MSFT", "AAPL"],
        price=[1.0, 2.0, 3.0],
        size=[100, 200, 300],
        exchange=[1] * 3,
        trade_id=["a", "b", "c"],
        conditions=[[], [], []],
        tape=[3] * 3,
        sequence=[1, 2, 3],
        ts_event=[T0, T0 + 1, T0 + 2],
        ts_recv=[T0] * 3,
    )
    frames = [
        wire.encode(topics.quotes(), batch, src="ingest", seq=i + 1) for i, batch in enumerate(sent)
    ]
    frames += [
        wire.encode(topics.trades(), trades, src="ingest", seq=1),
        wire.encode(topics.trades(), trades, src="ingest", seq=2),
    ]
    burst = wire.decode_many(frames, BOARD_FIELDS)
    assert len(burst.messages) == 2 and len(burst.received) == 7  # one merged message per topic
    market = MarketState()
    for msg in burst.messages:
        (
            market.apply_quote_columns
            if msg.payload.type is QuoteBatch
            else market.apply_trade_columns
        )(msg.payload.columns)
    # the last quote of each symbol in the burst: AAPL is the third row of the fifth batch
    assert market.quotes["AAPL"] == (142.0, 142.5, 100, 300, T0 + 42)
    assert market.quotes["MSFT"] == (141.0, 141.5, 100, 300, T0 + 41)
    assert market.volume == {"AAPL": 800, "MSFT": 400}
    assert market.last["AAPL"] == (3.0, T0 + 2)
    assert market.events == 15 + 6


def test_batches_from_lists_and_from_the_feed_give_the_same_board() -> None:
    batch = quotes(0, ["AAPL", "MSFT", "AAPL"])
    from_lists, from_feed = MarketState(), MarketState()
    from_lists.apply_quotes(batch)
    view = (
        wire.decode_many([wire.encode(topics.quotes(), batch, src="ingest", seq=1)], BOARD_FIELDS)
        .messages[0]
        .payload
    )
    from_feed.apply_quote_columns(view.columns)
    assert from_lists.quotes == from_feed.quotes
    assert [from_lists.row(s) for s in ("AAPL", "MSFT")] == [
        from_feed.row(s) for s in ("AAPL", "MSFT")
    ]
