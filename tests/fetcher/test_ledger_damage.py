"""A damaged quota ledger stops quota-spending work with one line, and `massive quota --repair` fixes it.

Damage is made to a real ledger file (garbage, emptied, tables dropped, deleted while in use), and
the CLI and the fetcher service are the real ones; a counting HTTP server stands in for REST and
S3 so the test can see that not a single request went out.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mesh import client, control
from mesh.bus import Bus
from mesh.fetcher.ledger import LedgerDamaged, Limits, QuotaLedger
from mesh.sim.server import SimServer
from tests.fetcher.conftest import base_env, config_of, sim_env
from tests.meshproc import massive

ROOT = Path(__file__).resolve().parents[2]


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if not line.startswith("method:")]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def counting_server() -> Iterator[tuple[list[str], str]]:
    """REST and S3 stand-in that only counts requests."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield seen, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def damage(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(b"this is not an SQLite database\n" * 200)
    elif how == "emptied":
        path.write_bytes(b"")
    elif how == "tables dropped":
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("DROP TABLE rest_calls")
        db.close()  # the last connection checkpoints the write-ahead file into the ledger
    for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        sidecar.unlink(missing_ok=True)


def used_ledger(data_dir: Path) -> Path:
    ledger = QuotaLedger(data_dir / "state" / "quota.sqlite", Limits(5, 100, 10**9))
    ledger.acquire_rest("/v2/aggs")
    return ledger.path


@pytest.mark.parametrize("how", ["garbage", "emptied", "tables dropped"])
def test_a_damaged_ledger_stops_fetch_before_any_request_and_quota_reports_it(
    how: str, tmp_path: Path, counting_server: tuple[list[str], str], days: list[dt.date]
) -> None:
    seen, url = counting_server
    env = {**base_env(tmp_path / "data"), "MASSIVE_REST_URL": url, "MASSIVE_S3_ENDPOINT": url}
    path = used_ledger(tmp_path / "data")
    damage(path, how)

    quota = massive(env, "quota")
    assert quota.returncode == 1 and quota.stdout == ""
    line = one_line(quota)
    assert str(path) in line and "damaged" in line and "massive quota --repair" in line

    as_json = massive(env, "quota", "--json")
    assert as_json.returncode == 1
    snap = json.loads(as_json.stdout)
    assert snap["damaged"] and str(path) in snap["damaged"]
    assert (snap["rest_calls_today"], snap["rest_calls_minute"], snap["s3_bytes_month"]) == (
        100,
        5,
        10 * 10**9,
    )  # all spent

    for method in ("rest", "flat_file"):
        fetch = massive(
            env,
            "fetch",
            "AAPL",
            "--start",
            str(days[-2]),
            "--end",
            str(days[-1]),
            "--method",
            method,
        )
        assert fetch.returncode == 1
        assert str(path) in one_line(fetch) and "--repair" in one_line(fetch)
    plan = massive(
        env, "fetch", "AAPL", "--start", str(days[-2]), "--end", str(days[-1]), "--dry-run"
    )
    assert plan.returncode == 1 and "damaged" in one_line(plan)
    assert seen == []  # not one request reached REST or S3
    assert path.stat().st_size == (
        0 if how == "emptied" else path.stat().st_size
    )  # left as found, for the repair


def test_repair_keeps_the_damaged_file_and_counts_the_periods_as_spent(
    tmp_path: Path, counting_server: tuple[list[str], str], days: list[dt.date]
) -> None:
    seen, url = counting_server
    env = {**base_env(tmp_path / "data"), "MASSIVE_REST_URL": url, "MASSIVE_S3_ENDPOINT": url}
    path = used_ledger(tmp_path / "data")
    damage(path, "emptied")

    healthy_first = massive(env, "quota", "--rest-today", "3")
    assert healthy_first.returncode == 2 and "--repair" in one_line(healthy_first)

    repair = massive(env, "quota", "--repair")
    assert repair.returncode == 0, repair.stderr
    kept = list(path.parent.glob("quota.sqlite.damaged-*"))
    assert len(kept) == 1 and kept[0].stat().st_size == 0 and str(kept[0]) in repair.stdout
    snap = json.loads(massive(env, "quota", "--json").stdout)
    assert snap["damaged"] is None
    assert (snap["rest_calls_today"], snap["rest_calls_minute"], snap["s3_bytes_month"]) == (
        100,
        5,
        10 * 10**9,
    )

    refused = massive(
        env, "fetch", "AAPL", "--start", str(days[-2]), "--end", str(days[-1]), "--method", "rest"
    )
    assert refused.returncode == 1 and "0 of 100 are left today" in one_line(refused)
    assert [
        p for p in seen if not p.startswith("/flatfiles")
    ] == []  # no REST call (listing the bucket is free)

    again = massive(env, "quota", "--repair")
    assert again.returncode == 1 and "readable" in one_line(
        again
    )  # a healthy ledger is never replaced


def test_repair_with_the_real_usage_lets_work_resume(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    env = sim_env(
        sim, tmp_path / "data", MASSIVE_REST_CALLS_PER_DAY="50", MASSIVE_REST_CALLS_PER_MINUTE="10"
    )
    path = used_ledger(tmp_path / "data")
    damage(path, "garbage")
    repair = massive(
        env, "quota", "--repair", "--rest-today", "7", "--bytes-month", "1.5GB", "--json"
    )
    assert repair.returncode == 0, repair.stderr
    assert json.loads(repair.stdout)["rest_calls_today"] == 7
    snap = json.loads(massive(env, "quota", "--json").stdout)
    assert (snap["rest_calls_today"], snap["rest_calls_minute"], snap["s3_bytes_month"]) == (
        7,
        7,
        1_500_000_000,
    )
    fetch = massive(
        env, "fetch", "AAPL", "--start", str(days[-2]), "--end", str(days[-1]), "--method", "rest"
    )
    assert fetch.returncode == 0, fetch.stderr
    assert json.loads(massive(env, "quota", "--json").stdout)["rest_calls_today"] == 8


def test_a_ledger_deleted_while_in_use_is_damage_not_a_fresh_start(tmp_path: Path) -> None:
    ledger = QuotaLedger(tmp_path / "state" / "quota.sqlite", Limits(5, 100, 0))
    ledger.acquire_rest("/a")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger.path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(LedgerDamaged, match="deleted while in use"):
        ledger.acquire_rest("/a")
    with pytest.raises(LedgerDamaged):
        ledger.rest_room()
    assert not ledger.path.exists()  # no empty ledger was put in its place
    assert ledger.snapshot()["rest_calls_today"] == 100


def test_the_fetcher_service_keeps_running_and_fails_jobs_on_a_damaged_ledger(
    sim: SimServer, bus: Bus, mesh_environ: dict[str, str], tmp_path: Path, days: list[dt.date]
) -> None:
    data_dir = Path(mesh_environ["MESH_DATA_DIR"])
    env = {
        **mesh_environ,
        **{k: v for k, v in sim_env(sim, data_dir).items() if k.startswith("MASSIVE_")},
    }
    path = used_ledger(data_dir)
    damage(path, "garbage")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "run", "fetcher"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    config = config_of(env, tmp_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.call("fetcher", "ping", config=config, timeout=1.0)
                break
            except control.ControlError:
                assert time.monotonic() < deadline and proc.poll() is None, (
                    "fetcher did not come up"
                )
                time.sleep(0.2)
        assert "damaged" in client.call("fetcher", "quota", config=config)["damaged"]
        with pytest.raises(control.ControlError, match="damaged"):
            client.call(
                "fetcher",
                "plan",
                {"symbols": "AAPL", "start": str(days[-2]), "end": str(days[-1])},
                config=config,
            )
        job = client.call(
            "fetcher",
            "fetch",
            {"symbols": "AAPL", "start": str(days[-2]), "end": str(days[-1]), "interval": "1h"},
            config=config,
        )
        final = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            final = client.call("fetcher", "job", {"job_id": job["job_id"]}, config=config)
            if final["state"] in ("done", "failed"):
                break
            time.sleep(0.2)
        assert (
            final is not None
            and final["state"] == "failed"
            and str(path) in final["message"]
            and "--repair" in final["message"]
        )
        assert client.call("fetcher", "ping", config=config) == "pong" and proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
