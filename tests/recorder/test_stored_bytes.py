"""`massive record status` reports the bytes a recording takes on disk, counted once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mesh import topics
from mesh.client import Publisher
from tests.meshproc import ROOT, Mesh, wait_for
from tests.recorder.helpers import quotes, trades


def on_disk(session: Path) -> int:
    return sum(p.stat().st_size for p in session.rglob("*.parquet"))


def record_status(mesh: Mesh) -> tuple[dict[str, Any], str]:
    def run(*extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mesh.cli", "record", "status", *extra],
            env=mesh.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    return json.loads(run("--json")), run()


def test_status_reports_the_parquet_bytes_on_disk_not_the_log_traffic_too(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Mesh(data) as mesh:
        mesh.start("bus")
        mesh.start("recorder", "--slice-seconds", "0.3")
        mesh.wait_up(["bus", "recorder"])
        mesh.call("recorder", "start", name="sized")
        with Publisher("ingest", mesh.config.bus_pub, config=mesh.config) as pub:
            time.sleep(0.3)
            for i in range(6):  # several slices: the log is rotated and promoted in between
                for j in range(5):
                    pub.publish(topics.quotes(), quotes((i * 5 + j) * 2000, 2000))
                pub.publish(topics.trades(), trades(i * 500, 500))
                time.sleep(0.4)
        wait_for(
            lambda: mesh.call("recorder", "status")["session"]["rows"]["quotes"] == 60_000,
            20,
            what="every row in the log",
        )
        mesh.call("recorder", "stop")
        wait_for(
            lambda: mesh.call("recorder", "status")["session"]["state"] == "stopped",
            20,
            what="the stop",
        )

        session = data / "recordings" / "sized"
        report, text = record_status(mesh)
        stored = report["session"]["bytes_stored"]
        assert (
            stored
            == on_disk(session)
            == json.loads((session / "manifest.json").read_text())["bytes"]
        )
        assert report["session"]["wal_bytes_on_disk"] == 0
        assert (
            report["session"]["bytes_written"] > 2 * stored
        )  # the log's traffic is not what is stored
        assert (
            f"{stored / 1e6:,.1f} MB on disk" in text or f"{stored / 1e3:,.1f} kB on disk" in text
        )

        mesh.restart("recorder")  # a new process reads the sizes back from manifest.json
        mesh.wait_up(["recorder"])
        mesh.call("recorder", "start", name="sized")
        assert mesh.call("recorder", "status")["session"]["bytes_stored"] == on_disk(session)
        mesh.call("recorder", "stop")
