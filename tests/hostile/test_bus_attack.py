"""A running mesh under hostile bus input: every process survives, counts what it rejected, and
records none of it.

One mesh (bus, sim, ingest, recorder recording, kdb publisher into a kdb+-IPC test tickerplant,
fetcher, backtester, and a `massive tap`) takes the known attack list and 10,000 seeded mutations
of valid messages on data and control topics, from raw ZeroMQ sockets. A valid quote published
after the junk must still reach the recording, the tap and kdb+; each test below checks one
consequence of that one attack.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.dataset as ds
import pytest

from mesh.kdb.schema import TABLES
from tests.hostile import junk
from tests.hostile.attack import ROOT, Tap, Thrower, wait_until
from tests.kdb.tickerplant import FakeTickerplant
from tests.meshproc import Mesh

GENERATED = 10_000
SEED = 20_14
VALID_SYMBOL = "HOSTILE"
SERVICES = ("bus", "sim", "ingest", "recorder", "kdb", "fetcher", "backtester")
JUNK_SYMBOLS = {
    "GAPJUNK",
    "SEQJUNK",
    "COLJUNK",
    "PXNAN",
    "PXINF",
    "PXNINF",
    "PXTINY",
    "PXNEG",
    "NEGSIZE",
    "MILLION",
    "ROWJUNK",
    "FRAMEJUNK",
    "TOPICJUNK",
    "VERJUNK",
}
QUOTE_COLS = TABLES["quote"].names


@dataclass
class Attack:
    mesh: Mesh
    tp: FakeTickerplant
    tap: Tap
    thrower: Thrower
    control_sent: int
    replies: list[Any]
    recording: Path


def massive(
    env: dict[str, str], *argv: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh.cli", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def valid_quote(seq: int) -> list[bytes]:
    return junk.message(
        "md.quote.stocks",
        junk.header(src="hostile-valid", seq=seq),
        junk.quote_payload(3, VALID_SYMBOL, 101.25),
    )


def kdb_saw(tp: FakeTickerplant, symbol: str) -> bool:
    return any(symbol in u.column("sym", QUOTE_COLS) for u in tp.upds("quote"))


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    base = tmp_path_factory.mktemp("hostile")
    tp = FakeTickerplant(base / "tp.jsonl", lifetime=600)
    tp.start()
    mesh = Mesh(base / "data", {"KDB_TICKERPLANT": f"127.0.0.1:{tp.port}"})
    mesh.point_at_sim()
    tap: Tap | None = None
    thrower: Thrower | None = None
    try:
        mesh.start("bus")
        mesh.wait_up(["bus"], 20)
        mesh.start("sim", *mesh.sim_args("--rate", "100"))
        mesh.start("ingest", "--subscriptions", "Q.*,T.*")
        for name in ("recorder", "kdb", "fetcher", "backtester"):
            mesh.start(name)
        mesh.wait_up(SERVICES, 60)
        tap = Tap(mesh.env, "md.quote.", "sys.event.")
        mesh.call("recorder", "start", name="hostile")
        thrower = Thrower(mesh.config)
        # the raw publisher has joined the bus once the tap and kdb+ see its quotes
        seq = iter(range(1, 10**6))
        wait_until(
            lambda: (
                thrower.pub.send_multipart(valid_quote(next(seq)))
                or (tap.printed(b'"HOSTILE"') and kdb_saw(tp, VALID_SYMBOL))
            ),
            30,
            "the raw publisher's first quote to reach the tap and kdb+",
            0.2,
        )
        thrower.throw(junk.explicit_cases())
        thrower.throw(junk.generated(SEED, GENERATED))
        # every request is answered; on a loaded machine the last answers may take a while
        deadline = time.monotonic() + 60
        while len(thrower.replies) < thrower.sent["control"] and time.monotonic() < deadline:
            thrower.collect_replies(3.0)
        # after the junk: a valid quote with a marker sequence, which must arrive everywhere
        marker = 900_000
        thrower.pub.send_multipart(valid_quote(marker))
        control_sent = thrower.sent["control"]
        yield Attack(
            mesh,
            tp,
            tap,
            thrower,
            control_sent,
            [msgspec.msgpack.decode(r[1]) if len(r) == 2 else None for r in thrower.replies],
            base / "data" / "recordings" / "hostile",
        )
    finally:
        if thrower is not None:
            thrower.close()
        if tap is not None and tap.alive:
            tap.proc.kill()
        mesh.__exit__()
        tp.stop()


def test_every_process_is_alive_and_answers_after_the_attack(attack: Attack) -> None:
    dead = {
        name: proc.output()[-3000:] for name, proc in attack.mesh.procs.items() if not proc.alive
    }
    assert not dead, f"processes died: {json.dumps(dead, indent=1)}"
    assert attack.tap.alive, f"massive tap died: {attack.tap.stderr()[-3000:]}"
    wait_until(
        lambda: all(attack.mesh.answers(name) for name in SERVICES),
        15,
        "every service to answer ping",
    )
    services = attack.mesh.call("bus", "services")
    assert all(services[name]["up"] for name in SERVICES), {
        name: services.get(name) for name in SERVICES
    }


def test_a_valid_quote_after_the_junk_reaches_the_recording_the_tap_and_kdb(attack: Attack) -> None:
    wait_until(
        lambda: attack.tap.printed(b'"seq":900000'),
        20,
        "the tap to print the quote sent after the junk",
    )

    def marker_rows():
        return [u for u in attack.tp.upds("quote") if VALID_SYMBOL in u.column("sym", QUOTE_COLS)]

    before = len(marker_rows())
    attack.thrower.pub.send_multipart(valid_quote(900_001))
    wait_until(
        lambda: len(marker_rows()) > before, 20, "kdb+ to receive a quote sent after the junk"
    )
    status = massive(attack.mesh.env, "record", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["recording"]


def test_every_control_request_is_answered(attack: Attack) -> None:
    answered = len(attack.replies)
    assert answered == attack.control_sent, (
        f"{attack.control_sent} control requests sent, {answered} answered"
    )
    assert all(isinstance(reply, dict) and reply.get("ok") is not None for reply in attack.replies)


def test_rejections_are_counted_by_kind(attack: Attack) -> None:
    status = attack.mesh.call("recorder", "status")
    malformed = status["dropped"]["malformed"]
    assert {"frames", "topic", "body", "payload"} <= set(malformed), malformed
    kdb = attack.mesh.call("kdb", "counters")
    kinds = {key for key in kdb if key.startswith("malformed_")}
    assert (
        kdb["malformed"] > 0
        and {"malformed_frames", "malformed_topic", "malformed_body", "malformed_payload"} <= kinds
    ), kdb
    assert attack.tap.interrupt() in (0, 130)
    assert "malformed skipped" in attack.tap.stderr()


def test_kdb_receives_none_of_the_junk(attack: Attack) -> None:
    wait_until(
        lambda: attack.mesh.call("kdb", "counters").get("queue_rows") == 0,
        60,
        "the kdb publisher's queue to drain",
    )
    upds = attack.tp.upds("quote")
    symbols = {sym for u in upds for sym in u.column("sym", QUOTE_COLS)}
    assert VALID_SYMBOL in symbols
    assert not symbols & JUNK_SYMBOLS, symbols & JUNK_SYMBOLS
    for name in ("bid_price", "ask_price"):
        prices = [p for u in upds for p in u.column(name, QUOTE_COLS)]
        assert all(math.isfinite(p) and p >= 0 for p in prices), (
            f"{name}: {[p for p in prices if not (math.isfinite(p) and p >= 0)][:5]}"
        )
    assert attack.mesh.call("kdb", "counters")["dropped"] == 0, (
        "junk pushed real rows out of the kdb publisher's queue"
    )


def test_the_recording_holds_none_of_the_junk(attack: Attack) -> None:
    stop = massive(attack.mesh.env, "record", "stop", "--json", timeout=90)
    assert stop.returncode == 0, stop.stderr
    quotes = ds.dataset(attack.recording / "quotes", format="parquet").to_table().to_pylist()
    symbols = {row["symbol"] for row in quotes}
    assert VALID_SYMBOL in symbols
    assert not symbols & JUNK_SYMBOLS, symbols & JUNK_SYMBOLS
    assert all(
        math.isfinite(r["bid_price"])
        and math.isfinite(r["ask_price"])
        and r["bid_price"] >= 0
        and r["ask_price"] > 0
        for r in quotes
    )
    assert all(r["bid_size"] >= 0 and r["ask_size"] >= 0 for r in quotes)
    assert len(quotes) < 1_000_000
    trades_dir = attack.recording / "trades"
    trades = (
        ds.dataset(trades_dir, format="parquet").to_table().to_pylist()
        if trades_dir.exists()
        else []
    )
    assert not {row["symbol"] for row in trades} & JUNK_SYMBOLS
    assert all(math.isfinite(r["price"]) and r["price"] > 0 and r["size"] >= 0 for r in trades)
