"""`massive run kdb` as a user runs it: a subprocess between a real bus and a fake tickerplant."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from mesh import auth, topics, wire
from mesh.bus import Bus
from mesh.client import Publisher, Subscriber
from mesh.config import Config
from mesh.kdb.schema import NS_PER_DAY, TABLES
from mesh.schema import Fill
from tests.conftest import free_port
from tests.kdb.conftest import Q_EPOCH, bars, paper_records, quotes, trades
from tests.kdb.tickerplant import FakeTickerplant, cpu_seconds

ROOT = Path(__file__).resolve().parents[2]
QUOTE_COLS = TABLES["quote"].names


class KdbProcess:
    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mesh.cli", "run", "kdb", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def run_kdb(mesh_environ: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., KdbProcess]]:
    started: list[KdbProcess] = []

    def run(*args: str, tickerplant: str | None = None) -> KdbProcess:
        env = dict(mesh_environ)
        if tickerplant:
            env["KDB_TICKERPLANT"] = tickerplant
        proc = KdbProcess(env, tmp_path / f"kdb{len(started)}.log", *args)
        started.append(proc)
        return proc

    yield run
    for proc in started:
        proc.stop()


def next_payload(
    sub: Subscriber,
    topic: str,
    predicate: Callable[[Any], bool] = lambda _: True,
    timeout: float = 10,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = sub.recv(timeout=0.2)
        if msg is not None and msg.topic == topic and predicate(msg.payload):
            return msg.payload
    raise AssertionError(f"no {topic} message matching the condition within {timeout}s")


def warm_up(pub: Publisher, tp: FakeTickerplant) -> None:
    """Publish a marker quote until the tickerplant sees one: the service has joined the bus."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pub.publish(topics.quotes(), quotes(1, symbols=("WARM",)))
        time.sleep(0.1)
        if any("WARM" in u.column("sym", QUOTE_COLS) for u in tp.upds("quote")):
            time.sleep(0.2)  # let the marker's batch flush
            return
    raise AssertionError("the kdb service never passed data from the bus to the tickerplant")


def rows_of(tp: FakeTickerplant, table: str) -> list[Any]:
    return [u for u in tp.upds(table) if "WARM" not in u.columns[1]]


def test_bus_batches_arrive_as_typed_upd_calls_batched_by_rows_and_time(
    bus: Bus, mesh_config: Config, make_tp: Any, run_kdb: Any
) -> None:
    tp = make_tp()
    port = tp.start()
    kdb = run_kdb("--batch-rows", "100", "--flush-ms", "50", tickerplant=f"127.0.0.1:{port}")
    pub = Publisher("test", mesh_config.bus_pub)
    stats_sub = Subscriber([topics.stats("kdb")], mesh_config.bus_sub)
    warm_up(pub, tp)

    for i in range(10):  # 2,500 quotes in bus batches of 250
        pub.publish(topics.quotes(), quotes(250, i * 250))
    tp.wait_for(lambda: sum(u.rows for u in rows_of(tp, "quote")) >= 2500, what="2,500 quotes")
    upds = rows_of(tp, "quote")
    assert all(u.function == ".u.upd" and u.msg_type == 0 for u in upds)
    assert all(u.types == [16, 11, 9, 7, 9, 7, 7, 7, 7, 7, 7, 12, 12] for u in upds)
    assert (
        max(u.rows for u in upds) == 100 and sum(u.rows == 100 for u in upds) >= 20
    )  # cut at N rows
    assert [s for u in upds for s in u.column("sequence", QUOTE_COLS)] == list(range(2500))

    sent = time.monotonic()
    pub.publish(topics.trades(), trades(30))  # fewer than N rows: sent when the timer fires
    pub.publish(topics.bars("1m"), bars(3, "1m"))
    pub.publish(topics.bars("1s"), bars(2, "1s"))
    tp.wait_for(
        lambda: rows_of(tp, "trade") and sum(u.rows for u in rows_of(tp, "bar")) == 5,
        what="trades and bars",
    )
    assert time.monotonic() - sent < 2
    [trade_upd] = rows_of(tp, "trade")
    assert trade_upd.rows == 30 and trade_upd.item_types[5:7] == [{10}, {7}]
    bar_rows = [iv for u in rows_of(tp, "bar") for iv in u.column("interval", TABLES["bar"].names)]
    assert sorted(bar_rows) == ["1m", "1m", "1m", "1s", "1s"]

    stats = next_payload(
        stats_sub,
        topics.stats("kdb"),
        lambda p: p.stats.get("tables", {}).get("trade", {}).get("confirmed") == 30,
    )
    s = stats.stats
    assert s["connected"] is True and s["reconnects"] == 0 and s["dropped"] == 0
    assert s["tables"]["quote"]["rows"] >= 2500 and s["tables"]["quote"]["batches"] >= 25
    assert {
        "rows_per_s",
        "queue_rows",
        "queue_limit",
        "unconfirmed_rows",
        "batch_rows",
        "flush_ms",
    } <= set(s)
    assert all("rows_per_s" in t for t in s["tables"].values())
    pub.close(), stats_sub.close()
    assert kdb.stop() == 0


def test_without_kdb_tickerplant_the_service_idles_as_disabled(
    bus: Bus, mesh_config: Config, run_kdb: Any
) -> None:
    sub = Subscriber([topics.heartbeat("kdb")], mesh_config.bus_sub)
    kdb = run_kdb()
    beat = next_payload(sub, topics.heartbeat("kdb"))
    assert beat.state == "disabled" and "KDB_TICKERPLANT" in beat.message
    assert beat.counters["connection"] == "disabled"
    sub.close()
    assert kdb.stop() == 0


def test_a_late_tickerplant_gets_the_data_and_credentials_never_show(
    bus: Bus, mesh_config: Config, make_tp: Any, run_kdb: Any
) -> None:
    password = "Sup3r-Secret-pw"
    port = free_port()
    sys_sub = Subscriber(["sys."], mesh_config.bus_sub)
    kdb = run_kdb("--reconnect-max-s", "0.5", tickerplant=f"127.0.0.1:{port}:feed:{password}")
    beat = next_payload(
        sys_sub,
        topics.heartbeat("kdb"),
        lambda b: b.state == "degraded" and "cannot connect" in b.message,
    )
    assert beat.counters["connection"] == "down"
    pub = Publisher("test", mesh_config.bus_pub)
    time.sleep(0.5)
    pub.publish(topics.quotes(), quotes(40))  # queued while the tickerplant is away
    next_payload(sys_sub, topics.stats("kdb"), lambda p: p.stats.get("queue_rows") == 40)

    tp = make_tp()
    tp.start(port)
    tp.wait_for(lambda: sum(u.rows for u in tp.upds("quote")) == 40, what="the queued quotes")
    assert tp.logins()[0] == f"feed:{password}"  # it did log in with them...
    next_payload(
        sys_sub,
        topics.heartbeat("kdb"),
        lambda b: b.state == "ok" and b.counters["connection"] == "up",
    )

    raw = zmq.Context.instance().socket(zmq.SUB)  # ...and they appear nowhere else
    raw.subscribe(b"sys.")
    auth.secure_client(raw, auth.client_keys(mesh_config))
    raw.connect(mesh_config.bus_sub)
    deadline = time.monotonic() + 1.5
    seen = b""
    while time.monotonic() < deadline:
        if raw.poll(100):
            seen += b"".join(raw.recv_multipart())
    raw.close(linger=0)
    assert b"kdb" in seen and password.encode() not in seen
    pub.close(), sys_sub.close()
    assert kdb.stop() == 0
    log = kdb.output()
    assert "cannot connect" in log and f"127.0.0.1:{port}" in log
    assert password not in log and "feed:" not in log


def test_a_stalled_tickerplant_never_blocks_the_bus_reader_and_drops_show_on_the_bus(
    bus: Bus, mesh_config: Config, make_tp: Any, run_kdb: Any
) -> None:
    tp = make_tp(stall_after=3)
    port = tp.start()
    kdb = run_kdb(
        "--batch-rows", "1000", "--max-queue-rows", "5000", tickerplant=f"127.0.0.1:{port}"
    )
    pub = Publisher("test", mesh_config.bus_pub)
    sub = Subscriber([topics.stats("kdb"), topics.heartbeat("kdb")], mesh_config.bus_sub)
    warm_up(pub, tp)
    batch = quotes(1000)
    for _ in range(200):  # 200,000 quotes; the tickerplant reads 3 messages, then nothing
        pub.publish(topics.quotes(), batch)
    stats = next_payload(
        sub,
        topics.stats("kdb"),
        lambda p: (
            p.stats.get("dropped", 0) > 150_000
            and p.stats["tables"]["quote"]["dropped"] == p.stats["dropped"]
        ),
        timeout=20,
    )
    assert stats.stats["queue_rows"] <= 5000
    cpu = cpu_seconds(kdb.proc.pid)
    beats = [
        next_payload(sub, topics.heartbeat("kdb")) for _ in range(2)
    ]  # still beating: the loop is free
    assert cpu_seconds(kdb.proc.pid) - cpu < 0.5  # over ~1-2 s: waiting, not spinning
    assert beats[-1].counters["dropped"] > 150_000
    pub.close(), sub.close()
    kdb.stop()


def paper_rows(tp: FakeTickerplant, table: str) -> list[dict[str, Any]]:
    """Every row the tickerplant received for `table`, as {q column: value}."""
    names = TABLES[table].names
    return [
        dict(zip(names, row, strict=True))
        for u in tp.upds(table)
        for row in zip(*u.columns, strict=True)
    ]


def test_paper_orders_fills_and_pnl_arrive_one_row_per_message_in_their_tables(
    bus: Bus, mesh_config: Config, make_tp: Any, run_kdb: Any
) -> None:
    tp = make_tp()
    port = tp.start()
    kdb = run_kdb("--flush-ms", "50", tickerplant=f"127.0.0.1:{port}")
    pub = Publisher("strategy", mesh_config.bus_pub)
    stats_sub = Subscriber([topics.stats("kdb")], mesh_config.bus_sub)
    warm_up(pub, tp)

    orders, fills, pnls = paper_records("momo", 3)
    other = paper_records("meanrev", 1)
    for order, fill, pnl in zip(orders, fills, pnls, strict=True):
        pub.publish(topics.paper(topics.ORDER, "momo"), order)
        pub.publish(topics.paper(topics.FILL, "momo"), fill)
        pub.publish(topics.paper(topics.PNL, "momo"), pnl)
    pub.publish(topics.paper(topics.FILL, "meanrev"), other[1][0])
    tp.wait_for(
        lambda: (
            len(paper_rows(tp, "order")) == 3
            and len(paper_rows(tp, "fill")) == 4
            and len(paper_rows(tp, "pnl")) == 3
        ),
        what="3 orders, 4 fills and 3 P&L rows",
    )
    upds = [u for table in ("order", "fill", "pnl") for u in tp.upds(table)]
    assert all(u.function == ".u.upd" and u.msg_type == 0 for u in upds)
    # q types: timespan, symbol, symbol (name), then floats, timestamps and longs as in q/sym.q
    assert {tuple(u.types) for u in tp.upds("order")} == {(16, 11, 11, 9, 9, 12, 12, 7)}
    assert {tuple(u.types) for u in tp.upds("fill")} == {(16, 11, 11, 7, 9, 9, 9, 9, 12, 9, 9)}
    assert {tuple(u.types) for u in tp.upds("pnl")} == {(16, 11, 11, 12, 9, 9, 9, 9, 7)}

    assert paper_rows(tp, "order") == [
        {
            "time": o.ts_decided % NS_PER_DAY,
            "sym": o.symbol,
            "name": "momo",
            "qty": o.qty,
            "target": o.target,
            "bar_end": o.bar_end - Q_EPOCH,
            "ts_decided": o.ts_decided - Q_EPOCH,
            "order_id": o.order_id,
        }
        for o in orders
    ]
    assert paper_rows(tp, "fill") == [
        {
            "time": f.ts_event % NS_PER_DAY,
            "sym": f.symbol,
            "name": f.name,
            "order_id": f.order_id,
            "qty": f.qty,
            "price": f.price,
            "ref_price": f.ref_price,
            "fee": f.fee,
            "ts_event": f.ts_event - Q_EPOCH,
            "position": f.position,
            "cash": f.cash,
        }
        for f in [*fills, other[1][0]]
    ]
    assert paper_rows(tp, "pnl") == [
        {
            "time": p.ts % NS_PER_DAY,
            "sym": p.symbol,
            "name": "momo",
            "ts": p.ts - Q_EPOCH,
            "position": p.position,
            "cash": p.cash,
            "equity": p.equity,
            "initial_cash": p.initial_cash,
            "fill_count": p.fills,
        }
        for p in pnls
    ]

    stats = next_payload(
        stats_sub,
        topics.stats("kdb"),
        lambda p: p.stats.get("tables", {}).get("pnl", {}).get("confirmed") == 3,
    )
    tables = stats.stats["tables"]
    assert (tables["order"]["rows"], tables["fill"]["rows"], tables["pnl"]["rows"]) == (3, 4, 3)
    assert tables["fill"]["confirmed"] == 4 and tables["fill"]["batches"] >= 1
    assert all(tables[t]["rejected"] == 0 and tables[t]["dropped"] == 0 for t in ("order", "fill"))
    pub.close(), stats_sub.close()
    assert kdb.stop() == 0


def test_garbage_on_a_paper_topic_is_counted_and_the_next_fill_still_reaches_kdb(
    bus: Bus, mesh_config: Config, make_tp: Any, run_kdb: Any
) -> None:
    tp = make_tp()
    port = tp.start()
    kdb = run_kdb("--flush-ms", "50", tickerplant=f"127.0.0.1:{port}")
    pub = Publisher("test", mesh_config.bus_pub)
    beats = Subscriber([topics.heartbeat("kdb")], mesh_config.bus_sub)
    warm_up(pub, tp)

    raw = zmq.Context.instance().socket(zmq.PUB)  # a peer with the mesh's key, sending junk
    raw.linger = 1000
    auth.secure_client(raw, auth.client_keys(mesh_config))
    raw.connect(mesh_config.bus_pub)
    time.sleep(0.5)
    topic = "strat.fill.x"
    good = paper_records("x", 1)[1][0]
    fields = {f: getattr(good, f) for f in good.__struct_fields__}
    junk = [
        [topic.encode(), b"\x00not msgpack at all"],
        [topic.encode()],  # one frame
        [topic.encode(), b"\x92\x94\x01\xa4test\x01\x01\x93\xa4fill"],  # a short payload
        wire.encode(topic, Fill(**{**fields, "price": float("nan")}), src="junk", seq=1),
        wire.encode(topic, Fill(**{**fields, "qty": float("inf")}), src="junk", seq=2),
        wire.encode(topic, Fill(**{**fields, "name": ""}), src="junk", seq=3),
        wire.encode(topic, Fill(**{**fields, "order_id": -1}), src="junk", seq=4),
        wire.encode(topic, Fill(**{**fields, "ts_event": -5}), src="junk", seq=5),
        wire.encode(topic, quotes(1, symbols=("JUNK",)).symbol, src="junk", seq=6),
    ]
    for frames in junk:
        raw.send_multipart(frames)
    raw.send_multipart(wire.encode(topic, good, src="junk", seq=7))

    tp.wait_for(lambda: len(paper_rows(tp, "fill")) == 1, what="the fill sent after the junk")
    [row] = paper_rows(tp, "fill")
    assert (row["name"], row["sym"], row["price"]) == ("x", good.symbol, good.price)
    beat = next_payload(
        beats, topics.heartbeat("kdb"), lambda b: b.counters.get("malformed", 0) >= len(junk)
    )
    assert beat.counters["malformed"] == len(junk) and beat.state == "ok"
    assert {"malformed_frames", "malformed_body", "malformed_payload"} <= set(beat.counters)
    assert kdb.proc.poll() is None
    assert all(not u.table.startswith("strat") for u in tp.upds())
    assert {u.table for u in tp.upds()} <= {"quote", "fill"}
    raw.close(linger=0)
    pub.close(), beats.close()
    assert kdb.stop() == 0
