"""Soak: minutes of a firehose through sim -> ingest -> bus -> recorder (recording) and the dashboard's feed.

Every service is a real `massive run NAME` process (tests/meshproc.py); the dashboard's feed is
`tui.feed.BusFeed` (AsyncSubscriber.recv_burst with the board's fields) in a process of its own.
Reported, from one run:
  lost        events the sim sent that are neither recorded nor inside a recorded gap (target 0),
              checked against the sim's contiguous sequence numbers (tests/faults/accounting.py)
  rss         growth of each process's resident memory from the end of the first quarter of the
              run to its end (target flat)
  flaps       heartbeat transitions to DOWN (mesh.health's rule) seen by a watcher (target 0)
  control     p99 latency of control requests (recorder `status`, ingest `list`, twice a second)
              under the load, against the same requests on the idle mesh first (target < 1 s)
The last line is the JSON report (metric: events lost outside gaps; baseline: events sent).
Usage: python bench/soak.py [--minutes 10] [--rate 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import report  # noqa: E402
from mesh import auth, health, wire  # noqa: E402
from mesh.control import ControlError  # noqa: E402
from mesh.schema import Heartbeat  # noqa: E402

NAME = "soak"
IDLE_SUBSCRIPTION = "Q.NOSUCHSYMBOL"  # ingest connected and subscribed to nothing that trades
LOAD = "Q.*,T.*"
CONTROL_EVERY = 0.5  # seconds between rounds of control requests
RSS_EVERY = 5.0


def feed_main(sub_endpoint: str, ctl_endpoint: str) -> int:
    """The dashboard's feed without the screen: bursts decoded with the board's fields into its state."""
    from tui.feed import BusFeed
    from tui.state import MarketState, MeshState

    feed = BusFeed(sub_endpoint, ctl_endpoint, MarketState(), MeshState())
    try:
        asyncio.run(feed.run())
    except KeyboardInterrupt:
        pass
    return 0


class HeartbeatWatch(threading.Thread):
    """Counts services going DOWN by the heartbeat rule every consumer uses (mesh.health)."""

    def __init__(self, config: Any) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.endpoint = config.bus_sub
        self.last_seen: dict[str, tuple[int, float]] = {}  # service -> (ns, interval)
        self.down: set[str] = set()
        self.flaps: dict[str, int] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        sock = zmq.Context.instance().socket(zmq.SUB)
        sock.linger = 0
        sock.setsockopt(zmq.SUBSCRIBE, b"sys.heartbeat.")
        auth.secure_client(sock, auth.client_keys(self.config))
        sock.connect(self.endpoint)
        next_check = time.monotonic()
        while not self.halt.is_set():
            if sock.poll(100):
                try:
                    msg = wire.decode(sock.recv_multipart())
                except wire.MalformedFrame:
                    continue
                if isinstance(msg.payload, Heartbeat):
                    self.last_seen[msg.payload.service] = (time.time_ns(), msg.payload.interval)
                    self.down.discard(msg.payload.service)
            if time.monotonic() >= next_check:
                next_check += 0.2
                for service, (seen, interval) in self.last_seen.items():
                    if service not in self.down and not health.is_up(seen, interval):
                        self.down.add(service)
                        self.flaps[service] = self.flaps.get(service, 0) + 1
        sock.close()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def control_round(mesh: Any, latencies: list[float], failures: list[str]) -> None:
    for service, cmd in (("recorder", "status"), ("ingest", "list")):
        started = time.perf_counter()
        try:
            mesh.call(service, cmd, timeout=5)
            latencies.append(time.perf_counter() - started)
        except ControlError as exc:
            latencies.append(time.perf_counter() - started)
            failures.append(f"{service} {cmd}: {exc}")


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


def wait_drained(mesh: Any, quiet: float, timeout: float) -> float:
    """Seconds until the recorder has received nothing new for `quiet` seconds."""
    started = time.monotonic()
    last, since = -1, time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            received = mesh.call("recorder", "status", timeout=5)["received"]
        except ControlError:
            received = last
        if received != last:
            last, since = received, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return since - started
        time.sleep(0.5)
    raise SystemExit(f"the recorder did not drain within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load (default 10)")
    parser.add_argument(
        "--rate", type=int, default=200_000, help="events/s asked of the sim (default 200,000)"
    )
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="keep the data (recording, logs) in DIR instead of a temporary folder",
    )
    parser.add_argument(
        "--feed", nargs=2, metavar=("SUB", "CTL"), help=argparse.SUPPRESS
    )  # the feed's own process
    args = parser.parse_args()
    if args.feed:
        return feed_main(*args.feed)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        return soak(args, Path(args.keep))
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        return soak(args, Path(tmp))


def soak(args: argparse.Namespace, base: Path) -> int:
    from tests.faults.accounting import account
    from tests.meshproc import Mesh, wait_for

    load_seconds = args.minutes * 60
    with Mesh(base / "data") as mesh:
        mesh.point_at_sim()
        mesh.start("bus")
        mesh.wait_up(["bus"], 30)
        mesh.start("sim", *mesh.sim_args("--rate", str(args.rate)))
        mesh.start("recorder")
        mesh.start("ingest", "--subscriptions", IDLE_SUBSCRIPTION)
        mesh.wait_up(["sim", "recorder", "ingest"], 120)
        feed = subprocess.Popen(
            [sys.executable, __file__, "--feed", mesh.config.bus_sub, mesh.config.bus_ctl],
            env=mesh.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        watch = HeartbeatWatch(mesh.config)
        watch.start()
        try:
            wait_for(
                lambda: {"recorder", "ingest", "sim"} <= watch.last_seen.keys(),
                30,
                0.2,
                "heartbeats",
            )
            idle: list[float] = []
            idle_failures: list[str] = []
            for _ in range(40):
                control_round(mesh, idle, idle_failures)
                time.sleep(0.05)
            mesh.call("recorder", "start", name=NAME, timeout=10)
            pids = {name: proc.proc.pid for name, proc in mesh.procs.items()} | {"feed": feed.pid}
            print(
                f"soak: {args.minutes:g} min at {args.rate:,} events/s asked; idle control p99 {p99(idle) * 1000:.1f} ms",
                flush=True,
            )
            mesh.call("ingest", "subscribe", params=LOAD, timeout=10)
            started = time.monotonic()
            loaded: list[float] = []
            failures: list[str] = []
            rss: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
            next_rss = started
            while (elapsed := time.monotonic() - started) < load_seconds:
                control_round(mesh, loaded, failures)
                if time.monotonic() >= next_rss:
                    next_rss += RSS_EVERY
                    for name, pid in pids.items():
                        mb = rss_mb(pid)
                        if mb is not None:
                            rss[name].append((elapsed, mb))
                    status = mesh.call("recorder", "status", timeout=5)
                    print(
                        f"soak: {elapsed:5.0f} s  recorder {status['events_per_s']:>9,.0f} rows/s  "
                        + "  ".join(f"{n} {s[-1][1]:.0f} MB" for n, s in rss.items() if s),
                        flush=True,
                    )
                time.sleep(CONTROL_EVERY)
            mesh.call("ingest", "unsubscribe", params=LOAD, timeout=10)
            lag = wait_drained(mesh, quiet=3.0, timeout=max(120.0, load_seconds))
            mesh.call("recorder", "stop", timeout=10)
            wait_for(
                lambda: (
                    (mesh.call("recorder", "status", timeout=5).get("session") or {}).get("state")
                    == "stopped"
                ),
                300,
                0.5,
                "the recording to stop",
            )
            alive = mesh.alive()
        finally:
            watch.halt.set()
            feed.terminate()
            try:
                feed.wait(10)
            except subprocess.TimeoutExpired:
                feed.kill()
        feed_alive = feed.returncode in (0, -15)
        mesh.stop_all()

    accounts = account(base / "data" / "recordings" / NAME)
    for a in accounts:
        print(f"soak: {a.line()}", flush=True)
    sent = sum(a.sent for a in accounts)
    lost = sum(len(a.lost) for a in accounts)
    duplicates = sum(len(a.duplicates) for a in accounts)
    seconds = max(a.seconds for a in accounts) or 1.0
    growth = {}
    for name, samples in rss.items():
        after_warmup = [mb for t, mb in samples if t >= load_seconds / 4] or [
            mb for _, mb in samples
        ]
        if after_warmup:
            growth[name] = round(after_warmup[-1] - after_warmup[0], 1)
    rss_end = {name: round(samples[-1][1], 1) for name, samples in rss.items() if samples}
    report(
        "soak",
        "events_lost_outside_gaps",
        lost,
        "events",
        sent,
        0,
        minutes=args.minutes,
        rate_asked=args.rate,
        rate_sent=round(sent / seconds),
        duplicates=duplicates,
        missing_inside_gaps=sum(a.missing for a in accounts) - lost,
        gaps=max((a.gaps for a in accounts), default=0),
        rss_growth_mb=growth,
        rss_end_mb=rss_end,
        rss_target="flat",
        heartbeat_down_flaps=sum(watch.flaps.values()),
        flaps_by_service=watch.flaps,
        flaps_target=0,
        control_p99_s=round(p99(loaded), 3),
        control_idle_p99_s=round(p99(idle), 3),
        control_max_s=round(max(loaded, default=0.0), 3),
        control_requests=len(loaded),
        control_failures=len(failures),
        control_failure_sample=failures[:3],
        control_target_s=1.0,
        drain_s=round(lag, 1),
        alive=alive,
        feed_alive=feed_alive,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYKX_UNLICENSED", "true")
    sys.exit(main())
