"""Replay of a recording through the sim's WebSocket feed: values, order, pacing, the end, bad input."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
import websockets
from massive import WebSocketClient
from massive.websocket.models import EquityAgg, EquityQuote, EquityTrade

from mesh.config import Config
from mesh.recorder.replay import replay_events
from mesh.recorder.session import Session
from mesh.schema import Quote, QuoteBatch, Trade, TradeBatch
from mesh.sim.replay import ReplaySource, open_recording
from mesh.sim.server import SimServer
from mesh.sim.service import main as sim_main
from tests.recorder.helpers import quotes, trades

ROOT = Path(__file__).resolve().parents[2]
KEY = "sim-demo-key"


def in_lots(batch: QuoteBatch, sub_ms: bool = False) -> QuoteBatch:
    """Quote sizes in whole round lots (what Massive's WebSocket can carry), optionally sub-ms times."""
    ts = [t + (i % 7) * 123_456 for i, t in enumerate(batch.ts_event)] if sub_ms else batch.ts_event
    return msgspec.structs.replace(
        batch,
        bid_size=[s * 100 for s in batch.bid_size],
        ask_size=[s * 100 for s in batch.ask_size],
        ts_event=ts,
    )


def record(data_dir: Path, name: str, qs: list[QuoteBatch], ts: list[TradeBatch]) -> Path:
    session = Session(name, data_dir=data_dir).open()
    for q in qs:
        session.write("quotes", q)
    for t in ts:
        session.write("trades", t)
    session.stop()
    return data_dir / "recordings" / name


def replaying(folder: Path, **options: Any) -> SimServer:
    return SimServer(
        rest=False,
        s3=False,
        source=ReplaySource(open_recording(str(folder), folder.parent), **options),
    )


async def open_ws(url: str, subscribe: str) -> Any:
    ws = await websockets.connect(url, max_size=None)
    await ws.recv()
    await ws.send(json.dumps({"action": "auth", "params": KEY}))
    await ws.recv()
    await ws.send(json.dumps({"action": "subscribe", "params": subscribe}))
    return ws


async def read_events(
    ws: Any, count: int, timeout: float = 10
) -> list[tuple[float, dict[str, Any]]]:
    """(arrival time, event) for the next `count` data events."""
    got: list[tuple[float, dict[str, Any]]] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            frame = json.loads(await ws.recv())
            now = time.monotonic()
            got += [(now, m) for m in frame if m["ev"] != "status"]
    return got


async def test_the_official_client_receives_the_recorded_events_in_order_with_their_values(
    tmp_path: Path,
) -> None:
    folder = record(
        tmp_path,
        "demo",
        [in_lots(quotes(i * 100, 100), sub_ms=True) for i in range(3)],
        [trades(i * 30, 30) for i in range(2)],
    )
    recorded = list(replay_events(folder))
    bars_1s, bars_1m = (
        pq.read_table(folder / f"bars_{i}.parquet").to_pylist() for i in ("1s", "1m")
    )
    total = len(recorded) + len(bars_1s) + len(bars_1m)
    async with replaying(folder, speed=None) as sim:
        client = WebSocketClient(
            api_key=KEY,
            feed=f"127.0.0.1:{sim.ws_port}",
            secure=False,
            subscriptions=["Q.*", "T.*", "A.*", "AM.*"],
        )
        got: list[Any] = []
        everything = asyncio.Event()

        async def handle(msgs: list[Any]) -> None:
            got.extend(msgs)
            if len(got) >= total:
                everything.set()

        task = asyncio.create_task(client.connect(handle))
        await asyncio.wait_for(everything.wait(), 15)
        while not sim.counters()["replay_done"]:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        counters = sim.counters()
        assert counters["replay_events"] == counters["replay_total"] == total
        assert (
            counters["connections"] == 1 and not task.done()
        )  # the replay ended, the connection did not
        await client.close()
        await asyncio.wait_for(task, 5)

    data = [m for m in got if isinstance(m, EquityQuote | EquityTrade)]
    assert len(got) == total
    assert [(type(m) is EquityQuote, m.symbol, m.sequence_number) for m in data] == [
        (isinstance(e, Quote), e.symbol, e.sequence) for e in recorded
    ]
    for m, e in zip(data, recorded, strict=True):
        assert m.timestamp == e.ts_event // 1_000_000  # Massive's protocol carries milliseconds
        if isinstance(m, EquityQuote):
            assert isinstance(e, Quote)
            assert (m.bid_price, m.ask_price, m.bid_size, m.ask_size) == (
                e.bid_price,
                e.ask_price,
                e.bid_size // 100,
                e.ask_size // 100,
            )
            assert (m.bid_exchange_id, m.ask_exchange_id, m.condition, m.tape) == (
                e.bid_exchange,
                e.ask_exchange,
                e.condition,
                e.tape,
            )
        else:
            assert isinstance(e, Trade)
            assert (m.price, m.size, m.id, m.exchange, m.conditions or []) == (
                e.price,
                e.size,
                e.trade_id,
                e.exchange,
                e.conditions,
            )
    aggs = [m for m in got if isinstance(m, EquityAgg)]
    assert sorted(
        (a.event_type, a.symbol, a.start_timestamp, a.volume, a.close) for a in aggs
    ) == sorted(
        [
            ("A", b["symbol"], b["ts_start"].timestamp() * 1000 // 1, b["volume"], b["close"])
            for b in bars_1s
        ]
        + [
            ("AM", b["symbol"], b["ts_start"].timestamp() * 1000 // 1, b["volume"], b["close"])
            for b in bars_1m
        ]
    )


async def test_pacing_follows_the_recorded_gaps_divided_by_speed(tmp_path: Path) -> None:
    # 201 quotes received 10 ms apart: a 2 s recording
    folder = record(tmp_path, "two_seconds", [in_lots(quotes(0, 201, step_ns=10_000_000))], [])
    for speed, low, high in ((10.0, 0.15, 0.8), (None, 0.0, 0.6)):
        async with replaying(folder, speed=speed) as sim:
            ws = await open_ws(sim.ws_url, "Q.*")
            got = await read_events(ws, 201)
            took = got[-1][0] - got[0][0]
            assert low <= took <= high, (speed, took)
            assert [m["q"] for _, m in got] == list(range(201))
            await ws.close()


async def test_the_delayed_feed_shifts_replayed_times_and_loop_starts_over(tmp_path: Path) -> None:
    folder = record(tmp_path, "short", [in_lots(quotes(0, 20))], [trades(0, 5)])
    async with replaying(folder, speed=None, loop=True) as sim:
        live = await open_ws(sim.ws_url, "Q.*,T.*")
        delayed = await open_ws(sim.delayed_ws_url, "Q.*,T.*")
        first = [m for _, m in await read_events(live, 75)]  # three passes of 25 events
        shifted = [m for _, m in await read_events(delayed, 25)]
        assert (
            [m["q"] for m in first[:25]]
            == [m["q"] for m in first[25:50]]
            == [m["q"] for m in first[50:]]
        )
        assert [m["t"] - 15 * 60 * 1000 for m in first[:25]] == [m["t"] for m in shifted]
        assert sim.counters()["replay_passes"] >= 2 and not sim.counters()["replay_done"]
        await live.close()
        await delayed.close()


async def test_an_empty_recording_says_so_and_idles(tmp_path: Path) -> None:
    folder = record(tmp_path, "empty", [], [])
    source = ReplaySource(open_recording(str(folder), tmp_path))
    async with SimServer(rest=False, s3=False, source=source) as sim:
        ws = await open_ws(sim.ws_url, "Q.*")
        await asyncio.sleep(0.3)
        assert sim.counters()["replay_state"] == "empty" and sim.counters()["replay_total"] == 0
        assert "empty" in source.message()
        assert sim.feed_task is not None and not sim.feed_task.done()
        await ws.close()


def test_a_missing_or_unreadable_recording_is_one_clear_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"MESH_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "PYKX_UNLICENSED": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "run", "sim", "--replay", "nope", "--ws-port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"massive run sim: no dataset 'nope': not a recording in {tmp_path / 'recordings'}, "
        f"not a historical dataset in {tmp_path / 'historical'}, not a path; "
        "the data folder has no recordings or historical datasets yet"
    )
    assert "Traceback" not in proc.stderr + proc.stdout

    config = Config.load({"MESH_DATA_DIR": str(tmp_path)}, cwd=tmp_path)
    assert sim_main(config, ["--replay", str(tmp_path / "no" / "such")]) == 2
    assert (
        capsys.readouterr().err
        == f"massive run sim: no dataset at {tmp_path / 'no' / 'such'}: no such file or folder\n"
    )
    (tmp_path / "not_a_recording").mkdir()
    assert sim_main(config, ["--replay", str(tmp_path / "not_a_recording")]) == 2
    assert "the folder holds no Parquet files" in capsys.readouterr().err
    history = tmp_path / "historical" / "daily"
    history.mkdir(parents=True)
    (history / "manifest.json").write_text('{"kind": "historical", "schema_version": 2}')
    assert sim_main(config, ["--replay", "daily"]) == 2
    assert f"{history} is not a recording (it is a historical dataset)" in capsys.readouterr().err
    folder = record(tmp_path, "broken", [in_lots(quotes(0, 10))], [])
    part = next((folder / "quotes").glob("part-*.parquet"))
    part.write_bytes(b"not parquet")
    assert sim_main(config, ["--replay", "broken"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"massive run sim: {part}: not a readable Parquet file (truncated")
        and err.count("\n") == 1
    )
