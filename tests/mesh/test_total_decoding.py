"""Any bytes become a message or a counted rejection, never an exception that escapes a loop."""

from __future__ import annotations

import math
import random

import msgspec
import numpy as np
import pytest

from mesh import bounds, control, topics, wire
from mesh.client import SubscriberStats
from mesh.schema import Event, GapBatch, Heartbeat, QuoteBatch, TradeBatch
from mesh.wire import MalformedFrame

T0 = 1_700_000_000_000_000_000
enc = msgspec.msgpack.encode
U64_MAX = 2**64 - 1


@pytest.fixture(autouse=True)
def columnar_reader_for_every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """`columnar=True` here means the columnar reader itself, however small the message (by
    default a small batch takes the typed decode, which `columnar=False` covers already)."""
    monkeypatch.setattr(wire, "COLUMNAR_MIN_BYTES", 0)


def header(seq: int = 1, src: str = "rogue") -> list[object]:
    return [1, src, seq, T0]


def quote_columns(n: int = 3) -> list[object]:
    return [
        "quotes",
        ["AAPL"] * n,
        [100.0] * n,
        [1] * n,
        [100.5] * n,
        [2] * n,
        [4] * n,
        [7] * n,
        [0] * n,
        [3] * n,
        list(range(1, n + 1)),
        [T0 + i for i in range(n)],
        [T0] * n,
    ]


def frames(
    payload: object, *, topic: str = "md.quote.stocks", head: list[object] | None = None
) -> list[bytes]:
    return [topic.encode(), enc([head or header(), payload])]


def deep_bytes(levels: int) -> bytes:
    return b"\x91" * levels + b"\x01"  # [[[...1...]]], written by hand: no encoder goes that deep


def rejection(frames_: list[bytes], *, columnar: bool = False) -> str:
    with pytest.raises(MalformedFrame) as caught:
        wire.decode(frames_, columnar=columnar)
    return caught.value.kind


@pytest.mark.parametrize("columnar", [False, True], ids=["typed", "columnar"])
def test_a_body_nested_two_thousand_levels_deep_is_a_depth_rejection(columnar: bool) -> None:
    body = b"\x92" + enc(header()) + deep_bytes(2000)
    assert rejection([b"md.quote.stocks", body], columnar=columnar) in ("depth", "payload")
    beat = (
        b"\x92"
        + enc(header())
        + b"\x99"
        + enc("heartbeat")
        + enc("x")
        + enc("i")
        + enc(1)
        + enc("ok")
        + enc(T0)
        + enc(1.0)
        + b"\x81"
        + enc("c")
        + deep_bytes(2000)
        + enc("")
    )
    assert rejection([b"sys.heartbeat.x", beat], columnar=columnar) == "depth"


def test_nesting_the_decoder_can_read_is_still_bounded() -> None:
    counters: object = 1
    for _ in range(100):
        counters = [counters]
    beat = ["heartbeat", "x", "i", 1, "ok", T0, 1.0, {"c": counters}, ""]
    assert rejection(frames(beat, topic="sys.heartbeat.x")) == "depth"


@pytest.mark.parametrize("columnar", [False, True], ids=["typed", "columnar"])
def test_unequal_columns_are_rejected_whole(columnar: bool) -> None:
    payload = quote_columns(3)
    payload[2] = [100.0]  # bid_price has one value for three rows
    assert rejection(frames(payload), columnar=columnar) == "columns"
    gaps = ["gaps", ["A", "B"], ["quote"], [1, 2], [3, 4], [T0, T0], [T0, T0], ["r", "r"]]
    assert rejection(frames(gaps, topic="md.gap.stocks"), columnar=columnar) == "columns"


@pytest.mark.parametrize("price", [math.nan, math.inf, -math.inf, -1e308, -0.01, 1e12])
@pytest.mark.parametrize("columnar", [False, True], ids=["typed", "columnar"])
def test_prices_that_are_not_finite_and_positive_are_rejected(price: float, columnar: bool) -> None:
    payload = quote_columns(3)
    payload[4] = [100.5, price, 100.5]  # ask_price
    assert rejection(frames(payload), columnar=columnar) == "range"
    trade = ["trades", ["A"], [price], [100], [4], ["1"], [[]], [3], [1], [T0], [T0]]
    assert rejection(frames(trade, topic="md.trade.stocks"), columnar=columnar) == "range"


@pytest.mark.parametrize(
    ("column", "value"),
    [(3, -1), (10, -5), (10, U64_MAX), (11, 5), (11, 2**63 - 1), (12, -1), (5, 2**63)],
    ids=[
        "negative-size",
        "negative-sequence",
        "u64-sequence",
        "ts-1970",
        "ts-far-future",
        "negative-ts-recv",
        "exchange-past-int64",
    ],
)
@pytest.mark.parametrize("columnar", [False, True], ids=["typed", "columnar"])
def test_integers_out_of_their_range_are_rejected(column: int, value: int, columnar: bool) -> None:
    payload = quote_columns(2)
    payload[column] = [payload[column][0], value]  # type: ignore[index]
    assert rejection(frames(payload), columnar=columnar) in ("range", "payload")


def test_a_header_sequence_of_two_to_the_64_minus_one_is_a_body_rejection() -> None:
    assert rejection(frames(quote_columns(), head=header(seq=U64_MAX))) == "body"
    gaps = ["gaps", ["A"], ["quote"], [1], [U64_MAX], [T0], [T0], ["r"]]
    assert rejection(frames(gaps, topic="md.gap.stocks")) == "range"


def test_a_million_row_batch_is_a_size_rejection() -> None:
    n = 1_000_000
    batch = QuoteBatch(
        symbol=["X"] * n,
        bid_price=[1.0] * n,
        bid_size=[1] * n,
        ask_price=[1.0] * n,
        ask_size=[1] * n,
        bid_exchange=[1] * n,
        ask_exchange=[1] * n,
        condition=[0] * n,
        tape=[1] * n,
        sequence=[1] * n,
        ts_event=[T0] * n,
        ts_recv=[T0] * n,
    )
    assert (
        rejection(wire.encode(topics.quotes(), batch, src="rogue", seq=1), columnar=True) == "size"
    )


def test_a_good_message_in_a_burst_survives_its_bad_neighbours() -> None:
    good = frames(quote_columns(3), head=header(1))
    bad = quote_columns(3)
    bad[2] = [math.nan, 1.0, 1.0]
    burst = wire.decode_many(
        [good, frames(bad, head=header(2)), frames(quote_columns(2), head=header(3))]
    )
    assert [len(m.payload) for m in burst.messages] == [3, 2]  # both good batches, in order
    assert [e.kind for e in burst.errors] == ["range"]
    assert burst.errors[0].header is not None and burst.errors[0].header.seq == 2


def test_a_malformed_message_is_not_also_counted_as_missing() -> None:
    stats = SubscriberStats()
    good1 = wire.decode(frames(quote_columns(), head=header(1)))
    stats.observe(good1)
    bad = quote_columns()
    bad[2] = [1.0]
    with pytest.raises(MalformedFrame) as caught:
        wire.decode(frames(bad, head=header(2)))
    stats.reject(caught.value)
    assert stats.observe(wire.decode(frames(quote_columns(), head=header(3)))) == 0
    assert (stats.gaps, stats.malformed_total, stats.malformed["columns"]) == (0, 1, 1)


def test_sources_jumping_to_the_top_of_the_sequence_range_leave_a_heartbeat_encodable() -> None:
    stats = SubscriberStats()
    for src in ("a", "b", "c"):
        stats.observe(wire.decode(frames(quote_columns(), head=header(1, src))))
        stats.observe(wire.decode(frames(quote_columns(), head=header(2**63 - 1, src))))
    assert stats.gaps == 0 and stats.jumps == 3
    beat = Heartbeat(
        service="x",
        instance="i",
        pid=1,
        state="ok",
        started=T0,
        interval=1.0,
        counters=bounds.counters({**stats.as_counters(), "huge": 2**70, "odd": object()}),
    )
    assert (
        wire.decode(wire.encode(topics.heartbeat("x"), beat, src="x", seq=1)).payload.counters[
            "huge"
        ]
        == 2**63 - 1
    )


def test_event_text_is_kept_as_text() -> None:
    event = Event(service="x", level="info", message="[/bold] [red]not markup[/red]")
    assert (
        wire.decode(wire.encode(topics.event("x"), event, src="x", seq=1)).payload.message
        == event.message
    )


def test_control_bodies_are_decoded_totally() -> None:
    deep = (
        b"\x83"
        + enc("id")
        + enc("x")
        + enc("cmd")
        + enc("ping")
        + enc("args")
        + b"\x81"
        + enc("a")
        + deep_bytes(2000)
    )
    for body, kind in [
        (deep, "depth"),
        (b"\xc1", "body"),
        (enc({"id": "x", "cmd": "ping", "args": {"n": U64_MAX}}), "range"),
        (b"\x00" * (bounds.MAX_BODY_BYTES + 1), "size"),
    ]:
        with pytest.raises(control.BadBody) as caught:
            control.decode_request(body)
        assert caught.value.kind == kind
    reply = (
        b"\x84"
        + enc("id")
        + enc("x")
        + enc("ok")
        + enc(True)
        + enc("result")
        + deep_bytes(2000)
        + enc("error")
        + enc("")
    )
    with pytest.raises(control.BadBody):
        control.decode_reply(reply)


def _mutations(rng: random.Random) -> list[bytes]:
    """Valid bodies, then each one changed in a structure-aware way or byte-wise."""
    seeds: list[object] = [
        quote_columns(4),
        [
            "trades",
            ["A", "B"],
            [1.5, 2.5],
            [100, 200],
            [4, 5],
            ["1", "2"],
            [[], [12]],
            [3, 3],
            [1, 2],
            [T0, T0],
            [T0, T0],
        ],
        [
            "bars",
            "1m",
            ["A"],
            [T0],
            [T0 + 60],
            [1.0],
            [2.0],
            [0.5],
            [1.5],
            [10.0],
            [1.2],
            [3],
            [T0],
            False,
        ],
        ["gaps", ["A"], ["quote"], [1], [5], [T0], [T0], ["reconnect"]],
        ["heartbeat", "x", "i", 1, "ok", T0, 1.0, {"a": 1}, ""],
        ["event", "x", "info", "hello", {"k": [1, 2]}],
        ["job", "j1", "fetch", "running", 0.5, "", {}],
    ]
    values: list[object] = [
        None,
        True,
        -1,
        0,
        2**63,
        U64_MAX,
        -(2**63) - 1 + 1,
        math.nan,
        math.inf,
        -1e308,
        "",
        "x" * 70_000,
        b"\x00",
        [],
        {},
        [[[[]]]],
        {"a": {"b": {}}},
    ]
    out = []
    for _ in range(3000):
        payload = msgspec.msgpack.decode(enc(rng.choice(seeds)))
        action = rng.randrange(5)
        if action == 0:  # replace a field
            payload[rng.randrange(len(payload))] = rng.choice(values)
        elif action == 1:  # change one element of a column
            column = rng.choice([c for c in payload if isinstance(c, list)] or [payload])
            if column:
                column[rng.randrange(len(column))] = rng.choice(values)
        elif action == 2:  # lengthen or shorten a column
            column = rng.choice([c for c in payload if isinstance(c, list)] or [payload])
            column.extend(
                column[:1] * rng.randrange(1, 3)
            ) if rng.random() < 0.5 else column.clear()
        elif action == 3:  # drop or add trailing fields
            payload = (
                payload[: rng.randrange(1, len(payload))]
                if rng.random() < 0.5
                else payload + [rng.choice(values)]
            )
        body = enc([header(rng.choice([1, 2, U64_MAX])), payload])
        if action == 4:  # damage the bytes
            data = bytearray(body)
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            body = bytes(data[: rng.randrange(1, len(data) + 1)])
        out.append(body)
    return out


def test_three_thousand_mutated_messages_each_decode_or_are_rejected_by_kind() -> None:
    rng = random.Random(14)
    bodies = _mutations(rng)
    kinds: dict[str, int] = {}
    decoded = 0
    for body in bodies:
        for columnar in (False, True):
            try:
                message = wire.decode([b"md.quote.stocks", body], columnar=columnar)
            except MalformedFrame as exc:
                assert exc.kind in wire.MALFORMED_KINDS
                kinds[exc.kind] = kinds.get(exc.kind, 0) + 1
                continue
            decoded += 1
            payload = message.payload
            if isinstance(payload, QuoteBatch | TradeBatch | GapBatch):
                lengths = {len(column) for column in payload.columns().values()}
                assert len(lengths) <= 1
            if isinstance(payload, QuoteBatch):
                assert np.isfinite(np.asarray(payload.bid_price, dtype=float)).all()
    burst = wire.decode_many([[b"md.quote.stocks", body] for body in bodies])
    assert len(burst.errors) + sum(1 for _ in burst.received) == len(bodies)
    assert decoded > 100 and {"range", "columns", "payload", "body"} <= kinds.keys()


def test_a_batch_over_the_row_limit_is_rejected_in_a_burst_too() -> None:
    n = bounds.MAX_ROWS + 1
    big = QuoteBatch(
        symbol=["X"] * n,
        bid_price=[1.0] * n,
        bid_size=[1] * n,
        ask_price=[1.0] * n,
        ask_size=[1] * n,
        bid_exchange=[1] * n,
        ask_exchange=[1] * n,
        condition=[0] * n,
        tape=[1] * n,
        sequence=[1] * n,
        ts_event=[T0] * n,
        ts_recv=[T0] * n,
    )
    burst = wire.decode_many(
        [
            frames(quote_columns(2), head=header(1)),
            wire.encode(topics.quotes(), big, src="rogue", seq=2),
        ]
    )
    assert [len(m.payload) for m in burst.messages] == [2]
    assert [e.kind for e in burst.errors] == ["size"]


@pytest.mark.parametrize(
    "value", [2**63, U64_MAX, 2.0**63, 1e300], ids=["2^63", "u64-max", "2^63-float", "1e300"]
)
@pytest.mark.parametrize("column", [9, 10], ids=["volume", "vwap"])
@pytest.mark.parametrize("reader", ["typed", "small-columnar", "columnar"])
def test_a_bar_volume_past_int64_is_a_range_rejection_whichever_reader_takes_it(
    value: float, column: int, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload: list[object] = [
        "bars",
        "1s",
        ["A", "B"],
        [T0, T0],
        [T0 + 10**9, T0 + 10**9],
        [1.0, 1.0],
        [2.0, 2.0],
        [0.5, 0.5],
        [1.5, 1.5],
        [100.0, 100.0],
        [1.2, 1.2],
        [3, 3],
        [T0, T0],
        False,
    ]
    payload[column] = [100.0, value]
    if reader == "small-columnar":  # a small body: the typed decode, then arrays
        monkeypatch.setattr(wire, "COLUMNAR_MIN_BYTES", 8192)
    bar_frames = frames(payload, topic="md.bar1s.stocks")
    assert rejection(bar_frames, columnar=reader != "typed") == "range"
    assert [e.kind for e in wire.decode_many([bar_frames]).errors] == ["range"]
