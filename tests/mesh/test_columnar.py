"""Decoding batches into numpy columns gives exactly what the typed decode gives, for any writer."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from mesh import columnar, topics, wire
from mesh.schema import Bar, BarBatch, Heartbeat, QuoteBatch, TradeBatch
from mesh.wire import MalformedFrame

T0 = 1_700_000_000_000_000_000


def random_quotes(rng: np.random.Generator, n: int, *, wide: bool) -> QuoteBatch:
    """Quotes whose int columns mix msgpack widths (`wide`) or stay one width per column."""
    bid = np.round(100 + rng.normal(0, 5, n), 2)
    sizes = (
        rng.integers(0, 70_000, n) if wide else rng.integers(1, 100, n)
    )  # fixint, uint8, uint16, uint32 widths
    return QuoteBatch(
        symbol=[f"S{i % 7}" for i in range(n)],
        bid_price=bid.tolist(),
        bid_size=sizes.tolist(),
        ask_price=(bid + 0.01).tolist(),
        ask_size=(sizes * 2).tolist(),
        bid_exchange=rng.integers(1, 20, n).tolist(),
        ask_exchange=rng.integers(1, 20, n).tolist(),
        condition=[0] * n,
        tape=[3] * n,
        sequence=rng.integers(0, 2**40 if wide else 100, n).tolist(),
        ts_event=(T0 + rng.integers(0, 10**12, n)).tolist(),
        ts_recv=[T0 + 5] * n,
    )


def fast_and_typed(batch: object) -> tuple[object, object]:
    """The columnar decode and the typed decode of one payload."""
    raw = msgspec.msgpack.encode(batch)
    return columnar.decode_payload(raw), msgspec.msgpack.decode(raw, type=type(batch))


def assert_same_columns(fast: object, typed: object) -> None:
    assert type(fast) is type(typed)
    for name in typed.__struct_fields__:  # type: ignore[attr-defined]
        mine, theirs = getattr(fast, name), getattr(typed, name)
        if isinstance(mine, np.ndarray):
            assert mine.dtype in (np.int64, np.float64), name
            assert mine.tolist() == theirs, name
            assert all(type(a) is type(b) for a, b in zip(mine.tolist(), theirs, strict=True)), name
        else:
            assert mine == theirs, name


@pytest.mark.parametrize("wide", [False, True], ids=["one-width-columns", "mixed-width-columns"])
@pytest.mark.parametrize("n", [0, 1, 15, 16, 1000, 70_000])
def test_quote_columns_match_the_typed_decode_whatever_the_widths(n: int, wide: bool) -> None:
    batch = random_quotes(np.random.default_rng(n), n, wide=wide)
    assert_same_columns(*fast_and_typed(batch))


def test_trade_and_bar_columns_match_the_typed_decode() -> None:
    trades = TradeBatch(
        symbol=["A", "B"],
        price=[1.5, 2],
        size=[100, 2**40],
        exchange=[4, 200],
        trade_id=["x", "y"],
        conditions=[[], [12, 37]],
        tape=[1, 3],
        sequence=[1, 2],
        ts_event=[T0, T0 + 1],
        ts_recv=[T0, T0],
    )
    bars = BarBatch.from_rows(
        [
            Bar(
                symbol="SPY",
                ts_start=T0,
                ts_end=T0 + 60,
                open=1.0,
                high=2.0,
                low=0.5,
                close=1.5,
                volume=10.0,
                vwap=1.2,
                transactions=3,
            )
        ],
        interval="1m",
        replaces=True,
    )
    for payload in (trades, bars):
        fast, typed = fast_and_typed(payload)
        assert_same_columns(fast, typed)
    assert fast.interval == "1m" and fast.replaces is True


@pytest.mark.parametrize("rows", [1, 50, 400])
def test_small_and_large_batches_come_back_as_the_same_arrays_whichever_reader_takes_them(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = random_quotes(np.random.default_rng(rows), rows, wide=False)
    frames = wire.encode(topics.quotes(), batch, src="t", seq=1)
    by_size = wire.decode(frames, columnar=True).payload  # typed then arrays below 8 KB
    monkeypatch.setattr(wire, "COLUMNAR_MIN_BYTES", 0)
    by_columns = wire.decode(frames, columnar=True).payload
    for name, column in by_columns.columns().items():
        other = getattr(by_size, name)
        if isinstance(column, np.ndarray):
            assert isinstance(other, np.ndarray) and other.dtype == column.dtype, name
        assert list(other) == list(column), name


def test_numpy_columns_travel_and_come_back_as_rows_of_python_numbers() -> None:
    batch = random_quotes(np.random.default_rng(1), 50, wide=False)
    decoded = wire.decode(
        wire.encode(topics.quotes(), batch, src="t", seq=1), columnar=True
    ).payload
    again = wire.decode(
        wire.encode(topics.quotes(), decoded, src="t", seq=2)
    ).payload  # numpy columns re-published
    assert again == batch
    assert list(decoded.rows()) == list(batch.rows())
    assert type(next(decoded.rows()).bid_size) is int


def test_other_payloads_decode_as_usual_in_columnar_mode() -> None:
    beat = Heartbeat(
        service="x", instance="i", pid=1, state="ok", started=T0, interval=1.0, counters={"a": 1}
    )
    assert (
        wire.decode(wire.encode(topics.heartbeat("x"), beat, src="x", seq=1), columnar=True).payload
        == beat
    )


@pytest.mark.parametrize(
    "columns",
    [
        {"bid_price": ["not a number"]},  # wrong type in a float column
        {"bid_size": [1.5]},  # a float where an int belongs
        {"ts_event": [2**64 - 1]},  # beyond int64
        {"symbol": ["A", "B"]},  # unequal column lengths
    ],
    ids=["string-in-floats", "float-in-ints", "beyond-int64", "unequal-lengths"],
)
def test_bad_columns_are_refused_as_the_typed_decode_refuses_them(
    columns: dict[str, list[object]],
) -> None:
    good = {
        name: getattr(random_quotes(np.random.default_rng(0), 1, wide=False), name)
        for name in QuoteBatch.__struct_fields__
    }
    payload = msgspec.msgpack.encode(
        ["quotes", *[columns.get(name, value) for name, value in good.items()]]
    )
    frames = [b"md.quote.stocks", msgspec.msgpack.encode([[1, "t", 1, T0], msgspec.Raw(payload)])]
    assert columnar.decode_payload(payload) is None
    if "symbol" in columns:  # msgspec's typed decode does not compare lengths; consumers check them
        return
    with pytest.raises(MalformedFrame) as caught:
        wire.decode(frames, columnar=True)
    assert caught.value.kind == (
        "range" if "ts_event" in columns else "payload"
    )  # outside int64 is a range


def test_tap_renders_numpy_columns_as_json() -> None:
    msg = wire.decode(
        wire.encode(
            topics.quotes(), random_quotes(np.random.default_rng(2), 3, wide=False), src="t", seq=1
        ),
        columnar=True,
    )
    rendered = msgspec.json.decode(msgspec.json.encode(wire.to_json_dict(msg)))
    assert rendered["payload"]["bid_size"] == msg.payload.bid_size.tolist()


def test_a_bad_message_in_a_burst_costs_only_itself() -> None:
    good = [random_quotes(np.random.default_rng(i), 20, wide=False) for i in range(3)]
    frames = [
        wire.encode(topics.quotes(), batch, src="ingest", seq=i + 1) for i, batch in enumerate(good)
    ]
    bad_payload = msgspec.msgpack.encode(["quotes", ["A"], ["not a price"], *([[1]] * 10)])
    frames.insert(
        1,
        [
            b"md.quote.stocks",
            msgspec.msgpack.encode([[1, "ingest", 9, T0], msgspec.Raw(bad_payload)]),
        ],
    )
    frames.append([b"md.quote.stocks", b"\xc1 not msgpack"])
    burst = wire.decode_many(frames)
    assert sorted(e.kind for e in burst.errors) == ["body", "payload"]
    assert [header.seq for _, header in burst.received] == [1, 2, 3]
    kept = [row for msg in burst.messages for row in msg.payload.rows()]
    assert kept == [row for batch in good for row in batch.rows()]
