"""Ingest against the real simulator: live data end to end, a forced disconnect, and a firehose."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh import control
from mesh.bus import Bus
from mesh.client import Subscriber
from mesh.config import Config
from tests.conftest import free_port
from tests.ingest.test_ingest_service import stop, wait_for

ROOT = Path(__file__).resolve().parents[2]


def services(config: Config) -> dict[str, Any]:
    try:
        return control.call(config.bus_ctl, "bus", "services")  # type: ignore[no-any-return]
    except control.ControlError:
        return {}


def counters(config: Config, name: str) -> dict[str, Any]:
    return services(config).get(name, {}).get("counters", {})  # type: ignore[no-any-return]


@pytest.fixture
def mesh_with_sim(
    request: pytest.FixtureRequest, bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> Iterator[dict[str, subprocess.Popen[str]]]:
    rate = getattr(request, "param", 2000)
    ws_port = free_port()
    cli = [sys.executable, "-m", "mesh.cli", "run"]
    procs = {
        "sim": subprocess.Popen(
            [
                *cli,
                "sim",
                "--rate",
                str(rate),
                "--ws-port",
                str(ws_port),
                "--rest-port",
                str(free_port()),
                "--s3-port",
                str(free_port()),
            ],
            env=mesh_environ,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ),
        "ingest": subprocess.Popen(
            [
                *cli,
                "ingest",
                "--url",
                f"ws://127.0.0.1:{ws_port}/stocks",
                "--subscriptions",
                "Q.*,T.*,A.*,AM.*",
            ],
            env=mesh_environ,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ),
    }
    try:
        wait_for(
            lambda: counters(mesh_config, "ingest").get("connection") == "streaming", timeout=20
        )
        yield procs
    finally:
        for proc in procs.values():
            stop(proc)


def test_live_sim_data_reaches_the_bus_as_sane_records(
    mesh_with_sim: dict, mesh_config: Config
) -> None:  # type: ignore[type-arg]
    sub = Subscriber(["md."], mesh_config.bus_sub)
    try:
        seen: dict[str, list[Any]] = {}
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and not {"md.quote.stocks", "md.trade.stocks", "md.bar1s.stocks"} <= seen.keys()
        ):
            msg = sub.recv(timeout=0.5)
            if msg is not None:
                seen.setdefault(msg.topic, []).extend(msg.payload.rows())
        quotes, trades, bars = (
            seen["md.quote.stocks"],
            seen["md.trade.stocks"],
            seen["md.bar1s.stocks"],
        )
        now = time.time_ns()
        assert all(q.bid_price <= q.ask_price and q.bid_size % 100 == 0 for q in quotes)
        assert all(abs(now - q.ts_event) < 30e9 and q.ts_recv >= q.ts_event - 1e9 for q in quotes)
        assert len({q.symbol for q in quotes}) > 5
        assert all(t.price > 0 and t.size > 0 for t in trades)
        assert all(
            b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
            and b.ts_end - b.ts_start == 1_000_000_000
            for b in bars
        )
        assert sub.stats.gaps == 0 and sub.stats.malformed_total == 0
    finally:
        sub.close()


def test_a_forced_disconnect_reconnects_within_two_seconds_with_gap_records(
    mesh_with_sim: dict, mesh_config: Config
) -> None:  # type: ignore[type-arg]
    sub = Subscriber(["md.gap."], mesh_config.bus_sub)
    time.sleep(0.5)
    try:
        before = counters(mesh_config, "ingest")["reconnects"]
        dropped_at = time.monotonic()
        assert control.call(mesh_config.bus_ctl, "sim", "disconnect")
        wait_for(
            lambda: (
                (c := counters(mesh_config, "ingest")).get("reconnects") == before + 1
                and c.get("connection") == "streaming"
            ),
            timeout=5,
        )
        gap_msg = sub.recv(timeout=5)
        assert gap_msg is not None, "no gap record after the reconnect"
        assert time.monotonic() - dropped_at < 5
        gaps = list(gap_msg.payload.rows())
        assert all(
            g.reason in ("server_close", "abnormal_close")
            and g.to_sequence > g.from_sequence
            and g.ts_to > g.ts_from
            for g in gaps
        )
        # the stream resumed well inside two seconds of the drop
        assert min(g.ts_to for g in gaps) - max(g.ts_from for g in gaps) < 2e9
    finally:
        sub.close()


@pytest.mark.parametrize("mesh_with_sim", [100_000], indirect=True)
def test_no_slow_consumer_at_a_hundred_thousand_events_a_second(
    mesh_with_sim: dict, mesh_config: Config
) -> None:  # type: ignore[type-arg]
    time.sleep(5)
    ingest = counters(mesh_config, "ingest")
    sim = counters(mesh_config, "sim")
    assert ingest["connection"] == "streaming" and ingest["reconnects"] == 0
    assert "slow_consumer" not in ingest["server_status"]
    assert sim["slow_consumer"] == 0
    assert ingest["events_per_s"] > 50_000, ingest
    assert ingest["dropped_frames"] == 0 and ingest["malformed"] == 0


def test_a_second_client_with_the_same_key_cools_down_instead_of_fighting(
    mesh_with_sim: dict, mesh_config: Config, mesh_environ: dict[str, str]
) -> None:  # type: ignore[type-arg]
    url = next(arg for arg in mesh_with_sim["ingest"].args if str(arg).startswith("ws://"))
    second = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "run", "ingest", "--url", url, "--name", "ingest2"],
        env=mesh_environ,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        state = wait_for(
            lambda: (c := counters(mesh_config, "ingest2")).get("connection") == "cooldown" and c,
            timeout=15,
        )
        assert state["retry_in_s"] > 50
        time.sleep(3)
        assert counters(mesh_config, "sim")["max_connections"] == 1  # no reconnect storm
        assert counters(mesh_config, "ingest")["connection"] == "streaming"
    finally:
        stop(second)
