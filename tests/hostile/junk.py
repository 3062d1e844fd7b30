"""Hostile bus input: the cases of a known attack list, and seeded structure-aware mutations.

Every message here is built as raw msgpack lists (not through mesh.schema's encoder), so that it
can hold what a real publisher never would: columns of unequal length, NaN prices, integers past
int64, nesting thousands of levels deep, wrong tags, truncated bodies. `generated(seed, n)` starts
from a valid body of every message type and mutates it; the same seed gives the same messages.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

NOW_NS = time.time_ns()
U64_MAX = 2**64 - 1
FUZZ_SYMBOL = "FUZZ"  # the symbol of every generated market-data message

DATA_TOPICS = (
    "md.quote.stocks",
    "md.trade.stocks",
    "md.bar1s.stocks",
    "md.bar1m.stocks",
    "md.gap.stocks",
)
SYS_TOPICS = (
    "sys.heartbeat.recorder",
    "sys.heartbeat.kdb",
    "sys.event.ingest",
    "sys.stats.kdb",
    "sys.quota",
    "job.f1-1",
    "bt.result.bt-1",
)
SERVICES = ("bus", "sim", "ingest", "recorder", "kdb", "fetcher", "backtester", "nosuch")

_enc = msgspec.msgpack.Encoder()


@dataclass(frozen=True)
class Frames:
    """One hostile message: the frames to send, what it is, where it goes (`data` or `control`)."""

    frames: list[bytes]
    what: str
    channel: str = "data"


def header(src: str = "hostile", seq: int = 1, v: Any = 1, ts: int | None = None) -> list[Any]:
    return [v, src, seq, NOW_NS if ts is None else ts]


def quote_payload(n: int = 2, symbol: str = FUZZ_SYMBOL, price: float = 100.0) -> list[Any]:
    return [
        "quotes",
        [symbol] * n,
        [price] * n,
        [100] * n,
        [price + 0.01] * n,
        [200] * n,
        [4] * n,
        [7] * n,
        [0] * n,
        [3] * n,
        list(range(1, n + 1)),
        [NOW_NS + i for i in range(n)],
        [NOW_NS + 1000 + i for i in range(n)],
    ]


def trade_payload(n: int = 2, symbol: str = FUZZ_SYMBOL) -> list[Any]:
    return [
        "trades",
        [symbol] * n,
        [100.5] * n,
        [10] * n,
        [4] * n,
        [f"t{i}" for i in range(n)],
        [[12, 37]] * n,
        [3] * n,
        list(range(1, n + 1)),
        [NOW_NS + i for i in range(n)],
        [NOW_NS + 2000 + i for i in range(n)],
    ]


def bar_payload(n: int = 2, interval: str = "1s", symbol: str = FUZZ_SYMBOL) -> list[Any]:
    start = NOW_NS - NOW_NS % 1_000_000_000
    return [
        "bars",
        interval,
        [symbol] * n,
        [start + i * 10**9 for i in range(n)],
        [start + (i + 1) * 10**9 for i in range(n)],
        [10.0] * n,
        [11.0] * n,
        [9.5] * n,
        [10.5] * n,
        [1000.0] * n,
        [10.2] * n,
        [7] * n,
        [NOW_NS] * n,
        False,
    ]


def gap_payload(n: int = 1, symbol: str = FUZZ_SYMBOL) -> list[Any]:
    return [
        "gaps",
        [symbol] * n,
        ["quote"] * n,
        [10] * n,
        [20] * n,
        [NOW_NS - 10**9] * n,
        [NOW_NS] * n,
        ["reconnect"] * n,
    ]


def heartbeat_payload(service: str = "hostile") -> list[Any]:
    return [
        "heartbeat",
        service,
        "abcd1234",
        4242,
        "ok",
        NOW_NS,
        1.0,
        {"received": 1, "malformed": 0},
        "",
    ]


def event_payload(message: str = "hello", service: str = "hostile") -> list[Any]:
    return ["event", service, "warning", message, {"k": 1}]


def job_payload() -> list[Any]:
    return ["job", "f1-1", "fetch", "running", 0.5, "half way", {}]


def stats_payload() -> list[Any]:
    return ["stats", "hostile", {"a": 1}]


def request_body(cmd: str = "ping", args: Any = None) -> dict[str, Any]:
    return {"id": "hostile-1", "cmd": cmd, "args": {} if args is None else args}


def body(hdr: list[Any], payload: Any) -> bytes:
    return _enc.encode([hdr, payload])


def message(topic: str, hdr: list[Any], payload: Any) -> list[bytes]:
    return [topic.encode(), body(hdr, payload)]


def nested(depth: int, leaf: bytes = b"\xc0") -> bytes:
    """msgpack for [[[...leaf...]]], `depth` arrays deep, without recursion to build it."""
    return b"\x91" * depth + leaf


def nested_map(depth: int) -> bytes:
    """msgpack for {"a": {"a": ... nil}}, `depth` maps deep."""
    return b"\x81\xa1a" * depth + b"\xc0"


def control(service: str, request: bytes) -> Frames:
    return Frames([b"REQ", service.encode(), request], f"control request to {service}", "control")


# --- the explicit cases -----------------------------------------------------------------------


def deep_messages() -> list[Frames]:
    """Bodies nested 1,000-2,000 levels deep: on market data, on sys topics, in control requests."""
    out = []
    for depth in (1000, 1500, 2000):
        out.append(
            Frames(
                [b"md.quote.stocks", nested(depth)], f"body nested {depth} deep on md.quote.stocks"
            )
        )
        # a well-formed envelope whose payload is the deep value
        out.append(
            Frames(
                [b"md.quote.stocks", b"\x92" + _enc.encode(header()) + nested(depth)],
                f"payload nested {depth} deep",
            )
        )
        out.append(
            Frames(
                [
                    b"md.trade.stocks",
                    b"\x92" + _enc.encode(header()) + b"\x92\xa6trades" + nested(depth),
                ],
                f"trade column nested {depth} deep",
            )
        )
        out.append(
            Frames(
                [b"sys.heartbeat.kdb", b"\x92" + _enc.encode(header()) + nested_map(depth)],
                f"heartbeat nested {depth} deep",
            )
        )
        event_deep = (
            b"\x92"
            + _enc.encode(header())
            + b"\x95\xa5event\xa7hostile\xa5error\xa1m"
            + nested_map(depth)
        )
        out.append(Frames([b"sys.event.hostile", event_deep], f"event data nested {depth} deep"))
        for service in SERVICES:
            out.append(control(service, nested(depth)))
            args_deep = b"\x83\xa2id\xa1x\xa3cmd\xa4ping\xa4args" + b"\x81\xa1a" * depth + b"\xc0"
            out.append(control(service, args_deep))
    return out


def gap_cases() -> list[Frames]:
    bad = gap_payload(3, "GAPJUNK")
    bad[4] = bad[4][:1]  # to_sequence: one value for three rows
    top = gap_payload(1, "GAPJUNK")
    top[3] = [U64_MAX]
    top[4] = [U64_MAX]
    return [
        Frames(
            message("md.gap.stocks", header(seq=7), bad), "GapBatch with columns of unequal length"
        ),
        Frames(message("md.gap.stocks", header(seq=8), top), "gap sequence 2**64-1"),
        Frames(
            message("md.gap.stocks", header(seq=U64_MAX), gap_payload(1, "GAPJUNK")),
            "gap header sequence 2**64-1",
        ),
        Frames(
            message("md.quote.stocks", header(seq=U64_MAX), quote_payload(1, "SEQJUNK")),
            "quote header sequence 2**64-1",
        ),
    ]


def sequence_jump_cases() -> list[Frames]:
    """Three sources, each at sequence 1, then 2**64-1 (outside int64: malformed), then 2**63-1 (valid,
    but a missing-message counter summing such jumps would pass what a heartbeat can encode)."""
    out = []
    for src in ("jumper-a", "jumper-b", "jumper-c"):
        for topic in ("md.quote.stocks", "md.gap.stocks", "md.trade.stocks"):

            def payload(symbol: str, topic: str = topic) -> list[Any]:
                return (
                    quote_payload(1, symbol)
                    if "quote" in topic
                    else gap_payload(1, symbol)
                    if "gap" in topic
                    else trade_payload(1, symbol)
                )

            out.append(
                Frames(
                    message(topic, header(src=src, seq=1), payload("SEQOK")), f"{src} at sequence 1"
                )
            )
            out.append(
                Frames(
                    message(topic, header(src=src, seq=U64_MAX), payload("SEQJUNK")),
                    f"{src} jumps to sequence 2**64-1",
                )
            )
            out.append(
                Frames(
                    message(topic, header(src=src, seq=2**63 - 1), payload("SEQOK")),
                    f"{src} at sequence 2**63-1 (valid)",
                )
            )
    return out


def quote_cases() -> list[Frames]:
    out = []
    unequal = quote_payload(3, "COLJUNK")
    unequal[2] = unequal[2][:2]
    out.append(
        Frames(
            message("md.quote.stocks", header(), unequal),
            "quote batch with a short bid_price column",
        )
    )
    longer = quote_payload(2, "COLJUNK")
    longer[1] = longer[1] + ["COLJUNK"] * 5
    out.append(
        Frames(
            message("md.quote.stocks", header(), longer), "quote batch with a long symbol column"
        )
    )
    for name, price in (
        ("NAN", math.nan),
        ("INF", math.inf),
        ("NINF", -math.inf),
        ("TINY", -1e308),
        ("NEG", -5.0),
    ):
        out.append(
            Frames(
                message("md.quote.stocks", header(), quote_payload(2, f"PX{name}", price)),
                f"quote price {price!r}",
            )
        )
        t = trade_payload(2, f"PX{name}")
        t[2] = [price, price]
        out.append(Frames(message("md.trade.stocks", header(), t), f"trade price {price!r}"))
    neg = trade_payload(2, "NEGSIZE")
    neg[3] = [-10, -1]
    out.append(Frames(message("md.trade.stocks", header(), neg), "trade with negative sizes"))
    out.append(
        Frames(
            message(
                "md.quote.stocks", header(src="unknown-source"), quote_payload(1_000_000, "MILLION")
            ),
            "a 1,000,000-row quote batch",
        )
    )
    out.append(
        Frames(
            message(
                "md.quote.stocks", header(src="unknown-source"), quote_payload(300_000, "ROWJUNK")
            ),
            "a 300,000-row quote batch (over the row limit, under the size limit)",
        )
    )
    return out


def event_cases() -> list[Frames]:
    texts = (
        "[/]",
        "[/bold]",
        "[bold]unclosed",
        "[/red] [link=x]y[/link]",
        "[" * 500,
        "\x1b[31mred\x1b[0m",
        "\x00\xff",
        "💥" * 100,
    )
    return [
        Frames(
            message(f"sys.event.{svc}", header(), event_payload(text, svc)),
            f"event text {text[:20]!r}",
        )
        for text in texts
        for svc in ("ingest", "hostile")
    ]


def garbage_cases(rng: random.Random) -> list[Frames]:
    out = []
    for i in range(40):
        out.append(
            Frames(
                [rng.choice(DATA_TOPICS + SYS_TOPICS).encode(), rng.randbytes(rng.randint(0, 300))],
                f"garbage bytes {i}",
            )
        )
    out.append(Frames([b"md.quote.stocks", b""], "empty body"))
    out.append(Frames([b"md.quote.stocks"], "one frame"))
    out.append(
        Frames(
            [b"md.quote.stocks", body(header(), quote_payload(1, "FRAMEJUNK")), b"extra"],
            "three frames",
        )
    )
    out.append(Frames([b"md.quote.stocks", b"a", b"b", b"c", b"d"], "five frames"))
    out.append(
        Frames(
            [
                "md.quote.stocks.\u00e9\u00fc".encode(),
                body(header(), quote_payload(1, "TOPICJUNK")),
            ],
            "non-ASCII topic",
        )
    )
    out.append(
        Frames(
            [b"md.quote.\xff\xfe", body(header(), quote_payload(1, "TOPICJUNK"))], "topic not UTF-8"
        )
    )
    out.append(
        Frames(
            [b"md.quote.stocks", body(header(v=2), quote_payload(1, "VERJUNK"))],
            "protocol version 2",
        )
    )
    return out


def router_cases(rng: random.Random) -> list[Frames]:
    """Frames for the bus's ROUTER: HELLO/REQ/REP with wrong counts and garbage bodies."""

    def c(frames: list[bytes], what: str) -> Frames:
        return Frames(frames, what, "router")

    out = [
        c([], "no frames"),
        c([b"HELLO"], "HELLO alone"),
        c([b"HELLO", b"kdb"], "HELLO without a body"),
        c([b"HELLO", b"evil", b"garbage"], "HELLO with a garbage heartbeat"),
        c([b"HELLO", b"evil", nested(2000)], "HELLO with a deep heartbeat"),
        c(
            [
                b"HELLO",
                b"evil",
                _enc.encode(
                    ["heartbeat", "evil", "x", -1, "ok", -1, math.nan, {"c": U64_MAX}, "[/]"]
                ),
            ],
            "HELLO with odd numbers",
        ),
        c(
            [b"HELLO", b"\xff\xfe", _enc.encode(heartbeat_payload("x"))],
            "HELLO with a non-UTF-8 name",
        ),
        c([b"HELLO", b"evil", b"x", b"y"], "HELLO with four frames"),
        c([b"REQ"], "REQ alone"),
        c([b"REQ", b"bus"], "REQ without a body"),
        c([b"REQ", b"bus", b"\xc1"], "REQ with an invalid byte"),
        c([b"REQ", b"bus", b"x", b"y"], "REQ with four frames"),
        c([b"REQ", b"\xff", b"x"], "REQ to a non-UTF-8 service"),
        c([b"REP"], "REP alone"),
        c([b"REP", b"nobody", b"x"], "REP to an unknown client"),
        c([b"REP", b"", b""], "REP with empty frames"),
        c([b"REP", b"a", b"b", b"c", b"d"], "REP with five frames"),
        c([b"WHAT", b"x", b"y"], "unknown verb"),
        c([b"\x00" * 100], "NUL bytes"),
    ]
    for i in range(30):
        out.append(
            c(
                [rng.randbytes(rng.randint(0, 40)) for _ in range(rng.randint(0, 6))],
                f"random router frames {i}",
            )
        )
    return out


def explicit_cases() -> list[Frames]:
    rng = random.Random(14)
    return [
        *deep_messages(),
        *gap_cases(),
        *sequence_jump_cases(),
        *quote_cases(),
        *event_cases(),
        *garbage_cases(rng),
        *router_cases(rng),
    ]


# --- generated: valid bodies, mutated ---------------------------------------------------------

_BASES: tuple[tuple[str, Any], ...] = (
    ("md.quote.stocks", lambda rng: quote_payload(rng.randint(0, 5))),
    ("md.trade.stocks", lambda rng: trade_payload(rng.randint(0, 5))),
    ("md.bar1s.stocks", lambda rng: bar_payload(rng.randint(0, 4), "1s")),
    ("md.bar1m.stocks", lambda rng: bar_payload(rng.randint(0, 4), "1m")),
    ("md.gap.stocks", lambda rng: gap_payload(rng.randint(0, 3))),
    ("sys.heartbeat.kdb", lambda rng: heartbeat_payload("kdb")),
    ("sys.heartbeat.hostile", lambda rng: heartbeat_payload()),
    ("sys.event.hostile", lambda rng: event_payload("[/x]")),
    ("sys.stats.hostile", lambda rng: stats_payload()),
    ("job.f1-1", lambda rng: job_payload()),
    ("sys.quota", lambda rng: stats_payload()),
)


def hostile_value(rng: random.Random) -> Any:
    return rng.choice(
        (
            math.nan,
            math.inf,
            -math.inf,
            -1e308,
            1e308,
            0.0,
            -0.0,
            -1,
            0,
            2**63,
            U64_MAX,
            -(2**63),
            2**31,
            "",
            "x" * rng.choice((1, 1000, 1000, 70_000 if rng.random() < 0.05 else 10)),
            "[/]",
            "\u00e9\u2603",
            None,
            True,
            False,
            b"\x00\xff",
            {},
            [],
            [[]],
            {"a": [1, {"b": None}]},
            [math.nan],
            [-1] * 3,
            [U64_MAX],
            ["A"] * 4,
            [1.5, "x", None],
        )
    )


def _paths(value: Any, prefix: tuple[int | str, ...] = ()) -> Iterator[tuple[int | str, ...]]:
    yield prefix
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))


def _get(value: Any, path: tuple[int | str, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _set(root: list[Any], path: tuple[int | str, ...], new: Any) -> Any:
    if not path:
        return new
    _get(root, path[:-1])[path[-1]] = new
    return root


def mutate(rng: random.Random, value: list[Any]) -> Any:
    """One structure-aware change somewhere in `value` (a [header, payload] list)."""
    paths = list(_paths(value))
    path = rng.choice(paths)
    target = _get(value, path)
    action = rng.randrange(9)
    if action == 0:  # a hostile value anywhere
        return _set(value, path, hostile_value(rng))
    if action == 1 and isinstance(target, list):  # a column one longer or shorter
        if target and rng.random() < 0.5:
            target.pop(rng.randrange(len(target)))
        else:
            target.append(rng.choice(target) if target else hostile_value(rng))
        return value
    if action == 2 and isinstance(target, list) and target:  # one element's type changed
        target[rng.randrange(len(target))] = hostile_value(rng)
        return value
    if action == 3:  # extra or missing trailing elements of the payload or header
        part = (
            value[rng.randrange(2)]
            if isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], list)
            and isinstance(value[1], list)
            else value
        )
        if isinstance(part, list):
            if rng.random() < 0.5 and part:
                del part[rng.randrange(len(part)) :]
            else:
                part.extend(hostile_value(rng) for _ in range(rng.randint(1, 3)))
        return value
    if action == 4:  # a wrong or missing tag
        payload = value[1] if isinstance(value, list) and len(value) > 1 else None
        if isinstance(payload, list) and payload:
            payload[0] = rng.choice(
                (
                    "quote",
                    "QUOTES",
                    "",
                    "trades",
                    "bars",
                    "gaps",
                    "heartbeat",
                    7,
                    None,
                    "event" * 100,
                )
            )
        return value
    if action == 5:  # nesting: the target wrapped in lists
        wrapped = target
        for _ in range(rng.choice((1, 2, 40, 200))):
            wrapped = [wrapped]
        return _set(value, path, wrapped)
    if action == 6:  # integer range at an int leaf
        if isinstance(target, int) and not isinstance(target, bool):
            return _set(value, path, rng.choice((-1, -(2**63), 2**63, U64_MAX, 2**62 + 1, 0)))
        return _set(value, path, rng.choice((-1, U64_MAX)))
    if action == 7:  # float range at a float leaf
        return _set(
            value, path, rng.choice((math.nan, math.inf, -math.inf, -1e308, 1e308, -0.0, 5e-324))
        )
    if rng.random() < 0.05:  # a long column
        return _set(value, path, [rng.choice((1, 1.0, "A"))] * rng.choice((1_000, 10_000)))
    return _set(value, path, hostile_value(rng))


def _mangle_bytes(rng: random.Random, data: bytes) -> bytes:
    action = rng.randrange(4)
    if action == 0 and data:  # truncated
        return data[: rng.randrange(len(data))]
    if action == 1 and data:  # a flipped byte
        at = rng.randrange(len(data))
        return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]
    if action == 2:  # a string claiming 4 GB
        return data + b"\xdb\xff\xff\xff\xff" + b"x" * 8
    return data + rng.randbytes(rng.randint(1, 16))  # trailing garbage


def generated(seed: int, count: int) -> Iterator[Frames]:
    """`count` messages mutated from valid bodies: about 5 in 6 on data topics, the rest control requests."""
    rng = random.Random(seed)
    for i in range(count):
        if rng.random() < 5 / 6:
            topic, make = rng.choice(_BASES)
            value: Any = [header(src=f"fuzz{rng.randrange(4)}", seq=i + 1), make(rng)]
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                value = mutate(rng, value)
            try:
                data = _enc.encode(value)
            except (OverflowError, TypeError, msgspec.EncodeError):
                data = b"\x92" + rng.randbytes(20)
            if rng.random() < 0.15:
                data = _mangle_bytes(rng, data)
            frames = [topic.encode(), data]
            if rng.random() < 0.02:
                frames = rng.choice(([frames[0]], [*frames, b"x"], [frames[1], frames[0]]))
            yield Frames(frames, f"generated {topic} #{i}")
        else:
            service = rng.choice(SERVICES)
            req: Any = request_body(
                rng.choice(
                    (
                        "ping",
                        "counters",
                        "status",
                        "stats",
                        "jobs",
                        "job",
                        "cancel",
                        "plan",
                        "result",
                        "urls",
                        "list",
                        "nosuch",
                    )
                )
            )
            req["args"] = rng.choice(
                (
                    {},
                    {"job_id": "x"},
                    {"job_id": hostile_value(rng)},
                    {
                        "symbols": hostile_value(rng),
                        "start": "2024-01-02",
                        "end": hostile_value(rng),
                    },
                    {"x": 1},
                )
            )
            wrapper: list[Any] = [req]
            for _ in range(rng.choice((1, 1, 2))):
                wrapper = mutate(rng, wrapper) if rng.random() < 0.7 else wrapper
            try:
                data = _enc.encode(wrapper[0] if isinstance(wrapper, list) and wrapper else wrapper)
            except (OverflowError, TypeError, msgspec.EncodeError):
                data = rng.randbytes(12)
            if rng.random() < 0.15:
                data = _mangle_bytes(rng, data)
            yield control(service, data)
