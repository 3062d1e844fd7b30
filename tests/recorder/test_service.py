"""The recorder service on a real bus: commands, lossless recording, bad input, a full disk."""

from __future__ import annotations

import asyncio
import errno
import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import zmq

from mesh import auth, cli, client, datasets, service, topics, wire
from mesh.bus import Bus
from mesh.client import Publisher, Subscriber
from mesh.config import Config
from mesh.control import ControlError
from mesh.recorder import service as recorder_service
from mesh.recorder import wal
from mesh.recorder.service import RecorderService
from mesh.recording import read_recording
from mesh.schema import Fill, Gap, GapBatch, Heartbeat, Order, Pnl
from tests.recorder.helpers import T0, quotes, trades, wait_for


@pytest.fixture
async def recorder(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RecorderService]:
    for key, value in mesh_environ.items():
        monkeypatch.setenv(key, value)
    svc = RecorderService(mesh_config, slice_seconds=0.3)
    task = asyncio.create_task(service._amain(svc, "recorder"))
    await asyncio.to_thread(wait_for, lambda: _up(mesh_config))
    yield svc
    svc.runtime.stopping.set()  # type: ignore[union-attr]
    await asyncio.wait_for(task, 10)


def _up(config: Config) -> bool:
    try:
        return client.call("recorder", "ping", config=config, timeout=0.5) == "pong"
    except ControlError:
        return False


async def call(config: Config, cmd: str, **args: Any) -> Any:
    return await asyncio.to_thread(client.call, "recorder", cmd, args, config=config, timeout=5)


async def massive(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


def publish(config: Config, batches: list[Any], topic: str) -> None:
    with Publisher("testpub", config.bus_pub) as pub:
        time.sleep(0.3)  # the bus forwards our subscribers' subscriptions to this new publisher
        for batch in batches:
            pub.publish(topic, batch)


def rows(config: Config, name: str, table: str) -> pd.DataFrame:
    return (
        ds.dataset(config.data_dir / "recordings" / name / table, format="parquet")
        .to_table()
        .to_pandas()
    )


async def test_records_every_row_sent_and_start_stop_append_through_the_cli(
    recorder: RecorderService, mesh_config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await massive("record", "start", "demo") == 0
    assert "recording 'demo'" in capsys.readouterr().out
    await asyncio.sleep(0.3)  # the recorder's subscription reaches the bus
    qs = [quotes(i * 1000, 1000) for i in range(50)]
    ts = [trades(i * 100, 100) for i in range(20)]
    await asyncio.gather(
        asyncio.to_thread(publish, mesh_config, qs, topics.quotes()),
        asyncio.to_thread(publish, mesh_config, ts, topics.trades()),
    )
    await asyncio.to_thread(
        wait_for,
        lambda: (
            recorder.session.rows["quotes"] == 50_000 and recorder.session.rows["trades"] == 2_000
        ),
    )
    status = await call(mesh_config, "status")
    assert status["recording"] and status["session"]["session"] == "demo"
    assert await massive("record", "stop") == 0
    q, t = rows(mesh_config, "demo", "quotes"), rows(mesh_config, "demo", "trades")
    assert sorted(q["sequence"]) == list(range(50_000))  # none missing, none duplicated
    assert sorted(t["sequence"]) == list(range(2_000))
    # append with a symbol filter
    assert await massive("record", "start", "demo", "--symbols", "AAPL") == 0
    await asyncio.to_thread(publish, mesh_config, [quotes(50_000, 1000)], topics.quotes())
    await asyncio.to_thread(wait_for, lambda: recorder.session.rows["quotes"] == 250)
    capsys.readouterr()
    assert await massive("record", "stop", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert (
        report["session"]["state"] == "stopped"
        and report["session"]["rows_total"]["quotes"] == 50_250
    )
    q = rows(mesh_config, "demo", "quotes")
    assert len(q) == 50_250 and q["sequence"].is_unique
    manifest = json.loads(
        (mesh_config.data_dir / "recordings" / "demo" / "manifest.json").read_text()
    )
    assert manifest["rows"]["quotes"] == 50_250 and len(manifest["runs"]) == 2 and manifest["clean"]
    assert manifest["symbols"] == ["AAPL", "MSFT", "NVDA", "TSLA"]


async def test_commands_answer_clearly(
    recorder: RecorderService, mesh_config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ControlError, match="not recording"):
        await call(mesh_config, "stop")
    await call(mesh_config, "start", name="one")
    with pytest.raises(ControlError, match="already recording 'one'"):
        await call(mesh_config, "start", name="two")
    assert await massive("record", "status") == 0
    assert capsys.readouterr().out.startswith("one: recording")
    await call(mesh_config, "stop")
    with pytest.raises(ControlError, match="invalid recording name"):
        await call(mesh_config, "start", name="../etc")
    assert await massive("record", "status") == 0
    assert capsys.readouterr().out.startswith("one: stopped")


async def test_unknown_schema_and_wrong_topic_frames_are_counted_and_skipped(
    recorder: RecorderService, mesh_config: Config
) -> None:
    await call(mesh_config, "start", name="bad")
    await asyncio.sleep(0.3)

    def send() -> None:
        ctx = zmq.Context.instance()
        with ctx.socket(zmq.PUB) as sock:
            auth.secure_client(sock, auth.client_keys(mesh_config))
            sock.connect(mesh_config.bus_pub)
            time.sleep(0.3)
            header = [1, "rogue", 1, 0]
            import msgspec

            sock.send_multipart(
                [b"md.quote.stocks", msgspec.msgpack.encode([header, ["options_quotes", [1, 2]]])]
            )
            sock.send_multipart([b"md.quote.stocks", b"\xc1 not msgpack"])
            sock.send_multipart(
                wire.encode(
                    topics.quotes(), Heartbeat("x", "i", 1, "ok", 0, 1.0, {}), src="rogue", seq=2
                )
            )
            sock.send_multipart(wire.encode(topics.quotes(), quotes(0, 10), src="rogue", seq=3))
            bad = quotes(10, 10)
            sock.send_multipart(
                wire.encode(
                    topics.quotes(),
                    bad.__class__(
                        **{
                            **{f: getattr(bad, f) for f in bad.__struct_fields__},
                            "bid_price": [1.0],
                        }
                    ),
                    src="rogue",
                    seq=4,
                )
            )
            time.sleep(0.2)

    await asyncio.to_thread(send)
    await asyncio.to_thread(
        wait_for,
        lambda: recorder.sub_stats.received >= 2 and recorder.sub_stats.malformed_total >= 3,
    )
    status = await call(mesh_config, "status")
    assert status["dropped"]["malformed"] == {
        "payload": 1,
        "body": 1,
        "columns": 1,
    }  # unequal columns never reach the session
    assert status["dropped"]["unexpected"] == 1
    await call(mesh_config, "stop")
    assert len(rows(mesh_config, "bad", "quotes")) == 10


async def test_gaps_from_ingest_and_from_bus_sequences_reach_the_manifest(
    recorder: RecorderService, mesh_config: Config
) -> None:
    await call(mesh_config, "start", name="gappy")
    await asyncio.sleep(0.3)

    def send() -> None:
        with Publisher("ingest", mesh_config.bus_pub) as pub:
            time.sleep(0.3)
            pub.publish(topics.quotes(), quotes(0, 10))
            pub._seq[topics.quotes()] += 4  # four messages lost on the way
            pub.publish(topics.quotes(), quotes(10, 10))
            gap = Gap(
                symbol="AAPL",
                kind="quote",
                from_sequence=7,
                to_sequence=20,
                ts_from=T0 + 1,
                ts_to=T0 + 2,
                reason="reconnect",
            )
            pub.publish(topics.gaps(), GapBatch.from_rows([gap]))
            time.sleep(0.2)

    await asyncio.to_thread(send)
    # the bus gap, ingest's gap, and one per symbol resuming after the bus gap (the recorder's own)
    await asyncio.to_thread(wait_for, lambda: recorder.session.rows["gaps"] == 2 + 4)
    await call(mesh_config, "stop")
    manifest = json.loads(
        (mesh_config.data_dir / "recordings" / "gappy" / "manifest.json").read_text()
    )
    kinds = {g["kind"]: g for g in manifest["gaps"]}
    assert kinds["bus"]["missing"] == 4 and kinds["bus"]["source"] == "ingest"
    assert (
        kinds["quote"]["symbol"] == "AAPL"
        and kinds["quote"]["missing"] == 12
        and kinds["quote"]["reason"] == "reconnect"
    )
    assert manifest["missing_total"] == 16


async def test_disk_full_is_reported_on_the_bus_and_in_status_and_nothing_written_is_lost(
    recorder: RecorderService, mesh_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[Any] = []
    stop = threading.Event()

    def listen() -> None:
        with Subscriber([topics.event("recorder")], mesh_config.bus_sub) as sub:
            while not stop.is_set():
                msg = sub.recv(timeout=0.1)
                if msg is not None:
                    events.append(msg.payload)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    await call(mesh_config, "start", name="full")
    await asyncio.sleep(0.3)
    await asyncio.to_thread(
        publish, mesh_config, [quotes(i * 100, 100) for i in range(10)], topics.quotes()
    )
    await asyncio.to_thread(wait_for, lambda: recorder.session.rows["quotes"] == 1000)

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wal, "_write", full)
    await asyncio.to_thread(publish, mesh_config, [quotes(1000, 100)], topics.quotes())
    await asyncio.to_thread(wait_for, lambda: recorder.session.state == "failed")
    monkeypatch.undo()
    status = await call(mesh_config, "status")
    assert status["session"]["state"] == "failed" and "disk full" in status["session"]["error"]
    await asyncio.to_thread(
        wait_for, lambda: any(e.level == "error" and "disk full" in e.message for e in events)
    )
    stop.set()
    await asyncio.to_thread(
        wait_for,
        lambda: (
            (mesh_config.data_dir / "recordings" / "full" / "manifest.json").exists()
            and json.loads(
                (mesh_config.data_dir / "recordings" / "full" / "manifest.json").read_text()
            )["state"]
            == "failed"
        ),
    )
    assert sorted(rows(mesh_config, "full", "quotes")["sequence"]) == list(range(1000))
    manifest = json.loads(
        (mesh_config.data_dir / "recordings" / "full" / "manifest.json").read_text()
    )
    assert "disk full" in manifest["error"] and manifest["clean"] is False


def test_record_commands_say_clearly_when_the_mesh_is_down(
    mesh_environ: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in mesh_environ.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["record", "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("massive: no answer from the bus") and err.count("\n") == 1


def paper_session(name: str, n: int) -> tuple[list[Order], list[Fill], list[Pnl]]:
    """`n` orders of paper session `name`, a fill for each, and the P&L after each bar."""
    orders = [
        Order(
            name=name,
            symbol=SYMBOLS_TRADED[i % 2],
            qty=10.0 * (i + 1) * (1 if i % 2 == 0 else -1),
            target=0.5 if i % 2 == 0 else -0.25,
            bar_end=T0 + (i + 1) * 1_000_000_000,
            ts_decided=T0 + (i + 1) * 1_000_000_000 + 300_000,
            order_id=i // 2 + 1,
        )
        for i in range(n)
    ]
    fills = [
        Fill(
            name=name,
            symbol=o.symbol,
            order_id=o.order_id,
            qty=o.qty,
            price=100.02 + i / 100,
            ref_price=100.01 + i / 100,
            fee=0.1,
            ts_event=o.ts_decided + 500_000,
            position=o.qty,
            cash=50_000.0 - o.qty * (100.02 + i / 100) - 0.1,
        )
        for i, o in enumerate(orders)
    ]
    pnls = [
        Pnl(
            name=name,
            symbol=f.symbol,
            ts=o.bar_end + 1_000_000_000,
            position=f.position,
            cash=f.cash,
            equity=f.cash + f.position * 100.015,
            initial_cash=50_000.0,
            fills=i // 2 + 1,
        )
        for i, (o, f) in enumerate(zip(orders, fills, strict=True))
    ]
    return orders, fills, pnls


SYMBOLS_TRADED = ("AAPL", "MSFT")


def as_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows with times as ns integers, as the records carry them."""
    out = []
    for row in table.to_pylist():
        out.append(
            {k: (pd.Timestamp(v).value if isinstance(v, datetime) else v) for k, v in row.items()}
        )
    return out


async def test_a_paper_sessions_orders_fills_and_pnl_are_recorded_as_tables(
    recorder: RecorderService, mesh_config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    await call(mesh_config, "start", name="papered")
    await asyncio.sleep(0.3)
    orders, fills, pnls = paper_session("momo", 6)
    other = paper_session("meanrev", 2)

    def send() -> None:
        with Publisher("strategy", mesh_config.bus_pub) as pub:
            time.sleep(0.3)
            pub.publish(topics.quotes(), quotes(0, 100))
            for session, (os_, fs, ps) in (("momo", (orders, fills, pnls)), ("meanrev", other)):
                for order, fill, pnl in zip(os_, fs, ps, strict=True):
                    pub.publish(topics.paper(topics.ORDER, session), order)
                    pub.publish(topics.paper(topics.FILL, session), fill)
                    pub.publish(topics.paper(topics.PNL, session), pnl)

    await asyncio.to_thread(send)
    await asyncio.to_thread(
        wait_for,
        lambda: (
            (
                recorder.session.rows["orders"],
                recorder.session.rows["fills"],
                recorder.session.rows["pnl"],
            )
            == (8, 8, 8)
        ),
    )
    await call(mesh_config, "stop")

    recording = datasets.resolve("papered", mesh_config.data_dir)
    assert [n for n in recording.tables if n in ("orders", "fills", "pnl")] == [
        "orders",
        "fills",
        "pnl",
    ]
    for name, sent in (
        ("orders", [*orders, *other[0]]),
        ("fills", [*fills, *other[1]]),
        ("pnl", [*pnls, *other[2]]),
    ):
        table = recording.tables[name]
        assert table.kind.value == name and table.rows == 8
        assert as_records(datasets.read_table(table)) == [msgspec.structs.asdict(r) for r in sent]
    assert recording.tables["quotes"].rows == 100  # market data recorded alongside, as before
    assert recording.manifest["rows"]["fills"] == 8
    assert len(await asyncio.to_thread(read_recording, "papered", "pnl")) == 8

    capsys.readouterr()
    assert await massive("data", "show", "papered", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert {k: shown["rows"][k] for k in ("orders", "fills", "pnl")} == {
        "orders": 8,
        "fills": 8,
        "pnl": 8,
    }
    assert sorted(shown["symbols"]) == ["AAPL", "MSFT", "NVDA", "TSLA"]  # from the market data
    assert await massive("data", "show", "papered") == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("orders", "fills", "pnl"))


async def test_garbage_on_a_paper_topic_is_counted_and_the_next_fill_is_recorded(
    recorder: RecorderService, mesh_config: Config
) -> None:
    await call(mesh_config, "start", name="junked")
    await asyncio.sleep(0.3)
    orders, fills, _ = paper_session("x", 1)
    good = fills[0]
    fields = msgspec.structs.asdict(good)
    topic = "strat.fill.x"

    def send() -> None:
        ctx = zmq.Context.instance()
        with ctx.socket(zmq.PUB) as sock:
            auth.secure_client(sock, auth.client_keys(mesh_config))
            sock.connect(mesh_config.bus_pub)
            time.sleep(0.3)
            sock.send_multipart([topic.encode(), b"\xc1 not msgpack"])
            sock.send_multipart([topic.encode()])
            for seq, change in enumerate(
                ({"price": float("nan")}, {"name": ""}, {"order_id": -1}, {"ts_event": -5}), 1
            ):
                sock.send_multipart(
                    wire.encode(topic, Fill(**{**fields, **change}), src="rogue", seq=seq)
                )
            sock.send_multipart(wire.encode(topic, orders[0], src="rogue", seq=5))  # wrong topic
            sock.send_multipart(wire.encode(topic, good, src="rogue", seq=6))
            time.sleep(0.2)

    await asyncio.to_thread(send)
    await asyncio.to_thread(
        wait_for,
        lambda: recorder.session.rows["fills"] == 1 and recorder.sub_stats.malformed_total >= 6,
    )
    status = await call(mesh_config, "status")
    assert sum(status["dropped"]["malformed"].values()) == 6
    assert status["dropped"]["unexpected"] == 1 and status["recording"]
    await call(mesh_config, "stop")
    recording = datasets.resolve("junked", mesh_config.data_dir)
    assert {name for name, t in recording.tables.items() if t.rows} == {"fills"}
    assert as_records(datasets.read_table(recording.tables["fills"])) == [fields]


async def test_a_trickle_of_one_quote_messages_is_written_in_a_few_appends_and_loses_none(
    recorder: RecorderService, mesh_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    appends = []
    original = wal.Wal.append

    def counted(self: wal.Wal, table: str, batch: pa.RecordBatch) -> int:
        appends.append(batch.num_rows)
        return original(self, table, batch)

    monkeypatch.setattr(wal.Wal, "append", counted)
    assert await massive("record", "start", "trickle") == 0
    await asyncio.sleep(0.3)  # the recorder's subscription reaches the bus

    def trickle() -> None:
        with Publisher("testpub", mesh_config.bus_pub) as pub:
            time.sleep(0.3)
            for i in range(60):  # a quiet feed: one quote every 2 ms
                pub.publish(topics.quotes(), quotes(i, 1))
                time.sleep(0.002)

    await asyncio.to_thread(trickle)
    await asyncio.to_thread(wait_for, lambda: recorder.session.rows["quotes"] == 60)
    assert await massive("record", "stop") == 0
    assert sorted(rows(mesh_config, "trickle", "quotes")["sequence"]) == list(range(60))
    assert sum(appends) == 60 and len(appends) <= 20  # one per message without the gathering


async def test_quotes_published_just_before_record_stop_are_in_the_recording(
    recorder: RecorderService, mesh_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trickle's messages wait GATHER_SECONDS in the socket before they are read; a `stop` that
    arrives meanwhile still records what reached the recorder before it. (The wait is made long
    here, so that the stop surely arrives during it.)"""
    monkeypatch.setattr(recorder_service, "GATHER_SECONDS", 1.0)
    assert await massive("record", "start", "last") == 0
    await asyncio.sleep(0.3)  # the recorder's subscription reaches the bus

    def trickle() -> None:
        with Publisher("testpub", mesh_config.bus_pub) as pub:
            time.sleep(0.3)
            for i in range(5):
                pub.publish(topics.quotes(), quotes(i, 1))
                time.sleep(0.003)
            time.sleep(0.2)  # at the recorder, inside its wait

    await asyncio.to_thread(trickle)
    assert await massive("record", "stop") == 0
    assert sorted(rows(mesh_config, "last", "quotes")["sequence"]) == list(range(5))
