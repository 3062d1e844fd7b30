"""A really full disk: the session fails, says why, is never resumed, and leaves no half-written file.

The data folder (and, in the second test, the output folder) is a small tmpfs mounted for the
test, so the recorder, a real subprocess, meets a real ENOSPC. Without permission to mount, the
tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from mesh import topics
from mesh.client import Publisher
from mesh.recorder import recovery
from tests.meshproc import ROOT, Mesh, wait_for
from tests.recorder.helpers import quotes


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (skips the test if mounting is not permitted)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs to fill for real: {mounted.stderr.strip() or 'mount failed'}"
        )
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk refuses; returns it (delete it to free the space)."""
    filler = disk / "filler.bin"
    chunk = b"\xff" * 65536
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with contextlib.suppress(OSError):  # the last bytes: small writes until nothing fits
        with open(filler, "ab") as fh:
            while True:
                fh.write(b"\xff" * 512)
                fh.flush()
    return filler


def publish(mesh: Mesh, first: int, batches: int, rows: int = 1000) -> None:
    with Publisher("ingest", mesh.config.bus_pub, config=mesh.config) as pub:
        time.sleep(0.3)  # subscriptions reach this new publisher
        for i in range(batches):
            pub.publish(topics.quotes(), quotes(first + i * rows, rows))


def status(mesh: Mesh) -> dict[str, Any]:
    return mesh.call("recorder", "status")


def record_status(mesh: Mesh) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh.cli", "record", "status"],
        env=mesh.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def temporaries(*roots: Path) -> list[Path]:
    return [
        p for root in roots for p in root.rglob("*") if p.name.startswith(".") and ".tmp" in p.name
    ]


def keep_publishing_until_failed(mesh: Mesh, first: int) -> None:
    deadline = time.monotonic() + 30
    while (status(mesh)["session"] or {}).get("state") != "failed":
        assert time.monotonic() < deadline, "the recorder never noticed the full disk"
        publish(mesh, first, 5)
        first += 5000
        time.sleep(0.3)


def recovered(data: Path, name: str) -> bool:
    """Recovery has promoted every write-ahead segment and closed the session's local note."""
    return name not in recovery.pending(data)


def recorded_rows(session: Path) -> int:
    return ds.dataset(session / "quotes", format="parquet").count_rows()


def test_disk_full_fails_the_session_and_a_restart_after_freeing_space_does_not_resume_it(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "data", "8m") as data, Mesh(data) as mesh:
        mesh.start("bus")
        mesh.start("recorder", "--slice-seconds", "0.5")
        mesh.wait_up(["bus", "recorder"])
        mesh.call("recorder", "start", name="full")
        publish(mesh, 0, 5)
        session = data / "recordings" / "full"
        wait_for(lambda: status(mesh)["session"]["files"] >= 1, 20, what="a first slice in Parquet")

        filler = fill(data)
        keep_publishing_until_failed(mesh, 100_000)
        shown = record_status(mesh)
        assert (
            shown.returncode == 1 and "full: failed" in shown.stdout and "disk full" in shown.stdout
        ), shown.stdout + shown.stderr
        wait_for(
            lambda: json.loads((session / "manifest.json").read_text())["state"] == "failed",
            20,
            what="the manifest to say failed",
        )
        assert temporaries(data) == []  # nothing half-written, even with no space left
        assert mesh.procs["recorder"].alive

        mesh.kill9("recorder")
        filler.unlink()
        mesh.restart("recorder")
        mesh.wait_up(["recorder"])
        wait_for(
            lambda: recovered(data, "full"), 20, what="recovery to promote the write-ahead log"
        )
        after = status(mesh)
        assert after["session"] is None and not after["recording"]  # not resumed
        manifest = json.loads((session / "manifest.json").read_text())
        assert (
            manifest["state"] == "failed"
            and "disk full" in manifest["error"]
            and not manifest["clean"]
        )
        assert "disk full" in manifest["runs"][-1]["error"]
        assert manifest["rows"]["quotes"] == recorded_rows(session) >= 5000
        assert temporaries(data) == []

        mesh.call("recorder", "start", name="full")  # once the disk is fixed, the same NAME appends
        publish(mesh, 900_000, 2)
        wait_for(
            lambda: status(mesh)["session"]["rows"]["quotes"] == 2000, 20, what="the appended rows"
        )
        mesh.call("recorder", "stop")
        wait_for(
            lambda: json.loads((session / "manifest.json").read_text())["state"] == "stopped",
            20,
            what="the stop",
        )
        assert json.loads((session / "manifest.json").read_text())["error"] is None


def test_output_disk_full_keeps_the_error_locally_until_the_manifest_can_take_it(
    tmp_path: Path,
) -> None:
    with (
        small_disk(tmp_path / "data", "16m") as data,
        small_disk(tmp_path / "out", "4m") as out,
        Mesh(data) as mesh,
    ):
        mesh.start("bus")
        mesh.start("recorder", "--slice-seconds", "0.5", "--out", str(out))
        mesh.wait_up(["bus", "recorder"])
        mesh.call("recorder", "start", name="far")
        publish(mesh, 0, 5)
        wait_for(lambda: status(mesh)["session"]["files"] >= 1, 20, what="a first slice in Parquet")

        filler = fill(out)
        keep_publishing_until_failed(mesh, 100_000)
        error = status(mesh)["session"]["error"]
        assert "No space left" in error or "disk full" in error
        note = json.loads((data / "recordings" / "far" / "wal" / "session.json").read_text())
        assert note["state"] == "failed" and note["error"] == error
        assert (
            json.loads((out / "far" / "manifest.json").read_text())["state"] == "recording"
        )  # could not be updated
        assert temporaries(data, out) == []

        mesh.kill9("recorder")
        os.unlink(filler)
        mesh.restart("recorder")
        mesh.wait_up(["recorder"])
        wait_for(lambda: recovered(data, "far"), 20, what="recovery")
        assert status(mesh)["session"] is None
        manifest = json.loads((out / "far" / "manifest.json").read_text())
        assert (
            manifest["state"] == "failed"
            and manifest["error"] == error
            and manifest["runs"][-1]["error"] == error
        )
        assert manifest["rows"]["quotes"] == recorded_rows(out / "far")
        assert temporaries(data, out) == []
