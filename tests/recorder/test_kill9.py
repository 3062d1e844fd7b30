"""`kill -9` of a real `massive run recorder` at 20 random moments under load, then restart."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mesh import client, topics
from mesh.bus import Bus
from mesh.client import Publisher
from mesh.config import Config
from mesh.control import ControlError
from tests.recorder.helpers import quotes, wait_for

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20
AT_RISK_S = 0.25  # the default 0.2 s sync window, plus scheduling slack on a loaded 2-core box
BATCH = 200


def start_recorder(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "run", "recorder", "--slice-seconds", "0.4"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def recording(config: Config) -> bool:
    try:
        status = client.call("recorder", "status", config=config, timeout=0.3)
    except ControlError:
        return False
    return bool(status["recording"])


def _ping(config: Config) -> bool:
    try:
        return client.call("recorder", "ping", config=config, timeout=0.3) == "pong"
    except ControlError:
        return False


class Load(threading.Thread):
    """Publishes 200-quote batches every 4 ms (~50 k rows/s), remembering when each was sent."""

    def __init__(self, config: Config) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.sent: list[tuple[int, float]] = []  # (first sequence, monotonic time)
        self.stop = threading.Event()

    def run(self) -> None:
        with Publisher("load", self.config.bus_pub) as pub:
            time.sleep(0.3)
            first = 0
            while not self.stop.is_set():
                pub.publish(topics.quotes(), quotes(first, BATCH))
                self.sent.append((first, time.monotonic()))
                first += BATCH
                time.sleep(0.004)


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_only_the_window_and_never_duplicates(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> None:
    rng = random.Random(int(os.environ.get("RECORDER_KILL_SEED", "5")))
    proc = start_recorder(mesh_environ)
    wait_for(lambda: _ping(mesh_config), timeout=15)
    client.call("recorder", "start", {"name": "k9"}, config=mesh_config, timeout=5)
    load = Load(mesh_config)
    load.start()
    outages: list[tuple[float, float]] = []
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.05, 0.4))
            proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            proc.wait()
            proc = start_recorder(mesh_environ)
            wait_for(
                lambda: recording(mesh_config), timeout=15, interval=0.02
            )  # recovered and resumed
            outages.append((killed, time.monotonic()))
        time.sleep(0.5)
    finally:
        load.stop.set()
        load.join()
    time.sleep(0.3)
    client.call("recorder", "stop", config=mesh_config, timeout=10)
    wait_for(
        lambda: (
            client.call("recorder", "status", config=mesh_config)["session"]["state"] == "stopped"
        )
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0

    session = mesh_config.data_dir / "recordings" / "k9"
    files = sorted(session.glob("quotes/*.parquet"))
    assert files and not list(session.glob("**/.*.tmp")) and not (session / "wal").exists()
    seqs: list[int] = []
    for path in files:  # every file readable on its own
        seqs += pq.read_table(path, columns=["sequence"]).column("sequence").to_pylist()
    assert len(seqs) == len(set(seqs)), "duplicated rows"
    recorded = set(seqs)
    lost_outside_window = []
    lost = 0
    for first, sent_at in load.sent:
        if first in recorded:
            assert all(s in recorded for s in range(first, first + BATCH)), (
                "a batch was recorded in part"
            )
            continue
        lost += BATCH
        if not any(killed - AT_RISK_S <= sent_at <= up + 0.3 for killed, up in outages):
            lost_outside_window.append(first)
    assert not lost_outside_window, (
        f"{len(lost_outside_window)} batches lost outside the at-risk windows"
    )
    assert len(recorded) >= 0.5 * len(load.sent) * BATCH  # the test did record under load
    manifest = json.loads((session / "manifest.json").read_text())
    assert manifest["rows"]["quotes"] == len(seqs) and manifest["clean"]
    assert sum(1 for g in manifest["gaps"] if g["kind"] == "recorder") == KILLS
    assert sum(1 for run in manifest["runs"] if run.get("recovered")) == KILLS
