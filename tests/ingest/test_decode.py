"""Massive frames become our records: names mapped, milliseconds to nanoseconds, bad events counted."""

from __future__ import annotations

import json
from typing import Any

from mesh.ingest.massive import DecodeErrors, decode_frame, normalise

# the examples from Massive's WebSocket spec
RECEIVED = 1_700_000_000_000_000_042  # a receive time
QUOTE = {
    "ev": "Q",
    "sym": "MSFT",
    "bx": 4,
    "bp": 114.125,
    "bs": 100,
    "ax": 7,
    "ap": 114.128,
    "as": 160,
    "c": 0,
    "i": [604],
    "t": 1536036818784,
    "q": 50385480,
    "z": 3,
}
TRADE = {
    "ev": "T",
    "sym": "MSFT",
    "x": 4,
    "i": "12345",
    "z": 3,
    "p": 114.125,
    "s": 100,
    "c": [0, 12],
    "t": 1536036818784,
    "q": 3681328,
}
SECOND = {
    "ev": "A",
    "sym": "SPY",
    "v": 200,
    "av": 8642007,
    "op": 25.66,
    "vw": 25.3981,
    "o": 25.39,
    "c": 25.39,
    "h": 25.39,
    "l": 25.39,
    "a": 25.3714,
    "z": 50,
    "s": 1610144640000,
    "e": 1610144641000,
}
MINUTE = dict(SECOND, ev="AM", s=1610144640000, e=1610144700000)


def frame(*events: dict) -> bytes:  # type: ignore[type-arg]
    return json.dumps(list(events)).encode()


def test_a_quote_is_mapped_field_by_field() -> None:
    out = normalise(decode_frame(frame(QUOTE), DecodeErrors()), ts_recv=RECEIVED)
    assert out.quotes is not None
    (quote,) = out.quotes.rows()
    # sizes arrive in round lots and leave in shares, like REST and flat files
    assert (quote.symbol, quote.bid_price, quote.bid_size, quote.ask_price, quote.ask_size) == (
        "MSFT",
        114.125,
        10_000,
        114.128,
        16_000,
    )
    assert (
        quote.bid_exchange,
        quote.ask_exchange,
        quote.condition,
        quote.tape,
        quote.sequence,
    ) == (4, 7, 0, 3, 50385480)
    assert quote.ts_event == 1536036818784 * 1_000_000 and quote.ts_recv == RECEIVED


def test_a_trade_is_mapped_field_by_field() -> None:
    out = normalise(decode_frame(frame(TRADE), DecodeErrors()), ts_recv=RECEIVED)
    assert out.trades is not None
    (trade,) = out.trades.rows()
    assert (trade.symbol, trade.price, trade.size, trade.exchange, trade.trade_id) == (
        "MSFT",
        114.125,
        100,
        4,
        "12345",
    )
    assert (list(trade.conditions), trade.tape, trade.sequence, trade.ts_event) == (
        [0, 12],
        3,
        3681328,
        1536036818784 * 1_000_000,
    )


def test_second_and_minute_aggregates_become_bars_of_their_interval() -> None:
    out = normalise(decode_frame(frame(SECOND, MINUTE), DecodeErrors()), ts_recv=RECEIVED)
    assert out.bars_1s is not None and out.bars_1m is not None
    assert out.bars_1s.interval == "1s" and out.bars_1m.interval == "1m"
    (bar,) = out.bars_1m.rows()
    assert (bar.symbol, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.vwap) == (
        "SPY",
        25.39,
        25.39,
        25.39,
        25.39,
        200.0,
        25.3981,
    )
    assert bar.ts_start == 1610144640000 * 1_000_000 and bar.ts_end == 1610144700000 * 1_000_000
    assert bar.transactions == 4  # volume 200 / average size 50


def test_a_mixed_frame_splits_by_type_and_keeps_statuses_out_of_the_data() -> None:
    status = {"ev": "status", "status": "success", "message": "subscribed to: Q.MSFT"}
    out = normalise(
        decode_frame(frame(QUOTE, TRADE, status, dict(QUOTE, sym="AAPL")), DecodeErrors()),
        ts_recv=RECEIVED,
    )
    assert out.quotes is not None and out.quotes.symbol == ("MSFT", "AAPL")
    assert out.trades is not None and len(out.trades) == 1
    assert out.statuses == [("success", "subscribed to: Q.MSFT")]
    assert out.events == 3


def test_bad_events_are_counted_by_kind_and_the_good_ones_kept() -> None:
    errors = DecodeErrors()
    missing_field = {k: v for k, v in QUOTE.items() if k != "bp"}
    wrong_type = dict(TRADE, p="a lot")
    unknown = {"ev": "LULD", "sym": "MSFT"}
    events = decode_frame(frame(QUOTE, missing_field, wrong_type, unknown, TRADE), errors)
    assert len(events) == 2
    assert errors.counts == {"bad_event": 2, "unknown_event": 1}
    decode_frame(b"[{not json", errors)
    decode_frame(b'{"ev": "Q"}', errors)  # an object, not an array
    assert errors.counts["json"] == 2
    assert errors.total == 5


def test_frames_waiting_together_go_out_as_one_batch_per_type_with_each_frames_receive_time() -> (
    None
):
    from mesh import wire
    from mesh.config import Config
    from mesh.ingest.service import IngestService

    published: list[tuple[str, Any]] = []

    class Runtime:  # what a subscriber would see: each payload through the bus's encoding and back
        def publish(self, topic: str, payload: object) -> None:
            published.append(
                (topic, wire.decode(wire.encode(topic, payload, src="ingest", seq=1)).payload)
            )

    service = IngestService(Config.load(environ={}))
    first = frame(QUOTE, TRADE, dict(QUOTE, q=50385481))
    second = frame(dict(TRADE, q=3681329), dict(QUOTE, sym="AAPL", q=7))
    r = 1_700_000_000_000_000_000  # receive times: any plausible ones
    service.process_frames(Runtime(), [(r + 100, first), (r + 200, second)])  # type: ignore[arg-type]
    assert [topic for topic, _ in published] == ["md.quote.stocks", "md.trade.stocks"]
    quotes, trades = (payload for _, payload in published)
    assert [(q.symbol, q.sequence, q.ts_recv - r) for q in quotes.rows()] == [
        ("MSFT", 50385480, 100),
        ("MSFT", 50385481, 100),
        ("AAPL", 7, 200),
    ]  # type: ignore[attr-defined]
    assert [(t.sequence, t.ts_recv - r) for t in trades.rows()] == [(3681328, 100), (3681329, 200)]  # type: ignore[attr-defined]
    assert service.meters["frames"].total == 2 and service.meters["events"].total == 5
