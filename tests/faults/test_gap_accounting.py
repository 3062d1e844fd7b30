"""The recorder's own gap records: a restarted source, a symbol that never resumes, its own crash.

A real bus in a thread and a real recorder (in this process, or as a `kill -9`-able subprocess);
batches from tests/recorder/helpers.py carry sequence numbers first..first+n-1 round-robin over
four symbols, so the gaps each symbol should get are known exactly.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from mesh import client, service, topics
from mesh.bus import Bus
from mesh.client import Publisher
from mesh.config import Config
from mesh.control import ControlError
from mesh.recorder import continuity
from mesh.recorder.service import RecorderService
from tests.recorder.helpers import SYMBOLS, T0, quotes, wait_for

ROOT = Path(__file__).resolve().parents[2]
STEP = 7_000_000  # ns between the helper's quotes


def _up(config: Config) -> bool:
    try:
        return client.call("recorder", "ping", config=config, timeout=0.5) == "pong"
    except ControlError:
        return False


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


async def call(config: Config, cmd: str, **args: Any) -> Any:
    return await asyncio.to_thread(client.call, "recorder", cmd, args, config=config, timeout=5)


def send(config: Config, *batches: Any, source: str = "ingest") -> None:
    """One publisher process lifetime: its sequence numbers on the bus start at 1."""
    with Publisher(source, config.bus_pub) as pub:
        time.sleep(0.3)  # the bus forwards our subscribers' subscriptions to this new publisher
        for batch in batches:
            pub.publish(topics.quotes(), batch)
        time.sleep(0.1)


def recorded_gaps(config: Config, name: str) -> dict[str, dict[str, Any]]:
    """The session's per-symbol quote gaps, by symbol."""
    table = ds.dataset(config.data_dir / "recordings" / name / "gaps", format="parquet").to_table()
    return {
        row["symbol"]: row for row in table.to_pylist() if row["kind"] == "quote" and row["symbol"]
    }


def last_of(symbol: str, first: int, n: int) -> int:
    return max(s for s in range(first, first + n) if SYMBOLS[s % len(SYMBOLS)] == symbol)


def first_of(symbol: str, first: int, n: int) -> int:
    return min(s for s in range(first, first + n) if SYMBOLS[s % len(SYMBOLS)] == symbol)


async def test_a_restarted_source_leaves_a_gap_per_symbol_from_its_last_recorded_event_to_its_first_new_one(
    recorder: RecorderService, mesh_config: Config
) -> None:
    await call(mesh_config, "start", name="restart")
    await asyncio.to_thread(send, mesh_config, quotes(0, 40))
    await asyncio.to_thread(wait_for, lambda: recorder.session.rows["quotes"] == 40)
    # ingest is killed; what it read meanwhile (sequences 40..99) never reaches the bus; it restarts
    await asyncio.to_thread(send, mesh_config, quotes(100, 40))
    await asyncio.to_thread(wait_for, lambda: recorder.session.rows["quotes"] == 80)
    await call(mesh_config, "stop")
    await asyncio.to_thread(wait_for, lambda: recorder.session.state == "stopped")
    gaps = recorded_gaps(mesh_config, "restart")
    assert set(gaps) == set(SYMBOLS)
    for symbol, gap in gaps.items():
        assert (gap["from_sequence"], gap["to_sequence"]) == (
            last_of(symbol, 0, 40),
            first_of(symbol, 100, 40),
        )
        assert (
            gap["ts_from"].value == T0 + gap["from_sequence"] * STEP
            and gap["ts_to"].value == T0 + gap["to_sequence"] * STEP
        )
        assert (
            "ingest restarted" in gap["reason"]
            and gap["source"] == "ingest"
            and gap["missing"] == 0
        )
    manifest = json.loads(
        (mesh_config.data_dir / "recordings" / "restart" / "manifest.json").read_text()
    )
    assert sum(1 for g in manifest["gaps"] if g["kind"] == "quote") == len(SYMBOLS)
    assert not (
        mesh_config.data_dir / "recordings" / "restart" / "wal"
    ).exists()  # nothing left behind by a clean stop


async def test_a_symbol_that_never_resumes_gets_an_open_ended_gap_at_stop(
    recorder: RecorderService, mesh_config: Config
) -> None:
    await call(mesh_config, "start", name="open")
    await asyncio.to_thread(send, mesh_config, quotes(0, 40))
    await asyncio.to_thread(wait_for, lambda: recorder.session.rows["quotes"] == 40)
    await asyncio.to_thread(
        send, mesh_config, quotes(100, 40, symbols=("AAPL", "MSFT"))
    )  # NVDA and TSLA stay silent
    await asyncio.to_thread(wait_for, lambda: recorder.session.rows["quotes"] == 80)
    before_stop = time.time_ns()
    await call(mesh_config, "stop")
    await asyncio.to_thread(wait_for, lambda: recorder.session.state == "stopped")
    gaps = recorded_gaps(mesh_config, "open")
    for symbol in ("NVDA", "TSLA"):
        gap = gaps[symbol]
        assert (
            gap["from_sequence"] == last_of(symbol, 0, 40) and gap["to_sequence"] == 0
        )  # 0: nothing after it was recorded
        assert (
            gap["ts_to"].value >= before_stop
            and "no later event before the recording stopped" in gap["reason"]
        )
    assert gaps["AAPL"]["to_sequence"] == 100 and gaps["MSFT"]["to_sequence"] == 101


def start_recorder(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "run", "recorder"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def recorder_process(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [start_recorder(mesh_environ)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait(10)


def rows_recorded(config: Config) -> int:
    try:
        status = client.call("recorder", "status", config=config, timeout=0.5)
    except ControlError:
        return -1
    return int(status["session"]["rows"]["quotes"]) if status.get("recording") else -1


def saved_positions(config: Config, name: str) -> dict[str, Any]:
    data = continuity.load(config.data_dir / "recordings" / name / "wal") or {}
    return data.get("sources", {}).get("ingest", {}).get("quote", {})


def test_a_recorder_killed_and_restarted_bounds_what_it_missed_from_its_saved_positions(
    recorder_process: list[subprocess.Popen[bytes]],
    mesh_config: Config,
    mesh_environ: dict[str, str],
) -> None:
    wait_for(lambda: _up(mesh_config), 20)
    client.call("recorder", "start", {"name": "crash"}, config=mesh_config, timeout=5)
    with Publisher(
        "ingest", mesh_config.bus_pub
    ) as pub:  # one ingest all along: only the recorder dies
        time.sleep(0.3)
        pub.publish(topics.quotes(), quotes(0, 40))
        wait_for(
            lambda: saved_positions(mesh_config, "crash").keys() == set(SYMBOLS), 10
        )  # saved within a second
        recorder_process[0].kill()
        recorder_process[0].wait(10)
        pub.publish(topics.quotes(), quotes(40, 60))  # nobody records these
        recorder_process.append(start_recorder(mesh_environ))
        wait_for(lambda: rows_recorded(mesh_config) == 0, 20)  # resumed
        time.sleep(0.3)
        pub.publish(topics.quotes(), quotes(100, 40))
        wait_for(lambda: rows_recorded(mesh_config) == 40, 10)
    client.call("recorder", "stop", config=mesh_config, timeout=5)
    wait_for(
        lambda: (
            client.call("recorder", "status", config=mesh_config, timeout=2)["session"]["state"]
            == "stopped"
        ),
        20,
    )
    folder = mesh_config.data_dir / "recordings" / "crash"
    recorded = set(
        ds.dataset(folder / "quotes", format="parquet").to_table().column("sequence").to_pylist()
    )
    assert recorded == set(range(40)) | set(range(100, 140))
    gaps = recorded_gaps(mesh_config, "crash")
    for symbol in SYMBOLS:
        gap = gaps[symbol]
        assert (gap["from_sequence"], gap["to_sequence"]) == (
            last_of(symbol, 0, 40),
            first_of(symbol, 100, 40),
        )
        assert "interrupted" in gap["reason"]
    # every sequence the recorder missed lies inside its symbol's gap
    for s in range(40, 100):
        gap = gaps[SYMBOLS[s % len(SYMBOLS)]]
        assert gap["from_sequence"] < s < gap["to_sequence"]


async def test_a_damaged_position_file_still_bounds_every_symbol_from_the_interruption(
    recorder: RecorderService, mesh_config: Config
) -> None:
    wal_dir = mesh_config.data_dir / "recordings" / "damaged" / "wal"
    wal_dir.mkdir(parents=True)
    (wal_dir / continuity.SNAPSHOT_FILE).write_text('{"format": 1, "sour')  # torn by a power cut
    await call(mesh_config, "start", name="damaged")
    await asyncio.to_thread(send, mesh_config, quotes(100, 40))
    await asyncio.to_thread(wait_for, lambda: recorder.session.rows["quotes"] == 40)
    await call(mesh_config, "stop")
    await asyncio.to_thread(wait_for, lambda: recorder.session.state == "stopped")
    gaps = recorded_gaps(mesh_config, "damaged")
    assert set(gaps) == set(SYMBOLS)
    assert all(
        g["from_sequence"] == 0 and g["to_sequence"] == first_of(s, 100, 40)
        for s, g in gaps.items()
    )
