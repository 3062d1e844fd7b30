"""The dashboard under a firehose: CPU, redraw rate and key-press latency, against an idle bus.

A real bus and a publisher process pushing 200,000 quote events/s across 500 symbols (batches
of 100); the TUI runs headless in this process (Textual's test driver, the real app and feed).
Measured over a window: this process's CPU time per second, board redraws per second, and the
delay from a key press (cursor down) to the board drawing the moved cursor. The same TUI on an
idle bus is the baseline.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from _common import free_port, median, report  # noqa: E402

RATE = 200_000
SYMBOLS = 500
BATCH = 100
WINDOW = 6.0


def firehose(endpoint: str, rate: int, stop) -> None:  # type: ignore[no-untyped-def]
    from mesh import topics
    from mesh.client import Publisher
    from mesh.schema import QuoteBatch

    pub = Publisher("firehose", endpoint, hwm=0)
    names = [f"S{i:03d}" for i in range(SYMBOLS)]
    batches = []
    for b in range(50):
        syms = [names[(b * BATCH + i) % SYMBOLS] for i in range(BATCH)]
        px = [100.0 + ((b * 7 + i) % 50) * 0.01 for i in range(BATCH)]
        batches.append((syms, px))
    topic = topics.quotes()
    per_tick = max(1, rate // BATCH // 100)  # messages every 10 ms
    sent, n = 0, 0
    started = time.perf_counter()
    while not stop.is_set():
        for _ in range(per_tick):
            syms, px = batches[n % 50]
            now = time.time_ns()
            pub.publish(
                topic,
                QuoteBatch(
                    symbol=syms,
                    bid_price=px,
                    bid_size=[100] * BATCH,
                    ask_price=[p + 0.02 for p in px],
                    ask_size=[200] * BATCH,
                    bid_exchange=[1] * BATCH,
                    ask_exchange=[2] * BATCH,
                    condition=[0] * BATCH,
                    tape=[3] * BATCH,
                    sequence=list(range(n * BATCH, (n + 1) * BATCH)),
                    ts_event=[now] * BATCH,
                    ts_recv=[now] * BATCH,
                ),
            )
            n += 1
            sent += BATCH
        target = started + sent / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    pub.close()


async def measure(config, rate: int, keep_publishing: bool) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Fill the board from a publisher at `rate`; keep it running (firehose) or stop it (idle bus)."""
    from textual import events

    from mesh.gc_tuning import tune_gc
    from tui.app import make_app

    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    publisher = ctx.Process(target=firehose, args=(config.bus_pub, rate, stop))
    app = make_app(config)
    tune_gc()  # as `massive-tui` does
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            board = app.query_one("#board")
            board.focus()
            await pilot.pause(0.5)
            publisher.start()
            deadline = time.monotonic() + 20
            while len(board.rows) < SYMBOLS and time.monotonic() < deadline:
                await pilot.pause(0.1)
            if not keep_publishing:
                stop.set()
                publisher.join(10)
            await pilot.pause(1.0)
            cpu0, wall0, redraw0, render0, events0 = (
                time.process_time(),
                time.monotonic(),
                app.redraws,
                board.renders,
                app.market.events,
            )
            latencies = []
            while time.monotonic() - wall0 < WINDOW:
                before = board.cursor
                key = events.Key("down" if before < 20 else "home", None)
                key.set_sender(app)
                pressed = time.monotonic()  # the board stamps its renders with the same clock
                app._driver.send_message(key)  # what a terminal key press does
                while (
                    not (board.cursor != before and board.last_render >= pressed)
                    and time.monotonic() - pressed < 2
                ):
                    await asyncio.sleep(0.001)
                latencies.append((time.monotonic() - pressed) * 1000)
                await asyncio.sleep(0.25)
            wall = time.monotonic() - wall0
            cpu = time.process_time() - cpu0
            return {
                "cpu_cores": cpu / wall,
                "redraws_per_s": (app.redraws - redraw0) / wall,
                "board_lines_per_s": (board.renders - render0) / wall,
                "events_per_s_seen": (app.market.events - events0) / wall,
                "key_latency_ms_median": median(latencies),
                "key_latency_ms_max": max(latencies),
                "symbols_on_board": len(board.rows),
            }
    finally:
        stop.set()
        if publisher.is_alive():
            publisher.join(10)


def main() -> None:
    from mesh.config import Config

    env = {f"MESH_BUS_{n}": f"tcp://127.0.0.1:{free_port()}" for n in ("PUB", "SUB", "CTL")}
    env["MESH_DATA_DIR"] = tempfile.mkdtemp(
        prefix="bench-tui-"
    )  # the bus's keys, made on its first start
    os.environ.update(
        env
    )  # the firehose process and the dashboard load the same configuration and keys
    config = Config.load(environ=env)
    bus = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "run", "bus"],
        env={**os.environ, **env},
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    try:
        idle = asyncio.run(measure(config, 20_000, keep_publishing=False))
        busy = asyncio.run(measure(config, RATE, keep_publishing=True))
    finally:
        bus.terminate()
        bus.wait(5)
    print(
        json.dumps(
            {"bench": "tui", "case": "idle bus", **{k: round(v, 3) for k, v in idle.items()}}
        )
    )
    print(
        json.dumps(
            {
                "bench": "tui",
                "case": f"{RATE:,} quotes/s over {SYMBOLS} symbols",
                **{k: round(v, 3) for k, v in busy.items()},
            }
        )
    )
    report(
        "tui",
        "cpu_cores_under_firehose",
        busy["cpu_cores"],
        "cores",
        idle["cpu_cores"],
        "<0.5 cores under 200k quotes/s; key-press latency <100 ms",
        key_latency_ms=round(busy["key_latency_ms_median"], 1),
        key_latency_ms_idle=round(idle["key_latency_ms_median"], 1),
        key_latency_ms_max=round(busy["key_latency_ms_max"], 1),
        redraws_per_s=round(busy["redraws_per_s"], 1),
        events_per_s_seen=round(busy["events_per_s_seen"]),
    )


if __name__ == "__main__":
    main()
