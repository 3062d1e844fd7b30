"""Replay round trip: live sim -> ingest -> recorder, then `massive run sim --replay` -> ingest -> recorder.

The two sessions must hold the same rows, as docs/sim.md ("Replay") defines it: every quote and
trade field except `ts_recv` (the time ingest received it, which a replay cannot reproduce), in
recorded order per table, with `ts_event` compared at millisecond precision (all that Massive's
protocol carries; a session recorded through ingest has whole-millisecond times already).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from mesh import client, control
from mesh.bus import Bus
from mesh.config import Config
from mesh.control import ControlError
from mesh.recorder.replay import replay_batches
from mesh.schema import QuoteBatch
from tests.recorder.helpers import wait_for
from tests.simulator import ThreadedSim

ROOT = Path(__file__).resolve().parents[2]


class Proc:
    """A `massive run ...` subprocess whose output is collected by a thread."""

    def __init__(self, env: dict[str, str], *argv: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mesh.cli", "run", *argv],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def line_starting(self, prefix: str) -> str | None:
        return next((line for line in self.lines if line.startswith(prefix)), None)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> str:
        self.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        return "\n".join(self.lines)


def recorder_call(config: Config, cmd: str, **args: Any) -> Any:
    return client.call("recorder", cmd, args, config=config, timeout=10)


def recorder_up(config: Config) -> bool:
    try:
        return recorder_call(config, "ping") == "pong"
    except ControlError:
        return False


def session_rows(config: Config) -> dict[str, int]:
    return recorder_call(config, "status")["session"]["rows"]  # type: ignore[no-any-return]


def stop_recording(config: Config) -> None:
    recorder_call(config, "stop")
    wait_for(lambda: recorder_call(config, "status")["session"]["state"] == "stopped", 20)


def sim_counters(config: Config) -> dict[str, Any]:
    return control.call(config.bus_ctl, "bus", "services").get("sim", {}).get("counters", {})  # type: ignore[no-any-return]


def same_rows(folder: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Per table, in recorded order: every field but ts_recv, ts_event at millisecond precision."""
    out: dict[str, list[tuple[Any, ...]]] = {"quotes": [], "trades": []}
    for batch in replay_batches(folder):
        table = "quotes" if isinstance(batch, QuoteBatch) else "trades"
        for row in batch.rows():
            fields = {
                name: getattr(row, name) for name in row.__struct_fields__ if name != "ts_recv"
            }
            fields["ts_event"] //= 1_000_000
            out[table].append(tuple(fields.values()))
    return out


def test_a_recorded_then_replayed_then_recorded_session_has_the_same_rows(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> None:
    env = dict(mesh_environ, MASSIVE_SUBSCRIPTIONS="Q.*,T.*,A.*,AM.*")
    recordings = mesh_config.data_dir / "recordings"
    recorder = Proc(env, "recorder")
    ingest: Proc | None = None
    replay: Proc | None = None
    try:
        # 1. a session recorded from the live sim through real ingest (everything starts at once)
        with ThreadedSim(
            rate=3000, symbols=["AAPL", "MSFT", "NVDA", "SPY"], rest=False, s3=False
        ) as sim:
            ingest = Proc(env, "ingest", "--url", sim.ws_url)
            wait_for(lambda: recorder_up(mesh_config), 30)
            recorder_call(mesh_config, "start", name="live")
            wait_for(
                lambda: (
                    (rows := session_rows(mesh_config))["quotes"] >= 1_500 and rows["trades"] >= 400
                ),
                30,
            )
            ingest.stop()
            ingest = None
            stop_recording(mesh_config)
        live = same_rows(recordings / "live")
        assert len(live["quotes"]) >= 1_500 and len(live["trades"]) >= 400

        # 2. replayed through `massive run sim --replay`, recorded again through real ingest
        recorder_call(mesh_config, "start", name="replayed")
        time.sleep(0.3)
        replay = Proc(
            env,
            "sim",
            "--replay",
            "live",
            "--speed",
            "max",
            "--ws-port",
            "0",
            "--rest-port",
            "0",
            "--s3-port",
            "0",
        )
        line = wait_for(lambda: replay.line_starting("sim: WebSocket "), 30)
        url = line.split()[2]
        assert wait_for(lambda: replay.line_starting("sim: replaying "), 5).endswith(
            "at max; it starts when a client subscribes"
        )
        ingest = Proc(env, "ingest", "--url", url)
        counters = wait_for(lambda: (c := sim_counters(mesh_config)).get("replay_done") and c, 30)
        assert (
            counters["replay_events"]
            == counters["replay_total"]
            > len(live["quotes"]) + len(live["trades"])
        )  # bars too
        wait_for(
            lambda: (
                (rows := session_rows(mesh_config))["quotes"] >= len(live["quotes"])
                and rows["trades"] >= len(live["trades"])
            ),
            15,
        )
        time.sleep(0.3)  # nothing more may arrive
        assert replay.proc.poll() is None  # the replay ended, the sim did not
        # heartbeats (once a second) say the replay finished; ingest stays connected
        services = wait_for(
            lambda: (
                (s := control.call(mesh_config.bus_ctl, "bus", "services"))["ingest"]["counters"][
                    "server_status"
                ].startswith("success: replay finished")
                and s
            ),
            5,
        )
        assert services["sim"]["message"].startswith("replay of live finished")
        assert services["ingest"]["counters"]["connection"] == "streaming"
        stop_recording(mesh_config)
    finally:
        procs = [p for p in (ingest, replay, recorder) if p is not None]
        for proc in procs:
            proc.terminate()
        outs = [proc.stop() for proc in procs]
    out = outs[-1]
    assert "Traceback" not in out

    replayed = same_rows(recordings / "replayed")
    assert len(replayed["quotes"]) == len(live["quotes"]) and len(replayed["trades"]) == len(
        live["trades"]
    )
    assert replayed == live
    for bars in ("bars_1s", "bars_1m"):  # rebuilt by the second recorder from the replayed trades
        before, after = (
            pd.read_parquet(recordings / name / f"{bars}.parquet").drop(columns="ts_recv")
            for name in ("live", "replayed")
        )
        pd.testing.assert_frame_equal(after, before, check_exact=False, rtol=1e-12)
