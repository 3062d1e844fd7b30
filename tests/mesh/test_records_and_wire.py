"""Every record survives the wire; batches behave as columns and rows; bad frames are named."""

from __future__ import annotations

import msgspec
import pytest

from mesh import topics, wire
from mesh.schema import (
    PROTOCOL_VERSION,
    Bar,
    BarBatch,
    Event,
    Gap,
    GapBatch,
    Heartbeat,
    JobUpdate,
    Quote,
    QuoteBatch,
    Stats,
    Trade,
    TradeBatch,
)
from mesh.wire import MalformedFrame

T0 = 1_700_000_000_000_000_000


def quote(i: int, symbol: str = "AAPL") -> Quote:
    return Quote(
        symbol=symbol,
        bid_price=100.0 + i,
        bid_size=100 + i,
        ask_price=100.01 + i,
        ask_size=200,
        bid_exchange=4,
        ask_exchange=7,
        condition=1,
        tape=3,
        sequence=10 + i,
        ts_event=T0 + i,
        ts_recv=T0 + i + 5,
    )


def trade(i: int) -> Trade:
    return Trade(
        symbol="MSFT",
        price=400.5 + i,
        size=10 * (i + 1),
        exchange=11,
        trade_id=f"t{i}",
        conditions=[12, 37][: i % 3],
        tape=3,
        sequence=i,
        ts_event=T0 + i,
        ts_recv=T0 + i + 1,
    )


def bar(i: int) -> Bar:
    return Bar(
        symbol="SPY",
        ts_start=T0 + i * 60_000_000_000,
        ts_end=T0 + (i + 1) * 60_000_000_000,
        open=1.0,
        high=2.0,
        low=0.5,
        close=1.5,
        volume=1234.5,
        vwap=1.25,
        transactions=7,
        ts_recv=T0,
    )


SAMPLES = [
    (topics.quotes(), QuoteBatch.from_rows([quote(i) for i in range(3)])),
    (topics.trades(), TradeBatch.from_rows([trade(i) for i in range(3)])),
    (
        topics.bars("1m"),
        BarBatch.from_rows([bar(i) for i in range(2)], interval="1m", replaces=True),
    ),
    (
        topics.gaps(),
        GapBatch.from_rows(
            [
                Gap(
                    symbol="AAPL",
                    kind="trade",
                    from_sequence=5,
                    to_sequence=9,
                    ts_from=T0,
                    ts_to=T0 + 9,
                    reason="reconnect",
                )
            ]
        ),
    ),
    (
        topics.heartbeat("ingest"),
        Heartbeat(
            service="ingest",
            instance="ab12",
            pid=42,
            state="ok",
            started=T0,
            interval=1.0,
            counters={"events": 5, "connection": "up"},
        ),
    ),
    (topics.stats("recorder"), Stats(service="recorder", stats={"rows": 10, "session": "demo"})),
    (
        topics.job("f1"),
        JobUpdate(job_id="f1", kind="fetch", state="running", progress=0.5, message="day 3 of 6"),
    ),
    (topics.event("ingest"), Event(service="ingest", level="error", message="auth failed")),
]


@pytest.mark.parametrize(("topic", "payload"), SAMPLES, ids=[type(p).__name__ for _, p in SAMPLES])
def test_every_record_type_round_trips_through_the_codec(topic: str, payload: object) -> None:
    frames = wire.encode(topic, payload, src="test", seq=7, ts_send=T0)
    msg = wire.decode(frames)
    assert msg.topic == topic
    assert msg.payload == payload
    assert (
        msg.header.v == PROTOCOL_VERSION
        and msg.header.src == "test"
        and msg.header.seq == 7
        and msg.header.ts_send == T0
    )


def test_a_batch_is_columns_on_the_wire_and_rows_for_the_user() -> None:
    rows = [quote(i, symbol) for i, symbol in enumerate(["AAPL", "MSFT", "NVDA"])]
    batch = QuoteBatch.from_rows(rows)
    assert len(batch) == 3
    assert batch.columns()["symbol"] == ["AAPL", "MSFT", "NVDA"]
    assert list(batch.rows()) == rows
    # the body is a msgpack array [header, [tag, column, column, ...]] that any msgpack reader can use
    body = msgspec.msgpack.decode(wire.encode(topics.quotes(), batch, src="x", seq=1)[1])
    assert body[1][0] == "quotes"
    assert body[1][1] == ["AAPL", "MSFT", "NVDA"]


def test_bar_batch_rows_carry_interval_free_bars() -> None:
    bars = [bar(i) for i in range(3)]
    batch = BarBatch.from_rows(bars, interval="1s")
    assert batch.interval == "1s" and not batch.replaces
    assert list(batch.rows()) == bars


def test_a_hundred_event_quote_batch_is_compact() -> None:
    batch = QuoteBatch.from_rows([quote(i) for i in range(100)])
    size = len(wire.encode(topics.quotes(), batch, src="ingest", seq=1)[1])
    assert size < 100 * 60, f"{size} bytes for 100 quotes"


@pytest.mark.parametrize(
    ("frames", "kind"),
    [
        ([b"md.quote.stocks"], "frames"),
        ([b"a", b"b", b"c"], "frames"),
        (
            [
                b"\xff\xfe",
                msgspec.msgpack.encode([[1, "x", 1, 1], ["event", "s", "info", "m", {}]]),
            ],
            "topic",
        ),
        ([b"md.quote.stocks", b"\xc1garbage"], "body"),
        ([b"md.quote.stocks", msgspec.msgpack.encode({"not": "an envelope"})], "body"),
        (
            [
                b"md.quote.stocks",
                msgspec.msgpack.encode([[99, "x", 1, 1], ["event", "s", "info", "m", {}]]),
            ],
            "version",
        ),
        (
            [b"md.quote.stocks", msgspec.msgpack.encode([[1, "x", 1, 1], ["mystery", 1, 2]])],
            "payload",
        ),
        (
            [b"md.quote.stocks", msgspec.msgpack.encode([[1, "x", 1, 1], ["quotes", ["AAPL"]]])],
            "payload",
        ),
    ],
    ids=[
        "one-frame",
        "three-frames",
        "binary-topic",
        "garbage-msgpack",
        "no-envelope",
        "unknown-version",
        "unknown-type",
        "missing-field",
    ],
)
def test_malformed_frames_are_rejected_with_their_kind(frames: list[bytes], kind: str) -> None:
    with pytest.raises(MalformedFrame) as info:
        wire.decode(frames)
    assert info.value.kind == kind


def test_topics_are_built_in_one_place_and_parse_back() -> None:
    assert topics.quotes() == "md.quote.stocks"
    assert topics.trades() == "md.trade.stocks"
    assert topics.bars("1s") == "md.bar1s.stocks"
    assert topics.bars("1m") == "md.bar1m.stocks"
    assert topics.heartbeat("ingest") == "sys.heartbeat.ingest"
    assert topics.backtest_result("r1") == "bt.result.r1"
    parsed = topics.parse(b"md.trade.stocks")
    assert (parsed.family, parsed.kind, parsed.subject) == ("md", "trade", "stocks")
    assert topics.parse("sys.heartbeat.recorder").subject == "recorder"
    assert topics.parse("job.abc").subject == "abc"


@pytest.mark.parametrize(
    "bad", ["md.quote", "md.depth.stocks", "sys.heartbeat", "x.y", "md..stocks", "md.quote.st ocks"]
)
def test_unknown_or_malformed_topics_are_refused(bad: str) -> None:
    with pytest.raises(topics.TopicError):
        topics.parse(bad)


def test_topic_parts_cannot_smuggle_separators() -> None:
    with pytest.raises(topics.TopicError):
        topics.heartbeat("a.b")
    with pytest.raises(topics.TopicError):
        topics.bars("5m")
