"""Live = history: what the feed sends for a session is that session's REST trades, quotes and bars.

The sim plays 2026-12-04 from 09:30 ET at 20x; a raw WebSocket client records a few seconds of
every channel, and Massive's official REST client, pointed at the same sim, must return the same
trades and quotes row for row and the same second and minute bars. REST must not serve beyond
the played clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from massive import RESTClient, WebSocketClient
from massive.websocket.models import EquityTrade

from mesh.config import Config
from mesh.sim import history, market
from mesh.sim.clock import Playing, SimClock, session_at, session_now
from mesh.sim.playback import PlaybackStep, build_tape
from mesh.sim.server import SimServer
from mesh.sim.service import SimService, build_parser
from tests.sim.test_rest import s3_client
from tests.simulator import ThreadedSim

KEY = "sim-demo-key"
SYMBOLS = ["AAPL", "MSFT", "SPY"]
FRIDAY_OPEN = dt.datetime(2026, 12, 4, 9, 30)
SPEED = 20.0
LISTEN_S = 4.0
SCALE = history.DEFAULT_SCALE * 2  # not the default: the feed must follow the history's scale


@pytest.fixture(scope="module")
def played() -> Iterator[tuple[SimServer, list[dict[str, Any]], str]]:
    """A sim playing Friday's open at 20x (history at twice the default scale), and what one client received."""
    clock = SimClock(session_at(FRIDAY_OPEN, time.time_ns(), SPEED))
    with ThreadedSim(symbols=SYMBOLS, clock=clock, scale=SCALE) as sim:
        events, greeting = asyncio.run(_listen(sim.ws_url, LISTEN_S))
        yield sim, events, greeting


async def _listen(url: str, seconds: float) -> tuple[list[dict[str, Any]], str]:
    async with websockets.connect(url, max_size=None) as ws:
        greeting = json.loads(await ws.recv())[0]["message"]
        await ws.send(json.dumps({"action": "auth", "params": KEY}))
        await ws.recv()
        await ws.send(json.dumps({"action": "subscribe", "params": "T.*,Q.*,A.*,AM.*"}))
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            events += [e for e in json.loads(frame) if e["ev"] != "status"]
        return events, greeting


def _rest(sim: SimServer) -> RESTClient:
    return RESTClient(api_key=KEY, base=sim.rest_url, retries=0)


def _inner_span(events: list[dict[str, Any]], ev: str) -> tuple[int, int]:
    """Milliseconds strictly inside the received span (the edges may be cut mid-millisecond)."""
    times = [e["t"] for e in events if e["ev"] == ev]
    assert len(times) > 50, f"too few {ev} events to compare: {len(times)}"
    return min(times) + 1, max(times) - 1


def test_every_trade_sent_is_the_rest_trade_row_for_row(played: Any) -> None:
    sim, events, _ = played
    lo, hi = _inner_span(events, "T")
    rest = _rest(sim)
    for symbol in SYMBOLS:
        sent = [
            (e["i"], e["p"], e["s"], e.get("c", []), e["t"], e["x"], e["q"])
            for e in events
            if e["ev"] == "T" and e["sym"] == symbol and lo <= e["t"] <= hi
        ]
        served = [
            (t.id, t.price, t.size, t.conditions or [], t.sip_timestamp // 1_000_000, t.exchange, t.sequence_number)
            for t in rest.list_trades(
                symbol, timestamp_gte=lo * 1_000_000, timestamp_lt=(hi + 1) * 1_000_000,
                order="asc", sort="timestamp", limit=50_000,
            )
        ]  # fmt: skip
        assert sent and sent == served


def test_every_quote_sent_is_the_rest_quote_row_for_row(played: Any) -> None:
    sim, events, _ = played
    lo, hi = _inner_span(events, "Q")
    rest = _rest(sim)
    for symbol in SYMBOLS:
        sent = [
            (e["bp"], e["bs"] * 100, e["bx"], e["ap"], e["as"] * 100, e["ax"], e["t"], e["q"])
            for e in events
            if e["ev"] == "Q" and e["sym"] == symbol and lo <= e["t"] <= hi
        ]
        served = [
            (q.bid_price, q.bid_size, q.bid_exchange, q.ask_price, q.ask_size, q.ask_exchange, q.sip_timestamp // 1_000_000, q.sequence_number)
            for q in rest.list_quotes(
                symbol, timestamp_gte=lo * 1_000_000, timestamp_lt=(hi + 1) * 1_000_000,
                order="asc", sort="timestamp", limit=50_000,
            )
        ]  # fmt: skip
        assert sent and sent == served


@pytest.mark.parametrize(("ev", "timespan"), [("A", "second"), ("AM", "minute")])
def test_bars_sent_equal_the_rest_aggregates(played: Any, ev: str, timespan: str) -> None:
    sim, events, _ = played
    bars = [e for e in events if e["ev"] == ev]
    assert bars, f"no {ev} bar in {LISTEN_S:g} s of a {SPEED:g}x session"
    rest = _rest(sim)
    for symbol in SYMBOLS:
        sent = {
            e["s"]: (e["o"], e["h"], e["l"], e["c"], e["v"], e["vw"])
            for e in bars
            if e["sym"] == symbol
        }
        if not sent:
            continue
        served = {
            a.timestamp: (a.open, a.high, a.low, a.close, a.volume, a.vwap)
            for a in rest.list_aggs(symbol, 1, timespan, min(sent), max(sent), limit=50_000)
        }
        assert sent == served
        assert all(e["e"] - e["s"] == (1000 if ev == "A" else 60_000) for e in bars)


def test_rest_serves_the_played_session_only_up_to_the_sims_clock(played: Any) -> None:
    sim, _, _ = played
    assert sim.clock is not None
    rest = _rest(sim)
    day_end = int(dt.datetime(2026, 12, 4, 20, tzinfo=market.ET).timestamp()) * 10**9
    newest = next(iter(rest.list_trades("AAPL", timestamp_lte=day_end, order="desc", limit=1)))
    now = sim.clock.now_ns()
    assert now - 30 * 10**9 * SPEED < newest.sip_timestamp <= now
    later = list(rest.list_trades("AAPL", timestamp_gt=now + int(10**9 * SPEED * 5), limit=10))
    assert later == []
    minutes = list(rest.list_aggs("AAPL", 1, "minute", "2026-12-04", "2026-12-04", limit=50_000))
    assert minutes and minutes[-1].timestamp + 60_000 <= sim.clock.now_ns() // 1_000_000
    assert rest.get_last_trade("AAPL").sip_timestamp <= sim.clock.now_ns()
    days = list(rest.list_aggs("AAPL", 1, "day", "2026-12-01", "2026-12-31"))
    assert [dt.datetime.fromtimestamp(d.timestamp / 1000, market.ET).date() for d in days] == [
        dt.date(2026, 12, 1),
        dt.date(2026, 12, 2),
        dt.date(2026, 12, 3),
    ]


def test_flat_files_hold_the_completed_days_before_the_played_session(played: Any) -> None:
    sim, _, _ = played
    listed = s3_client(sim).list_objects_v2(
        Bucket="flatfiles", Prefix="us_stocks_sip/trades_v1/2026/12/"
    )["Contents"]
    assert [o["Key"].rsplit("/", 1)[1] for o in listed] == [
        "2026-12-01.csv.gz",
        "2026-12-02.csv.gz",
        "2026-12-03.csv.gz",
    ]


def test_the_connected_status_says_which_session_is_played(played: Any) -> None:
    _, _, greeting = played
    assert (
        greeting == "Connected Successfully (simulated: replaying 2026-12-04 from 09:30 ET at 20x)"
    )


def test_a_closed_market_plays_the_last_trading_day_from_the_same_time_and_says_so() -> None:
    sunday = int(dt.datetime(2026, 12, 6, 14, 3, tzinfo=market.ET).timestamp()) * 10**9
    session = session_now(sunday)
    assert (session.day, session.playing) == (dt.date(2026, 12, 4), Playing.PAST)
    assert session.describe() == "replaying 2026-12-04 from 14:03 ET, market closed"
    monday = int(dt.datetime(2026, 12, 7, 10, 15, tzinfo=market.ET).timestamp()) * 10**9
    assert session_now(monday).playing is Playing.LIVE
    assert session_now(monday).describe() == "live session 2026-12-07"

    async def greet() -> str:
        clock = SimClock(session, wall=lambda: sunday)
        async with SimServer(symbols=["AAPL"], clock=clock, rest=False, s3=False) as sim:
            async with websockets.connect(sim.ws_url) as ws:
                return str(json.loads(await ws.recv())[0]["message"])

    assert asyncio.run(greet()).endswith(
        "(simulated: replaying 2026-12-04 from 14:03 ET, market closed)"
    )


@pytest.mark.parametrize(
    ("at", "says"),
    [
        ("2026-12-05T10:00", "2026-12-05 (Saturday) is not a trading day"),
        (
            "2026-12-04T20:30",
            "2026-12-04 20:30 ET is outside the session (04:00-20:00 ET that day)",
        ),
    ],
)
def test_at_outside_any_session_is_one_line_and_exit_2(at: str, says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "run", "sim", "--at", at, "--ws-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and says in done.stderr


async def test_massive_status_says_which_session_the_sim_plays(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--ws-port", "0", "--rest-port", "0", "--s3-port", "0", "--symbols", "AAPL"]
        + ["--at", "2026-12-04T15:59:30", "--speed", "10"]
    )
    service = SimService(Config.load({}, cwd=tmp_path), args)
    stopping = asyncio.Event()
    runtime = type("Runtime", (), {"stopping": stopping})()
    task = asyncio.create_task(service.run(runtime))
    while service.sim is None or service.sim.rest is None:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    counters = service.counters()
    assert service.state == "ok"
    assert service.message == "replaying 2026-12-04 from 15:59 ET at 10x"
    assert counters["session_day"] == "2026-12-04" and counters["playing"] == "past-session"
    assert counters["speed"] == 10.0 and counters["session_time"] >= "15:59:30"
    assert counters["clock_offset_s"] > 86_400
    stopping.set()
    await asyncio.wait_for(task, 10)


def test_the_official_client_parses_the_played_trades(played: Any) -> None:
    sim, _, _ = played
    received: list[EquityTrade] = []

    async def listen() -> None:
        client = WebSocketClient(
            api_key=KEY, feed=f"127.0.0.1:{sim.ws_port}", secure=False, subscriptions=["T.*"]
        )

        async def handle(messages: list[Any]) -> None:
            received.extend(m for m in messages if isinstance(m, EquityTrade))
            if len(received) >= 20:
                await client.close()

        await asyncio.wait_for(client.connect(handle), 20)

    asyncio.run(listen())
    assert len(received) >= 20
    for trade in received:
        assert trade.id is not None and trade.id.isdigit() and trade.symbol in SYMBOLS
        assert trade.timestamp is not None and trade.price is not None and trade.size is not None
    rest = _rest(sim)
    for t in received[:20]:
        assert t.symbol is not None and t.timestamp is not None
        same_ms = rest.list_trades(
            t.symbol,
            timestamp_gte=t.timestamp * 1_000_000,
            timestamp_lt=(t.timestamp + 1) * 1_000_000,
            limit=1000,
        )
        assert (t.id, t.price, t.size) in {(r.id, r.price, r.size) for r in same_ms}


def test_bars_carry_the_official_open_only_once_the_session_has_opened() -> None:
    day = FRIDAY_OPEN.date()
    tape = build_tape(market.DEFAULT_SEED, ["AAPL"], day)
    _, open_ns, _, _ = history.session_bounds_ns(day)
    step = PlaybackStep(tape, open_ns - 5 * 60 * 10**9, open_ns + 5 * 60 * 10**9)
    bars = [json.loads(e) for e in step.render(0).loose]
    before = [b for b in bars if b["e"] * 1_000_000 <= open_ns]
    after = [b for b in bars if b["e"] * 1_000_000 > open_ns]
    official = float(history.day_bar(market.DEFAULT_SEED, "AAPL", day).o[0])
    assert before and all(b["op"] == 0 for b in before)
    assert after and all(b["op"] == official for b in after)
