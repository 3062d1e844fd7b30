"""A recording whose audit.json or healed layer was tampered with: readers and `massive heal` give
a clear answer, and never read, write or remove anything outside the recording's folder."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mesh import datasets
from mesh.cli import main
from mesh.datasets import TableKind, audit, live
from mesh.datasets.audit import EventKind
from mesh.fetcher.heal import HealError, heal
from mesh.sim.server import SimServer
from tests.fetcher.conftest import config_of, sim_env
from tests.fetcher.healing import Recorded, reconcile_by_hand, record_with_holes

HOLES = [("AAPL", EventKind.TRADES, 20, 30)]


def _recorded(sim: SimServer, tmp_path: Path, day: dt.date) -> Recorded:
    config = config_of(sim_env(sim, tmp_path / "data"), tmp_path)
    recorded = record_with_holes(config, tmp_path, day, "holes", HOLES)
    reconcile_by_hand(recorded)
    return recorded


def _trades(folder: Path) -> int:
    table = datasets.open_path(folder).table(TableKind.TRADES)
    assert table is not None
    return datasets.read_table(table, columns=["symbol"]).num_rows


def test_an_audit_with_a_time_beyond_int64_is_ignored_and_data_show_still_shows_the_recording(
    sim: SimServer,
    tmp_path: Path,
    days: list[dt.date],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded = _recorded(sim, tmp_path, days[-1])
    path = recorded.folder / audit.AUDIT
    found = json.loads(path.read_text())
    found["reconciliation"]["checked_ns"] = 10**30  # year 31 million
    path.write_text(json.dumps(found))
    monkeypatch.setenv("MESH_DATA_DIR", str(tmp_path / "data"))

    assert audit.read_audit(recorded.folder) == audit.Audit()
    assert main(["data", "show", "holes"]) == 0
    out = capsys.readouterr().out
    assert "name:           holes" in out and "reconciled:     never" in out


def test_a_healed_folder_linking_out_of_the_recording_is_not_emptied_written_or_read(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    recorded = _recorded(sim, tmp_path, days[-1])
    captured = _trades(recorded.folder)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "trades").mkdir(parents=True)
    precious = elsewhere / "trades" / "part-000001.parquet"
    pq.write_table(pq.read_table(recorded.folder / "trades/part-000001.parquet"), precious)
    before = precious.read_bytes()
    (recorded.folder / audit.HEALED).symlink_to(elsewhere)
    old_audit = (recorded.folder / audit.AUDIT).read_bytes()
    # an audit listing the outside file as the healed layer's
    found = json.loads(old_audit)
    found["heals"] = [{"id": "heal-1", "at_ns": 1, "method": "rest", "spans": [], "files": ["healed/trades/part-000001.parquet"]}]  # fmt: skip
    (recorded.folder / audit.AUDIT).write_text(json.dumps(found))

    assert _trades(recorded.folder) == captured  # the outside file is not read as healed rows
    with pytest.raises(HealError, match="healed is a link out of the recording"):
        heal("holes", config_of(sim_env(sim, tmp_path / "data"), tmp_path))
    (recorded.folder / audit.AUDIT).write_bytes(old_audit)  # it lists nothing: all would be stray
    with pytest.raises(HealError, match="healed is a link out of the recording"):
        heal("holes", config_of(sim_env(sim, tmp_path / "data"), tmp_path))

    assert sorted(p.name for p in (elsewhere / "trades").iterdir()) == ["part-000001.parquet"]
    assert precious.read_bytes() == before


def test_an_audit_json_no_writer_can_read_is_left_as_it_is_and_the_healed_files_are_kept(
    sim: SimServer,
    tmp_path: Path,
    days: list[dt.date],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An audit.json written by a newer version (an issue this one does not know), or edited by
    hand: replacing it would drop its heals, and the next heal would remove their files."""
    recorded = _recorded(sim, tmp_path, days[-1])
    for key, value in sim_env(sim, tmp_path / "data").items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    assert main(["heal", "holes"]) == 0
    files = sorted((recorded.folder / audit.HEALED).rglob("*.parquet"))
    assert len(files) == 1
    path = recorded.folder / audit.AUDIT
    found = json.loads(path.read_text())
    found["quality"] = {"checked_ns": 1, "findings": [{"symbol": "AAPL", "issue": "a_new_issue", "count": 1}]}  # fmt: skip
    path.write_text(json.dumps(found))
    damaged = path.read_bytes()
    capsys.readouterr()

    for argv in (["heal", "holes"], ["reconcile", "holes"], ["data", "quality", "holes"]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.splitlines()[-1]
        assert err.startswith(f"massive: {path}: not an audit") and "move it aside" in err
    assert main(["data", "show", "holes"]) == 0
    assert "name:           holes" in capsys.readouterr().out

    assert path.read_bytes() == damaged
    assert sorted((recorded.folder / audit.HEALED).rglob("*.parquet")) == files


def test_a_fifo_where_the_recording_lock_goes_does_not_hang_massive_heal(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    recorded = _recorded(sim, tmp_path, days[-1])
    (recorded.folder / live.WAL).mkdir()
    os.mkfifo(recorded.folder / live.WAL / live.LOCK)

    done = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "heal", "holes", "--dry-run"],
        env=sim_env(sim, tmp_path / "data"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "2 span(s) to heal" not in done.stdout and "1 span(s) to heal" in done.stdout


def test_a_fifo_in_place_of_audit_json_does_not_hang_data_show_and_heal_refuses_it(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    recorded = _recorded(sim, tmp_path, days[-1])
    (recorded.folder / audit.AUDIT).unlink()
    os.mkfifo(recorded.folder / audit.AUDIT)

    def massive(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mesh.cli", *argv],
            env=sim_env(sim, tmp_path / "data"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    shown = massive("data", "show", "holes")
    assert shown.returncode == 0 and "name:           holes" in shown.stdout, shown.stderr
    refused = massive("heal", "holes")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1].endswith(
        "audit.json: cannot read it: not a regular file; left as it is, nothing stored (fix it, or move it aside)"
    )


def test_a_fifo_in_place_of_manifest_json_makes_the_recording_damaged_instead_of_hanging(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    recorded = _recorded(sim, tmp_path, days[-1])
    (recorded.folder / "manifest.json").unlink()
    os.mkfifo(recorded.folder / "manifest.json")

    shown = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "data", "show", "holes"],
        env=sim_env(sim, tmp_path / "data"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert shown.returncode == 1
    assert shown.stderr.strip().endswith("manifest.json: cannot be read (not a regular file)")


def test_a_ticker_is_one_path_segment_in_every_request_whatever_it_holds(tmp_path: Path) -> None:
    """A symbol read from a hostile file ('../../x?a=b') must not change the request's path."""
    import http.server
    import threading

    from mesh.fetcher.ledger import Limits, QuotaLedger
    from mesh.fetcher.rest import RestClient

    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            paths.append(self.path)
            body = b'{"status":"OK","results":[],"request_id":"r"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        ledger = QuotaLedger(tmp_path / "ledger.sqlite", Limits(1000, 100, 0))
        with RestClient(url, "k", ledger, retries=0) as rest:
            rest.trades("../../x?a=b#", 1_796_400_000 * 10**9, 1_796_400_001 * 10**9)
    finally:
        server.shutdown()
    (path,) = paths
    assert path.startswith("/v3/trades/..%2F..%2Fx%3Fa%3Db%23?")
