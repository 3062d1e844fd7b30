"""The sender thread against a fake tickerplant subprocess: login, confirmation, and the faults
a real tickerplant has (absent, killed and restarted, stalled, refusing the login)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mesh.config import KdbTarget, Secret
from mesh.kdb.batcher import Batcher
from mesh.kdb.buffer import Chunk
from mesh.kdb.sender import Sender, SenderOptions
from tests.conftest import free_port
from tests.kdb.conftest import quotes
from tests.kdb.tickerplant import FakeTickerplant, cpu_seconds

FAST = SenderOptions(
    confirm_interval=0.1,
    reconnect_initial=0.05,
    reconnect_max=0.2,
    connect_timeout=0.5,
    send_timeout=0.5,
)


def quote_chunks(n_chunks: int, rows: int, start: int = 0) -> list[Chunk]:
    out: list[Chunk] = []
    batcher = Batcher(out.append, batch_rows=rows)
    batcher.add(quotes(n_chunks * rows, start))
    return out


def sequences(tp: FakeTickerplant) -> list[int]:
    names = [
        "time",
        "sym",
        "bid_price",
        "bid_size",
        "ask_price",
        "ask_size",
        "bid_exchange",
        "ask_exchange",
        "condition",
        "tape",
        "sequence",
    ]
    return [s for upd in tp.upds("quote") for s in upd.column("sequence", names)]


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_login_carries_the_credentials_and_each_batch_is_followed_by_a_confirming_sync(
    make_tp: Any,
) -> None:
    tp = make_tp()
    port = tp.start()
    sender = Sender(KdbTarget("127.0.0.1", port, "feed", Secret("s3cret")), FAST)
    sender.start()
    for chunk in quote_chunks(3, 10):
        sender.submit(chunk)
    assert sender.flush(5)
    sender.stop()
    assert tp.logins() == ["feed:s3cret"]
    kinds = [raw[1] for raw in tp.raw_messages()]
    assert kinds[0] == 1  # the connection is confirmed before any data is sent
    assert kinds.count(0) == 3 and kinds[-1] == 1  # three async .u.upd, then a sync chaser
    assert sequences(tp) == list(range(30))
    snap = sender.snapshot()
    assert snap["tables"]["quote"] == {
        "rows": 30,
        "batches": 3,
        "confirmed": 30,
        "dropped": 0,
        "rejected": 0,
    }
    assert "s3cret" not in repr(snap)


def test_a_tickerplant_absent_at_start_gets_the_queued_rows_once_it_appears(make_tp: Any) -> None:
    port = free_port()
    sender = Sender(KdbTarget("127.0.0.1", port), FAST)
    sender.start()
    for chunk in quote_chunks(5, 20):
        sender.submit(chunk)
    wait(lambda: "cannot connect" in sender.snapshot()["last_error"], 3, "a connection error")
    assert not sender.connected and sender.snapshot()["queue_rows"] == 100
    tp = make_tp()
    tp.start(port)
    assert sender.flush(5)
    sender.stop()
    assert sequences(tp) == list(range(100))


def test_a_tickerplant_killed_mid_stream_and_restarted_loses_no_row(make_tp: Any) -> None:
    port = free_port()
    tp = make_tp()
    tp.start(port)
    sender = Sender(
        KdbTarget("127.0.0.1", port),
        SenderOptions(
            confirm_interval=0.5,
            reconnect_initial=0.05,
            reconnect_max=0.2,
            connect_timeout=0.5,
            send_timeout=1.0,
        ),
    )
    sender.start()
    chunks = quote_chunks(60, 50)
    for chunk in chunks[:20]:
        sender.submit(chunk)
        time.sleep(0.005)
    tp.wait_for(lambda: len(sequences(tp)) >= 500, what="rows before the kill")
    tp.kill()
    for chunk in chunks[20:40]:  # sent into the void: some "succeed" at the socket level
        sender.submit(chunk)
        time.sleep(0.005)
    wait(lambda: not sender.connected, 5, "the publisher to notice the dead tickerplant")
    tp.start(port)
    for chunk in chunks[40:]:
        sender.submit(chunk)
    assert sender.flush(10)
    sender.stop()
    snap = sender.snapshot()
    got = sequences(tp)  # both lives of the tickerplant appended to one record
    assert snap["dropped"] == 0 and snap["rejected"] == 0
    assert set(got) == set(range(3000))  # every row arrived (duplicates allowed: at-least-once)
    assert snap["reconnects"] >= 1 and snap["disconnects"] >= 1
    assert (
        snap["confirmed"] == 3000
    )  # each message is confirmed once, after its replay if it needed one


def test_a_stalled_tickerplant_bounds_memory_counts_drops_and_spins_no_core(make_tp: Any) -> None:
    tp = make_tp(stall_after=5)
    port = tp.start()
    options = SenderOptions(
        max_queue_rows=20_000,
        max_unconfirmed_rows=5_000,
        confirm_interval=0.2,
        reconnect_initial=0.05,
        reconnect_max=0.2,
        connect_timeout=0.3,
        send_timeout=0.3,
    )
    sender = Sender(KdbTarget("127.0.0.1", port), options)
    sender.start()
    submitted = 0
    start = time.monotonic()
    for i in range(60):  # 300,000 rows at a tickerplant that stops reading after 5 messages
        for chunk in quote_chunks(5, 1000, i * 5000):
            t0 = time.monotonic()
            sender.submit(chunk)
            assert time.monotonic() - t0 < 0.05, "submit must never wait on kdb+"
            submitted += chunk.rows
    assert time.monotonic() - start < 20
    wait(
        lambda: not sender.connected and sender.snapshot()["last_error"],
        5,
        "the stall to be noticed",
    )
    snap = sender.snapshot()
    assert (
        snap["queue_rows"] <= 20_000 and snap["unconfirmed_rows"] <= 10_000
    )  # memory stays bounded
    assert snap["dropped"] > 200_000  # and what could not be kept is counted
    assert (
        snap["dropped"] + snap["queue_rows"] + snap["unconfirmed_rows"] + snap["confirmed"]
        >= submitted - 5_000
    )
    cpu = cpu_seconds()
    time.sleep(1.5)  # the sender keeps trying: a blocked send and a backoff, no busy loop
    assert cpu_seconds() - cpu < 0.3
    assert (
        "stopped reading" in snap["last_error"]
        or "handshake" in snap["last_error"]
        or "did not answer" in snap["last_error"]
    )
    sender.stop(drain_timeout=0.2)


def test_a_refused_login_is_reported_without_the_password(make_tp: Any) -> None:
    tp = make_tp(users="feed:right")
    port = tp.start()
    sender = Sender(KdbTarget("127.0.0.1", port, "feed", Secret("wrong-pass")), FAST)
    sender.start()
    wait(lambda: sender.snapshot()["last_error"], 3, "the refusal")
    error = sender.snapshot()["last_error"]
    sender.stop()
    assert "refused user 'feed'" in error and "wrong-pass" not in error
    assert tp.logins()[0] == "feed:wrong-pass"
