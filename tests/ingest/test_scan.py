"""The compiled scanner gives, byte for byte, what the msgspec path gives, and declines the rest.

msgspec's typed decode (mesh.ingest.massive) is the reference. Every frame the scanner takes must
encode to exactly the bytes the reference's batches encode to; every frame it declines must leave
its columns as they were, so the reference can take the frame instead.
"""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest

from mesh import wire
from mesh.ingest.massive import DecodeErrors, decode_frame, normalise
from mesh.ingest.scan import Columns

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
RECEIVED = 1_700_000_000_000_000_000  # a receive time
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


TS_MS = (946_684_800_000, 4_102_444_799_999)  # 2000..2099, in ms


def random_event(rng: random.Random) -> dict:  # type: ignore[type-arg]
    """A Q or T event as Massive could send it: optional fields left out, odd but valid values
    (mesh.bounds: times 1980..2100, a symbol, no negative sizes or codes; a quote side may be 0)."""
    price = rng.choice(
        [
            round(rng.uniform(0.0001, 5000), rng.randint(0, 6)),
            rng.randint(1, 100_000),
            0.1,
            0.0003,
            123456789.123,
        ]
    )
    sym = rng.choice(["AAPL", "BRK.A", "X", "A" * 40, "SPY"])
    if rng.random() < 0.5:
        event = {
            "ev": "Q",
            "sym": sym,
            "bx": rng.randint(0, 20),
            "bp": price,
            "bs": rng.randint(0, 10**6),
            "ax": rng.randint(0, 300),
            "ap": price,
            "as": rng.randint(0, 70_000),
            "t": rng.randint(TS_MS[0], TS_MS[1]),
        }
        optional = {
            "c": rng.randint(0, 300),
            "q": rng.randint(0, 2**40),
            "z": rng.randint(1, 3),
            "i": [rng.randint(0, 999)],
        }
    else:
        event = {
            "ev": "T",
            "sym": sym,
            "p": price,
            "s": rng.randint(0, 2**33),
            "t": rng.randint(TS_MS[0], TS_MS[1]),
        }
        optional = {
            "x": rng.randint(0, 20),
            "i": str(rng.randint(0, 10**12)),
            "c": [rng.randint(0, 60) for _ in range(rng.randint(0, 20))],
            "q": rng.randint(0, 2**40),
            "z": rng.randint(1, 3),
        }
    event.update({key: value for key, value in optional.items() if rng.random() < 0.8})
    if rng.random() < 0.1:
        event["unknown"] = rng.choice([1, "x", [1, "a", None], True, None, -2.5])
    items = list(event.items())
    rng.shuffle(items)  # Massive's key order is not part of its contract
    return dict(items)


def random_frame(rng: random.Random) -> bytes:
    events = [random_event(rng) for _ in range(rng.randint(1, 60))]
    separators = rng.choice([(",", ":"), (", ", ": "), (",", ":")])
    text = json.dumps(events, separators=separators)
    if rng.random() < 0.1:
        text = f" \n{text}\t "
    return text.encode()


def reference(frames: list[tuple[int, bytes]]) -> tuple[bytes | None, bytes | None]:
    events, receive_times = [], []
    for ts_recv, data in frames:
        decoded = decode_frame(data, DecodeErrors())
        events += decoded
        receive_times += [ts_recv] * len(decoded)
    out = normalise(events, receive_times)
    return (
        msgspec.msgpack.encode(out.quotes) if out.quotes is not None else None,
        msgspec.msgpack.encode(out.trades) if out.trades is not None else None,
    )


def scanned(frames: list[tuple[int, bytes]]) -> tuple[bytes | None, bytes | None]:
    columns = Columns(sum(len(data) for _, data in frames))
    for ts_recv, data in frames:
        assert columns.add(data, ts_recv), data[:200]
    quotes, trades = columns.take()
    return (bytes(quotes.payload) if quotes else None, bytes(trades.payload) if trades else None)


def test_generated_frames_scan_to_the_same_bytes_as_the_msgspec_path() -> None:
    rng = random.Random(20261122)
    for _ in range(300):
        frames = [
            (
                rng.randint(TS_MS[0], TS_MS[1]) * 1_000_000 + rng.randint(0, 999_999),
                random_frame(rng),
            )
            for _ in range(rng.randint(1, 8))
        ]
        assert scanned(frames) == reference(frames)


# every msgpack width a valid value can take (mesh.bounds: codes, sizes and sequences are not
# negative), within the 18 digits the scanner takes
INT_EDGES = [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**56, 10**18 - 1]
PRICE_EDGES = ["0.000001", "1", "0.1", "2.5", "123456789.6", "9007199.254740991", "999999999.99999"]


def test_every_msgpack_width_and_price_edge_matches_msgspec() -> None:
    quotes = ",".join(
        f'{{"ev":"Q","sym":"E","bx":1,"bp":{price},"bs":1,"ax":1,"ap":{price},"as":1,"q":{n},"z":{n},"t":1700000000000}}'
        for n in INT_EDGES
        for price in ["0", *PRICE_EDGES]
    )
    trades = ",".join(
        f'{{"ev":"T","sym":"E","p":{price},"s":{n},"t":1700000000000,"c":[{n},{n}]}}'
        for n in INT_EDGES
        for price in PRICE_EDGES
    )
    frames = [(RECEIVED + 1, f"[{quotes}]".encode()), (RECEIVED + 2, f"[{trades}]".encode())]
    assert scanned(frames) == reference(frames)


def test_a_mutated_frame_is_either_declined_or_read_exactly_as_msgspec_reads_it() -> None:
    rng = random.Random(7)
    alphabet = b'{}[]",:.-0123456789eE \\tnulfrasQTAMevsymbxpc\x00\xff'
    for _ in range(3000):
        data = bytearray(random_frame(rng))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            action = rng.random()
            if action < 0.4:
                data[at] = rng.choice(alphabet)
            elif action < 0.7:
                del data[at]
            elif action < 0.9:
                data.insert(at, rng.choice(alphabet))
            else:
                del data[at:]
                if not data:
                    data = bytearray(b"[")
        frame = bytes(data)
        columns = Columns(len(frame))
        if not columns.add(frame, RECEIVED):
            continue
        errors = DecodeErrors()
        events = decode_frame(frame, errors)
        assert errors.total == 0, frame  # taken by the scanner, so msgspec must take it too ...
        out = normalise(events, RECEIVED)
        quotes, trades = columns.take()  # ... and read the same values
        assert (bytes(quotes.payload) if quotes else None) == (
            msgspec.msgpack.encode(out.quotes) if out.quotes is not None else None
        ), frame
        assert (bytes(trades.payload) if trades else None) == (
            msgspec.msgpack.encode(out.trades) if out.trades is not None else None
        ), frame


def test_a_batch_of_more_than_65535_events_keeps_its_msgpack_form() -> None:
    events = [dict(QUOTE, q=n) for n in range(70_000)]
    frames = [
        (RECEIVED + 1, json.dumps(events[:35_000]).encode()),
        (RECEIVED + 2, json.dumps(events[35_000:]).encode()),
    ]
    assert scanned(frames) == reference(frames)


def test_the_scanned_batch_is_what_a_subscriber_decodes() -> None:
    columns = Columns(4096)
    received = 1_700_000_000_000_000_042
    assert columns.add(json.dumps([QUOTE, TRADE]).encode(), received)
    quotes, trades = columns.take()
    assert quotes is not None and trades is not None
    (quote,) = wire.decode(
        wire.encode("md.quote.stocks", quotes.payload, src="ingest", seq=1)
    ).payload.rows()
    (trade,) = wire.decode(
        wire.encode("md.trade.stocks", trades.payload, src="ingest", seq=2)
    ).payload.rows()
    assert (
        quote.symbol,
        quote.bid_price,
        quote.bid_size,
        quote.ask_size,
        quote.ts_event,
        quote.ts_recv,
    ) == ("MSFT", 114.125, 10_000, 16_000, 1536036818784 * 1_000_000, received)
    assert (trade.trade_id, trade.conditions, trade.size, trade.sequence) == (
        "12345",
        [0, 12],
        100,
        3681328,
    )
    assert quotes.symbols == ["MSFT"] and list(trades.sequences) == [3681328]


DECLINED: dict[str, str | list[dict[str, Any]]] = {
    "a bar": [SECOND],
    "a status": [{"ev": "status", "status": "connected", "message": "Connected Successfully"}],
    "an unknown event": [dict(QUOTE, ev="LULD")],
    "an escaped symbol": '[{"ev":"Q","sym":"A\\u0042","bx":1,"bp":1,"bs":1,"ax":1,"ap":1,"as":1}]',
    "a non-ASCII symbol": [dict(QUOTE, sym="ÄBC")],
    "an exponent": '[{"ev":"T","sym":"A","p":1e2,"s":1,"t":1}]',
    "a duplicate key": '[{"ev":"T","sym":"A","p":1,"s":1,"t":1,"s":2}]',
    "a missing field": [{k: v for k, v in QUOTE.items() if k != "bp"}],
    "a float where an int belongs": [dict(TRADE, s=1.5)],
    "a string where a number belongs": [dict(QUOTE, bp="1.5")],
    "conditions that are not a list": [dict(TRADE, c=3)],
    "a trade id that is a number": [dict(TRADE, i=12345)],
    "a nested object": [dict(QUOTE, extra={"a": 1})],
    "no event type": [{k: v for k, v in QUOTE.items() if k != "ev"}],
    "more digits than a double holds": '[{"ev":"T","sym":"A","p":1.00000000000000001,"s":1,"t":1}]',
    "an integer of 19 digits": [dict(QUOTE, q=2**62)],
    "a leading zero": '[{"ev":"T","sym":"A","p":01.5,"s":1,"t":1}]',
    "a truncated frame": json.dumps([QUOTE])[:-5],
    "trailing garbage": json.dumps([QUOTE]) + "x",
    "not an array": json.dumps(QUOTE),
    "an empty object": "[{}]",
    # values the bus would reject (mesh.bounds): the msgspec path drops just that event
    "a time before 1980": [dict(QUOTE, t=1000)],
    "no time at all": [{k: v for k, v in TRADE.items() if k != "t"}],
    "a negative size": [dict(QUOTE, bs=-1)],
    "a negative exchange": [dict(TRADE, x=-4)],
    "a trade at price 0": [dict(TRADE, p=0)],
    "a negative bid": [dict(QUOTE, bp=-1.5)],
    "a price of a billion": [dict(TRADE, p=1_000_000_000)],
    "an empty symbol": [dict(QUOTE, sym="")],
    "a 65-character symbol": [dict(TRADE, sym="A" * 65)],
    "a negative condition": [dict(TRADE, c=[12, -1])],
    "65 conditions": [dict(TRADE, c=[1] * 65)],
}


@pytest.mark.parametrize("case", list(DECLINED))
def test_a_frame_the_scanner_cannot_take_exactly_is_declined_and_nothing_is_half_written(
    case: str,
) -> None:
    bad = DECLINED[case]
    data = (
        bad if isinstance(bad, str) else json.dumps([QUOTE, TRADE, *bad], ensure_ascii=False)
    ).encode()
    columns = Columns(8192)
    assert columns.add(json.dumps([QUOTE, TRADE]).encode(), 1)
    before = columns.state.copy()
    assert not columns.add(data, 2)
    assert (columns.state == before).all()
    quotes, trades = columns.take()
    assert (
        quotes is not None
        and trades is not None
        and len(quotes.symbols) == 1
        and len(trades.symbols) == 1
    )


def test_one_event_outside_the_bounds_costs_only_itself() -> None:
    """Good events in the same frame reach the bus in a batch every subscriber accepts."""
    from mesh.config import Config
    from mesh.ingest.service import IngestService

    published: list[tuple[str, Any]] = []

    class Runtime:
        def publish(self, topic: str, payload: object) -> None:
            published.append(
                (topic, wire.decode(wire.encode(topic, payload, src="ingest", seq=1)).payload)
            )

    service = IngestService(Config.load(environ={}))
    frame = json.dumps(
        [
            dict(QUOTE, q=1),
            dict(QUOTE, q=2, bs=-5),
            dict(TRADE, q=3, p=0),
            dict(QUOTE, q=4, sym=""),
            dict(TRADE, q=5),
        ]
    ).encode()
    service.process_frames(Runtime(), [(RECEIVED, frame)])  # type: ignore[arg-type]
    assert [(topic, [row.sequence for row in batch.rows()]) for topic, batch in published] == [
        ("md.quote.stocks", [1]),
        ("md.trade.stocks", [5]),
    ]  # type: ignore[attr-defined]
    assert service.errors.counts["range"] == 3


def test_declined_frames_still_reach_the_bus_through_msgspec_in_feed_order() -> None:
    from mesh.config import Config
    from mesh.ingest.service import IngestService

    published: list[tuple[str, Any]] = []

    class Runtime:
        def publish(self, topic: str, payload: object) -> None:
            published.append(
                (topic, wire.decode(wire.encode(topic, payload, src="ingest", seq=1)).payload)
            )

    service = IngestService(Config.load(environ={}))
    escaped = b'[{"ev":"Q","sym":"A\\u0042","bx":1,"bp":1.5,"bs":1,"ax":1,"ap":1.5,"as":1,"q":2,"t":1536036818784}]'
    frames = [
        json.dumps([dict(QUOTE, q=1)]).encode(),
        escaped,
        json.dumps([SECOND]).encode(),
        json.dumps([dict(QUOTE, q=3)]).encode(),
    ]
    service.process_frames(
        Runtime(),  # type: ignore[arg-type]
        [(1_700_000_000_000_000_000 + i, data) for i, data in enumerate(frames)],
    )
    assert [topic for topic, _ in published] == [
        "md.quote.stocks",
        "md.quote.stocks",
        "md.bar1s.stocks",
        "md.quote.stocks",
    ]
    assert [
        row.sequence for _, batch in published if _ == "md.quote.stocks" for row in batch.rows()
    ] == [1, 2, 3]  # type: ignore[attr-defined]
    assert published[1][1].symbol == ["AB"]  # type: ignore[attr-defined]
    assert service.meters["events"].total == 4 and service.errors.total == 0
